#!/usr/bin/env python
"""Every registered trainer x 5 seeds on the toy world's base-to-new and domain-generalisation protocol.

    python benchmarks/toy_protocols.py [--seeds 1 2 3 4 5] [--trainers CoOp ...] [--output-dir output/toy_protocols]

Each (trainer, seed) goes through ``train.py``'s code (:mod:`clipbayes.toyworld.protocol`: train on the base
classes, eval-only on the new classes and on the base classes in the shifted style) with its logs under
``<output-dir>`` in CoOp's layout (``python -m clipbayes.results <output-dir> --calibration`` tabulates them); a
rerun reads finished runs back instead of repeating them. Writes
``<output-dir>/toy_protocols.md`` (mean +- population std over seeds, and per-seed differences from zero-shot
CLIP, which is paired: same seed, same shots, same test images) and ``<output-dir>/toy_protocols.png``.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
import time

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from clipbayes.cli import run  # noqa: E402
from clipbayes.fileio import atomic_write  # noqa: E402
from clipbayes.registry import method_names  # noqa: E402
from clipbayes.toyworld.protocol import run_protocol  # noqa: E402

ZERO_SHOT = "ZeroshotCLIP"
QUANTITIES = ("base", "new", "hm", "shift")
HEADERS = {"base": "base", "new": "new", "hm": "HM", "shift": "shift (base classes)"}


def measure(trainers, seeds, output_dir, options):
    """{trainer: {seed: {quantity: accuracy}}}; prints one line per finished (trainer, seed)."""
    results = {}
    for trainer in trainers:
        results[trainer] = {}
        for seed in seeds:
            started = time.time()
            acc = run_protocol(trainer, seed, output_dir, run, options, quiet=True)
            results[trainer][seed] = acc
            print(f"{trainer:>16} seed {seed}: base {acc['base']:5.1f}  new {acc['new']:5.1f}  HM {acc['hm']:5.1f}  "
                  f"shift {acc['shift']:5.1f}  ({time.time() - started:.0f} s)", flush=True)
    return results


def table(results, seeds) -> str:
    """Markdown: mean +- std per trainer, then the per-seed paired differences from zero-shot CLIP."""
    lines = ["| method | " + " | ".join(HEADERS[q] for q in QUANTITIES) + " |",
             "| --- |" + " --- |" * len(QUANTITIES)]
    for trainer, per_seed in results.items():
        cells = []
        for q in QUANTITIES:
            values = np.array([per_seed[s][q] for s in seeds])
            cells.append(f"{values.mean():.1f} +- {values.std():.1f}")
        lines.append(f"| {trainer} | " + " | ".join(cells) + " |")
    lines += ["", f"Per-seed difference from zero-shot CLIP (seeds {', '.join(map(str, seeds))}), and how many seeds "
              "it is negative on:", "",
              "| method | " + " | ".join(HEADERS[q] for q in QUANTITIES) + " |",
              "| --- |" + " --- |" * len(QUANTITIES)]
    for trainer, per_seed in results.items():
        if trainer == ZERO_SHOT:
            continue
        cells = []
        for q in QUANTITIES:
            deltas = np.array([per_seed[s][q] - results[ZERO_SHOT][s][q] for s in seeds])
            cells.append(" ".join(f"{d:+.1f}" for d in deltas) + f" (mean {deltas.mean():+.1f}, "
                         f"{int((deltas < 0).sum())}/{len(deltas)} < 0)")
        lines.append(f"| {trainer} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results, seeds, path: str) -> None:
    """Grouped bars (mean, std as error bar) per quantity, one bar per trainer, seeds as dots."""
    trainers = list(results)
    width = 0.8 / len(trainers)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for i, trainer in enumerate(trainers):
        positions = np.arange(len(QUANTITIES)) + (i - (len(trainers) - 1) / 2) * width
        values = np.array([[results[trainer][s][q] for s in seeds] for q in QUANTITIES])
        ax.bar(positions, values.mean(axis=1), width, yerr=values.std(axis=1), capsize=3, label=trainer)
        for position, row in zip(positions, values):
            ax.scatter(np.full(len(row), position), row, s=6, color="black", zorder=3)
    ax.set_xticks(np.arange(len(QUANTITIES)), [HEADERS[q] for q in QUANTITIES])
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Toy world, 16 shots, {len(seeds)} seeds (mean, std, seeds)")
    ax.legend(fontsize=8, ncol=min(4, len(trainers)))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trainers", nargs="+", default=None, help="default: every registered method")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--output-dir", default=osp.join("output", "toy_protocols"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every trained run")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    trainers = args.trainers or method_names()
    trainers = [ZERO_SHOT] + [t for t in trainers if t != ZERO_SHOT]
    started, cpu_started, load = time.time(), time.process_time(), os.getloadavg()
    results = measure(trainers, args.seeds, args.output_dir, args.opts)
    elapsed, cpu, load_end = time.time() - started, time.process_time() - cpu_started, os.getloadavg()
    text = table(results, args.seeds)
    footer = (f"\n{len(trainers)} methods x {len(args.seeds)} seeds in {elapsed / 60:.1f} min wall, {cpu / 60:.1f} min "
              f"CPU (torch threads {torch.get_num_threads()}); 1-minute load average {load[0]:.1f} at the start, "
              f"{load_end[0]:.1f} at the end.\n")
    atomic_write(osp.join(args.output_dir, "toy_protocols.md"), lambda f: f.write(text + footer), binary=False)
    plot(results, args.seeds, osp.join(args.output_dir, "toy_protocols.png"))
    print("\n" + text + footer + f"Wrote {args.output_dir}/toy_protocols.md and toy_protocols.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
