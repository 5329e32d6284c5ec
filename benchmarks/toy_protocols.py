#!/usr/bin/env python
"""Every registered trainer x 5 seeds on the toy world's base-to-new and domain-generalisation protocol.

    python benchmarks/toy_protocols.py [--seeds 1 2 3 4 5] [--trainers CoOp ...] [--jobs 2] [--output-dir DIR]

Each (trainer, seed) goes through ``train.py``'s code (:mod:`clipbayes.toyworld.protocol`, under its budget rule:
train on the base classes, eval-only on the new classes and on the base classes in the shifted style) with its
logs under ``<output-dir>`` (default output/toy_protocols) in CoOp's layout (``python -m clipbayes.results
<output-dir> --calibration`` tabulates them); a rerun reads finished runs back instead of repeating them. The
(row, seed) runs go to ``--jobs`` processes of one torch thread each (default: one per CPU core; the numbers do
not depend on it). Writes ``<output-dir>/toy_protocols.md`` (mean +- population std over seeds, per-seed
differences from zero-shot CLIP, which is paired: same seed, same shots, same test images, paired-bootstrap
intervals, and what the budget rule gave each row: steps, images, text sequences) and
``<output-dir>/toy_protocols.png``; with ``--write-docs`` also the tables into docs/toyworld.md (its generated
blocks ``toy_protocols`` and ``toy_budget``), the first one (means and spreads) into README.md (block
``toy_protocols_means``), the seed-1 lines (what the demo prints) into docs/toyworld.md (block ``demo_seed1``)
and the plot into docs/figures/toy_protocols.png.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import shutil
import sys
import time
from typing import NamedTuple

import numpy as np

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from clipbayes.fileio import atomic_write  # noqa: E402
from clipbayes.registry import method_names  # noqa: E402
from clipbayes.toyworld.protocol import BACKBONE_LABELS, read_budget, toy_backbone  # noqa: E402
from generated_docs import DOCS, write_block  # noqa: E402
from toy_runner import ZERO_SHOT, Task, cpu_seconds, run_tasks, timing_line  # noqa: E402

QUANTITIES = ("base", "new", "hm", "shift")
HEADERS = {"base": "base", "new": "new", "hm": "HM", "shift": "shift (base classes)"}


class Row(NamedTuple):
    """A row of the table: ``trainer`` with ``options`` (``KEY VALUE``) on the toy CLIP ``backbone`` (None: the
    trainer's, ``protocol.toy_backbone``), its runs under the config folder ``label`` (None: the backbone's)."""

    name: str
    trainer: str
    options: tuple = ()
    backbone: str | None = None
    label: str | None = None

    @property
    def toy_clip(self) -> str:
        return self.backbone or toy_backbone(self.trainer)

    @property
    def zero_shot(self) -> str:
        """The name of the zero-shot row on the same toy CLIP (the paired reference)."""
        return ZERO_SHOT if self.toy_clip == "toyclip" else f"{ZERO_SHOT} ({self.toy_clip})"


def default_rows(trainers) -> list:
    """Zero-shot CLIP on each toy CLIP the trainers use, then one row per trainer, and each Bayesian treatment over
    MaPLe (the logit-prior paper's MaPLe runs, ReBaPL's main base) when both are asked for."""
    rows = [Row(name, name) for name in trainers if name != ZERO_SHOT]
    for treatment, node in (("LogitPrior", "LOGIT_PRIOR"), ("ReBaPL", "REBAPL")):
        if treatment in trainers and "MaPLe" in trainers:
            rows.append(Row(f"{treatment} (MaPLe)", treatment, (f"TRAINER.{node}.BASE", "MaPLe"), "toyclip-vit",
                            "toy_vit_maple"))
    clips = sorted({row.toy_clip for row in rows} | {"toyclip"}, key=lambda clip: clip != "toyclip")
    return [Row(ZERO_SHOT if clip == "toyclip" else f"{ZERO_SHOT} ({clip})", ZERO_SHOT, backbone=clip)
            for clip in clips] + rows


def measure(rows, seeds, output_dir, options, jobs: int = 1, threads: int = 0):
    """({row name: {seed: {quantity: accuracy}}}, seconds per (row name, seed) run here); prints one line per
    finished (row, seed). A (row, seed) whose runs are all finished is read back and gets no time; the others run
    in ``jobs`` processes of ``threads`` torch threads (benchmarks/toy_runner.py)."""
    tasks = [Task(row.name, row.trainer, seed, tuple(options) + tuple(row.options), row.backbone, row.label)
             for row in rows for seed in seeds]

    def report(task, acc, seconds):
        print(f"{task.name:>28} seed {task.seed}: base {acc['base']:5.1f}  new {acc['new']:5.1f}  HM "
              f"{acc['hm']:5.1f}  shift {acc['shift']:5.1f}  ({seconds:.0f} s)", flush=True)

    accuracies, seconds = run_tasks(tasks, output_dir, jobs, threads, report)
    results = {row.name: {} for row in rows}
    for task in tasks:
        results[task.name][task.seed] = accuracies[task]
    return results, {(task.name, task.seed): s for task, s in seconds.items()}


def budget_table(rows, seed: int, output_dir: str) -> str:
    """Markdown: what the budget rule gave each trained row's training run at ``seed`` (its log's budget line)."""
    lines = ["| method | optimiser steps | training images | text sequences encoded | per step |",
             "| --- | --- | --- | --- | --- |"]
    for row in rows:
        spent = read_budget(output_dir, row.trainer, seed, row.label or BACKBONE_LABELS[row.toy_clip])
        if spent is None:
            continue
        per_step = spent.text_sequences / spent.steps
        lines.append(f"| {row.name} | {spent.steps:,} | {spent.images:,} | {spent.text_sequences:,} | "
                     f"{per_step:,.0f} |")
    return "\n".join(lines) + "\n"


BOOTSTRAP_DRAWS = 10_000
COOP = "CoOp"


def paired_interval(deltas: np.ndarray, draws: int = BOOTSTRAP_DRAWS, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean of per-seed paired differences: ``draws`` resamples of the seeds with
    replacement (numpy generator seeded with 0, so the table is reproducible)."""
    rng = np.random.default_rng(0)
    means = deltas[rng.integers(0, len(deltas), size=(draws, len(deltas)))].mean(axis=1)
    return tuple(np.quantile(means, [(1 - level) / 2, (1 + level) / 2]))


def interval_cell(deltas: np.ndarray) -> str:
    """'mean [low, high]' of paired differences; marked '(not separated)' when the interval holds 0."""
    low, high = paired_interval(deltas)
    mark = " (not separated)" if low <= 0 <= high else ""
    return f"{deltas.mean():+.1f} [{low:+.1f}, {high:+.1f}]{mark}"


def table(results, seeds, references=None) -> str:
    """Markdown: mean +- std per row; the per-seed paired differences from zero-shot CLIP on the same toy CLIP
    (``references``: row name -> zero-shot row name; default ZeroshotCLIP); then the mean differences from that
    zero-shot CLIP and from CoOp (when it was run) with paired-bootstrap 95% intervals over the seeds."""
    references = references or {}
    header = ["| method | " + " | ".join(HEADERS[q] for q in QUANTITIES) + " |", "| --- |" + " --- |" * len(QUANTITIES)]
    lines = list(header)
    for name, per_seed in results.items():
        cells = []
        for q in QUANTITIES:
            values = np.array([per_seed[s][q] for s in seeds])
            cells.append(f"{values.mean():.1f} +- {values.std():.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    trained = [name for name in results if not name.startswith(ZERO_SHOT)]

    def deltas(name, reference, q):
        return np.array([results[name][s][q] - results[reference][s][q] for s in seeds])

    lines += ["", f"Per-seed difference from zero-shot CLIP on the same toy CLIP (seeds {', '.join(map(str, seeds))}), "
              "and how many seeds it is negative on:", ""] + header
    for name in trained:
        cells = []
        for q in QUANTITIES:
            d = deltas(name, references.get(name, ZERO_SHOT), q)
            cells.append(" ".join(f"{x:+.1f}" for x in d) + f" (mean {d.mean():+.1f}, {int((d < 0).sum())}/{len(d)} < 0)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    comparisons = [("zero-shot CLIP on the same toy CLIP", lambda name: references.get(name, ZERO_SHOT))]
    if COOP in results:
        comparisons.append(("CoOp (paired by seed: the same shots and test images)", lambda name: COOP))
    for label, reference_of in comparisons:
        lines += ["", f"Mean difference from {label} with a paired-bootstrap 95% interval over the {len(seeds)} seeds "
                  f"({BOOTSTRAP_DRAWS:,} resamples); \"not separated\": the interval holds 0:", ""] + header
        for name in trained:
            if reference_of(name) == name:
                continue
            cells = [interval_cell(deltas(name, reference_of(name), q)) for q in QUANTITIES]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results, seeds, path: str) -> None:
    """Grouped bars (mean, std as error bar) per quantity, one bar per row, seeds as dots."""
    trainers = list(results)
    width = 0.8 / len(trainers)
    colours = plt.get_cmap("tab20").colors  # one colour per row (up to 20 rows)
    fig, ax = plt.subplots(figsize=(11, 5.5))
    for i, trainer in enumerate(trainers):
        positions = np.arange(len(QUANTITIES)) + (i - (len(trainers) - 1) / 2) * width
        values = np.array([[results[trainer][s][q] for s in seeds] for q in QUANTITIES])
        ax.bar(positions, values.mean(axis=1), width, yerr=values.std(axis=1), capsize=3, label=trainer,
               color=colours[i % len(colours)])
        for position, row in zip(positions, values):
            ax.scatter(np.full(len(row), position), row, s=6, color="black", zorder=3)
    ax.set_xticks(np.arange(len(QUANTITIES)), [HEADERS[q] for q in QUANTITIES])
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Toy world, 16 shots, {len(seeds)} seeds (mean, std, seeds)")
    ax.legend(fontsize=8, ncol=min(5, len(trainers)), loc="upper center", bbox_to_anchor=(0.5, -0.08))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def seed_one_table(results) -> str:
    """Markdown: each row's seed-1 base / new / HM, the line ``python train.py --trainer X`` prints for it."""
    lines = ["| method | base | new | HM |", "| --- | --- | --- | --- |"]
    lines += [f"| {name} | {r[1]['base']:.1f} | {r[1]['new']:.1f} | {r[1]['hm']:.1f} |" for name, r in results.items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trainers", nargs="+", default=None, help="default: every registered method")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--output-dir", default=osp.join("output", "toy_protocols"))
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads per process (0: torch's default with one job, 1 with several)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="processes running (row, seed) pairs side by side (default: one per CPU core)")
    parser.add_argument("--write-docs", action="store_true",
                        help="also write the tables into docs/toyworld.md and README.md, the seed-1 lines into "
                             "docs/toyworld.md and the plot into docs/figures")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every trained run")
    args = parser.parse_args(argv)
    threads = args.threads or (1 if args.jobs > 1 else 0)
    rows = default_rows(args.trainers or method_names())
    started, cpu_started, load = time.time(), cpu_seconds(), os.getloadavg()
    results, seconds = measure(rows, args.seeds, args.output_dir, args.opts, args.jobs, threads)
    text = table(results, args.seeds, {row.name: row.zero_shot for row in rows})
    budget = budget_table(rows, args.seeds[0], args.output_dir)
    footer = timing_line(f"{len(rows)} rows x {len(args.seeds)} seeds", len(rows) * len(args.seeds), seconds,
                         started, cpu_started, load[0], args.jobs, threads)
    previous = osp.join(args.output_dir, "toy_protocols.md")
    if not seconds and osp.isfile(previous):  # everything read back: keep the timing of the runs' invocation
        with open(previous) as handle:
            footer = "\n" + handle.read().rstrip().rsplit("\n", 1)[-1] + "\n"
    atomic_write(osp.join(args.output_dir, "toy_protocols.md"),
                 lambda f: f.write(f"{text}\nWhat the budget rule gave each row (seed {args.seeds[0]}'s training run):"
                                   f"\n\n{budget}{footer}"), binary=False)
    plot(results, args.seeds, osp.join(args.output_dir, "toy_protocols.png"))
    if args.write_docs:
        write_block(osp.join(DOCS, "toyworld.md"), "toy_protocols", text + footer)
        write_block(osp.join(DOCS, "toyworld.md"), "toy_budget", budget)
        write_block(osp.join(osp.dirname(DOCS), "README.md"), "toy_protocols_means", text.split("\n\n")[0])
        if 1 in args.seeds:
            write_block(osp.join(DOCS, "toyworld.md"), "demo_seed1", seed_one_table(results))
        shutil.copyfile(osp.join(args.output_dir, "toy_protocols.png"),
                        osp.join(DOCS, "figures", "toy_protocols.png"))
    print("\n" + text + footer + f"Wrote {args.output_dir}/toy_protocols.md and toy_protocols.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
