#!/usr/bin/env python
"""Sensitivity curves on the toy world, and each method's principal key chosen on validation (opt-in, long).

    python benchmarks/toy_sensitivity.py [--methods BayesianPrompt ...] [--seeds 1 2 3] [--write-docs]

For each method of ``GRIDS``: its principal key over a small grid, every other key at the toy-world protocol's
settings (clipbayes/toyworld/protocol.py), each value with the seeds given, every run with its validation runs
(TEST.SPLIT val on the base and on the new classes). Per method it writes
``<output-dir>/sensitivity_<method>.png``: test base / new / HM against the key (mean over the seeds, the band
their min-max), the validation HM dashed, the paper default and the value chosen on validation marked; and one
table row per method: the default's test numbers beside those of the value with the best mean validation HM (the
test split never takes part in the choice). ``--write-docs`` copies the table into docs/toyworld.md (block
``toy_sensitivity``) and the plots into docs/figures/. The number of runs and their expected time (from the
per-run seconds of the default toy table) are printed before anything runs; a rerun reads finished runs back.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import re
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
import torch  # noqa: E402

from clipbayes.cli import run  # noqa: E402
from clipbayes.fileio import atomic_write  # noqa: E402
from clipbayes.toyworld.protocol import VALIDATION_RUNS, RUNS, run_protocol, runs_finished  # noqa: E402
from generated_docs import DOCS, write_block  # noqa: E402
from toy_protocols import timing_line  # noqa: E402


class Grid(NamedTuple):
    """A method's principal key, the values tried (as on the command line), and the paper's default among them."""

    key: str
    values: tuple
    default: str


GRIDS = {
    "BayesianPrompt": Grid("TRAINER.BAYESIAN_PROMPT.INIT_LOGVAR_RANGE",
                           ("(0.0, 1.0)", "(-2.0, -2.0)", "(-5.0, -5.0)", "(-10.0, -10.0)"), "(0.0, 1.0)"),
    "LogitPrior": Grid("TRAINER.LOGIT_PRIOR.LAMBDA_1", ("0.0", "0.2", "1.0", "5.0"), "0.2"),
    "PBPrompt": Grid("TRAINER.PBPROMPT.TRANSPORT_WEIGHT", ("0.0", "0.1", "1.0"), "0.1"),
    "DualViewPrompt": Grid("TRAINER.DUAL_VIEW.GAMMA", ("0.0", "0.1", "1.0", "5.0"), "1.0"),
    "ReBaPL": Grid("TRAINER.REBAPL.REPULSION_STRENGTH", ("0.0", "0.75", "5.0"), "0.75"),
}
# Seconds per (method, seed) of the default toy table on this machine (docs/toyworld.md, one torch thread), with
# its validation runs about 1.4 times that: the estimate printed before a sweep.
SECONDS_PER_SEED = {"BayesianPrompt": 25, "LogitPrior": 12, "PBPrompt": 40, "DualViewPrompt": 15, "ReBaPL": 12}
VALIDATION_FACTOR = 1.4


def label(grid: Grid, value: str) -> str:
    """The runs' config folder of one grid point (a path-safe spelling of key and value)."""
    return "sens_" + re.sub(r"[^A-Za-z0-9.]+", "_", f"{grid.key.rsplit('.', 1)[1]}_{value}").strip("_").lower()


def measure(method: str, grid: Grid, seeds, root: str, seconds: dict) -> dict:
    """{value: {seed: accuracies with val_*}}; the seconds of each (method, seed) point run here go to ``seconds``."""
    results = {}
    for value in grid.values:
        results[value] = {}
        for seed in seeds:
            finished = runs_finished(root, method, seed, label(grid, value), RUNS + VALIDATION_RUNS)
            started = time.time()
            results[value][seed] = run_protocol(method, seed, root, run, [grid.key, value], quiet=True,
                                                label=label(grid, value), with_validation=True)
            if not finished:
                seconds[(method, (value, seed))] = time.time() - started
            print(f"{method:>16s} {grid.key.rsplit('.', 1)[1]} {value:>14s} seed {seed}: "
                  + "  ".join(f"{q} {results[value][seed][q]:5.1f}" for q in ("base", "new", "hm", "val_hm")))
    return results


def mean_of(results: dict, value: str, quantity: str) -> float:
    return float(np.mean([acc[quantity] for acc in results[value].values()]))


def chosen_value(grid: Grid, results: dict) -> str:
    """The value with the best mean validation HM (the default on a tie)."""
    return max(grid.values, key=lambda v: (mean_of(results, v, "val_hm"), v == grid.default))


def plot(method: str, grid: Grid, results: dict, path: str) -> None:
    positions = np.arange(len(grid.values))
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for quantity, colour in (("base", "tab:blue"), ("new", "tab:orange"), ("hm", "tab:green")):
        per_seed = np.array([[acc[quantity] for acc in results[v].values()] for v in grid.values])
        ax.plot(positions, per_seed.mean(1), marker="o", color=colour, label=f"test {quantity}")
        ax.fill_between(positions, per_seed.min(1), per_seed.max(1), color=colour, alpha=0.15)
    ax.plot(positions, [mean_of(results, v, "val_hm") for v in grid.values], "--", color="tab:green",
            label="validation HM")
    ax.axvline(grid.values.index(grid.default), color="grey", lw=0.8, ls=":", label="paper default")
    ax.axvline(grid.values.index(chosen_value(grid, results)), color="black", lw=0.8, label="chosen on validation")
    ax.set_xticks(positions, grid.values)
    ax.set_xlabel(grid.key)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{method} on the toy world ({len(next(iter(results.values())))} seeds; band: min-max)")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def table(rows: list) -> str:
    """One line per method: the default's and the chosen value's test base / new / HM (mean over the seeds)."""
    lines = ["| method | key | paper default: base / new / HM | chosen on validation | its base / new / HM | "
             "validation HM: default / chosen |", "| --- | --- | --- | --- | --- | --- |"]
    for method, grid, results in rows:
        best = chosen_value(grid, results)
        cells = {v: " / ".join(f"{mean_of(results, v, q):.1f}" for q in ("base", "new", "hm")) for v in (grid.default,
                                                                                                       best)}
        lines.append(f"| {method} | `{grid.key.rsplit('.', 1)[1]}` | `{grid.default}`: {cells[grid.default]} | "
                     f"`{best}` | {cells[best]} | {mean_of(results, grid.default, 'val_hm'):.1f} / "
                     f"{mean_of(results, best, 'val_hm'):.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--output-dir", default=osp.join("output", "toy_sensitivity"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--write-docs", action="store_true",
                        help="write the table into docs/toyworld.md (block toy_sensitivity) and the plots into "
                             "docs/figures/toy_sensitivity_<method>.png")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    points = sum(len(GRIDS[m].values) for m in args.methods) * len(args.seeds)
    estimate = sum(len(GRIDS[m].values) * SECONDS_PER_SEED[m] for m in args.methods) * len(args.seeds)
    print(f"{points} (value, seed) points, about {VALIDATION_FACTOR * estimate / 60:.0f} min on one CPU thread "
          f"when none is finished yet (finished ones are read back)")
    started, cpu_started, load_start = time.time(), time.process_time(), os.getloadavg()[0]
    rows, seconds = [], {}
    for method in args.methods:
        results = measure(method, GRIDS[method], args.seeds, args.output_dir, seconds)
        rows.append((method, GRIDS[method], results))
        plot(method, GRIDS[method], results, osp.join(args.output_dir, f"sensitivity_{method}.png"))
    text = table(rows)
    timing = timing_line(f"{points} (value, seed) points of {len(rows)} methods", points, seconds, started,
                         cpu_started, load_start).strip()
    print(text + "\n\n" + timing)
    atomic_write(osp.join(args.output_dir, "toy_sensitivity.md"), lambda f: f.write(f"{text}\n\n{timing}\n".encode()))
    if args.write_docs:
        write_block(osp.join(DOCS, "toyworld.md"), "toy_sensitivity", f"{text}\n\n{timing}")
        for method in args.methods:
            shutil.copyfile(osp.join(args.output_dir, f"sensitivity_{method}.png"),
                            osp.join(DOCS, "figures", f"toy_sensitivity_{method}.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
