#!/usr/bin/env python
"""The toy-world protocol with the frozen CLIP in fp16 on the CPU: fp32 master weights against fp16 learners.

    python benchmarks/toy_precision.py [--trainers CoOp BayesianPrompt PBPrompt] [--seeds 1 2 3 4 5]
        [--output-dir output/toy_precision] [--threads 1]

Three settings per trainer, each through ``train.py``'s code (:mod:`clipbayes.toyworld.protocol`, base-to-new and
the shifted style, 5 seeds), with ``$CLIPBAYES_CPU_LOW_PRECISION=1`` so that the CPU runs fp16 as asked:

  fp32 CLIP                  PREC fp32 (the reference)
  fp16 CLIP, fp32 learner    PREC fp16, LEARNER_PREC fp32 (the default: master weights, loss scaling)
  fp16 CLIP, fp16 learner    PREC fp16, LEARNER_PREC clip (the learner in fp16, as the official code)

Zero-shot CLIP runs at each setting's PREC. Writes ``<output-dir>/toy_precision.md`` (mean +- population std over
seeds, the per-seed difference of the fp16 learner from the fp32 learner, seconds per seed) and prints it.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
import time

import numpy as np

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.dirname(HERE))
sys.path.insert(0, HERE)
os.environ["CLIPBAYES_CPU_LOW_PRECISION"] = "1"

import torch  # noqa: E402

from clipbayes.fileio import atomic_write  # noqa: E402
from clipbayes.registry import get_method  # noqa: E402
from toy_protocols import QUANTITIES, ZERO_SHOT, Row, measure  # noqa: E402

SETTINGS = {  # name -> (PREC, LEARNER_PREC)
    "fp32 CLIP": ("fp32", "fp32"),
    "fp16 CLIP, fp32 learner": ("fp16", "fp32"),
    "fp16 CLIP, fp16 learner": ("fp16", "clip"),
}


def setting_options(trainers, prec: str, learner_prec: str) -> list:
    options = []
    for trainer in trainers:
        method = get_method(trainer)
        options += [f"TRAINER.{method.node}.PREC", prec]
        if "LEARNER_PREC" in method.keys:
            options += [f"TRAINER.{method.node}.LEARNER_PREC", learner_prec]
    return options


def table(results, seconds, trainers, seeds) -> str:
    lines = ["| method | setting | base | new | HM | shift | s / seed |", "| --- | --- |" + " --- |" * 5]
    for trainer in [ZERO_SHOT] + trainers:
        for setting, per_trainer in results.items():
            per_seed = per_trainer[trainer]
            cells = [f"{np.mean([per_seed[s][q] for s in seeds]):.1f} +- {np.std([per_seed[s][q] for s in seeds]):.1f}"
                     for q in QUANTITIES]
            lines.append(f"| {trainer} | {setting} | " + " | ".join(cells) + f" | {seconds[setting][trainer]:.0f} |")
    lines += ["", "Per-seed difference, fp16 learner minus fp32 learner (both with the CLIP in fp16):", "",
              "| method | " + " | ".join(QUANTITIES) + " |", "| --- |" + " --- |" * len(QUANTITIES)]
    fp32, fp16 = results["fp16 CLIP, fp32 learner"], results["fp16 CLIP, fp16 learner"]
    for trainer in trainers:
        cells = []
        for q in QUANTITIES:
            deltas = np.array([fp16[trainer][s][q] - fp32[trainer][s][q] for s in seeds])
            cells.append(" ".join(f"{d:+.1f}" for d in deltas) + f" (mean {deltas.mean():+.1f})")
        lines.append(f"| {trainer} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trainers", nargs="+", default=["CoOp", "BayesianPrompt", "PBPrompt"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--output-dir", default=osp.join("output", "toy_precision"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: the thread policy's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
    started = time.time()
    results, seconds = {}, {}
    for setting, (prec, learner_prec) in SETTINGS.items():
        results[setting], seconds[setting] = {}, {}
        options = setting_options([ZERO_SHOT] + args.trainers, prec, learner_prec)
        folder = osp.join(args.output_dir, setting.replace(", ", "_").replace(" ", "_"))
        for trainer in [ZERO_SHOT] + args.trainers:
            begun = time.time()
            results[setting].update(measure([Row(trainer, trainer)], args.seeds, folder, options)[0])
            seconds[setting][trainer] = (time.time() - begun) / len(args.seeds)
    text = table(results, seconds, args.trainers, args.seeds)
    footer = (f"\n{len(args.trainers)} methods x {len(args.seeds)} seeds x {len(SETTINGS)} settings in "
              f"{(time.time() - started) / 60:.1f} min wall (torch threads {torch.get_num_threads()}, "
              f"$CLIPBAYES_CPU_LOW_PRECISION=1).\n")
    atomic_write(osp.join(args.output_dir, "toy_precision.md"), lambda f: f.write(text + footer), binary=False)
    print("\n" + text + footer + f"Wrote {args.output_dir}/toy_precision.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
