#!/usr/bin/env python
"""Settings chosen on validation, the same way for every method, and sensitivity curves, on the toy world
(opt-in, long).

    python benchmarks/toy_sensitivity.py [--methods CoOp ...] [--axes shared method] [--seeds 1 2 3] [--jobs 2]
                                         [--plots DIR] [--write-docs]

For each trained method: the budget rule's setting (clipbayes/toyworld/protocol.py: the toy table's runs, under
the same ``--output-dir``, default output/toy_protocols) and, one at a time, each other value of

* the shared optimiser axes, the same for every method (:data:`SHARED_AXES`: learning rate, epochs), and
* the method's principal keys (:data:`METHOD_AXES`),

each point with the seeds given and its validation runs (TEST.SPLIT val on the base and on the new classes). The
chosen setting is the point with the best mean validation HM (the rule's on a tie): the test split never takes
part in the choice. A one-factor-at-a-time design around the rule's setting, not a full factorial.

Writes ``<output-dir>/toy_sensitivity.md`` (per method: the rule's test base / new / HM beside those of the chosen
point, and both validation HMs) and ``<output-dir>/sensitivity_<method>.png`` (one panel per axis: test base / new
/ HM against the value, mean over the seeds with their min-max band, validation HM dashed, the rule's value and the
chosen one marked; ``--plots DIR`` puts them elsewhere); ``--write-docs`` copies the table into docs/toyworld.md (block ``toy_sensitivity``) and the
plots into docs/figures/toy_sensitivity_<method>.png. The number of runs and their expected time are printed before
anything runs; a rerun reads finished runs back.
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

from clipbayes.fileio import atomic_write  # noqa: E402
from clipbayes.toyworld import protocol  # noqa: E402
from generated_docs import DOCS, write_block  # noqa: E402
from toy_runner import Task, cpu_seconds, run_tasks, timing_line  # noqa: E402


class Axis(NamedTuple):
    """One axis of a method's sweep: ``name`` (the key, or what several keys set together mean), ``values``: label
    -> ``KEY VALUE`` options setting that value, ``default``: the label of the budget rule's setting (its point
    passes no option: it is the toy table's run), ``cost``: label -> time factor of a point against the rule's."""

    name: str
    values: dict
    default: str
    cost: dict = {}


def _key_axis(key: str, values: tuple, default: str, cost: dict | None = None) -> Axis:
    """An axis over one key; ``default`` is the rule's value."""
    return Axis(key, {v: (key, v) for v in values}, default, cost or {})


def _samples_axis(node: str, values: tuple, default: str) -> Axis:
    """L for training and prediction together (``N_SAMPLES_TRAIN`` and ``N_SAMPLES_TEST``)."""
    return Axis(f"TRAINER.{node}.N_SAMPLES_TRAIN / _TEST (L)",
                {v: (f"TRAINER.{node}.N_SAMPLES_TRAIN", v, f"TRAINER.{node}.N_SAMPLES_TEST", v) for v in values},
                default, {v: int(v) / int(default) for v in values})


def _context_axis(node: str, default: str) -> Axis:
    """CoOp-style context: 16 random tokens, or 4 tokens initialised from "a photo of a"."""
    values = {"16 random": (f"TRAINER.{node}.N_CTX", "16", f"TRAINER.{node}.CTX_INIT", ""),
              "4 'a photo of a'": (f"TRAINER.{node}.N_CTX", "4", f"TRAINER.{node}.CTX_INIT", "a photo of a")}
    return Axis(f"TRAINER.{node}.N_CTX / CTX_INIT (context)", values, default)


def _depth_axis(keys: tuple, values: tuple, default: str) -> Axis:
    """Deep-prompt depth J (several keys set together: IVLP's text and vision depths); the toy ViT and text
    transformer have 4 layers, so any J >= 4 prompts every layer."""
    return Axis(" / ".join(keys) + " (J)", {v: tuple(x for key in keys for x in (key, v)) for v in values}, default)


# The optimiser axes every method is swept over, around the budget rule's lr and epochs.
SHARED_AXES = (
    _key_axis("OPTIM.LR", ("0.002", "0.008"), str(protocol.LR)),
    _key_axis("OPTIM.MAX_EPOCH", ("5", str(protocol.EPOCHS)), str(protocol.EPOCHS), {"5": 0.5}),
)
# Each method's principal keys; the rule's value first among the labels where it is the paper's default.
METHOD_AXES = {
    "CoOp": (_context_axis("COOP", "16 random"),),
    "CoCoOp": (_context_axis("COCOOP", "4 'a photo of a'"),),
    "BayesianPrompt": (
        _key_axis("TRAINER.BAYESIAN_PROMPT.INIT_LOGVAR_RANGE",
                  ("(0.0, 1.0)", "(-2.0, -2.0)", "(-5.0, -5.0)", "(-10.0, -10.0)"), "(0.0, 1.0)"),
        _key_axis("TRAINER.BAYESIAN_PROMPT.KL_WEIGHT", ("0.0", "0.001", "0.01"), "0.001"),
        _samples_axis("BAYESIAN_PROMPT", ("5", "10"), "10")),
    "LogitPrior": (_key_axis("TRAINER.LOGIT_PRIOR.LAMBDA_1", ("0.0", "0.2", "1.0", "5.0"), "0.2"),),
    "PBPrompt": (_key_axis("TRAINER.PBPROMPT.TRANSPORT_WEIGHT", ("0.0", "0.1", "1.0"), "0.1"),
                 _samples_axis("PBPROMPT", ("5", "10", "20"), str(protocol.MONTE_CARLO_CAP))),
    "DualViewPrompt": (_key_axis("TRAINER.DUAL_VIEW.GAMMA", ("0.0", "0.1", "1.0", "5.0"), "1.0"),),
    "ReBaPL": (_key_axis("TRAINER.REBAPL.REPULSION_STRENGTH", ("0.0", "0.75", "5.0"), "0.75"),),
    "MaPLe": (_depth_axis(("TRAINER.MAPLE.PROMPT_DEPTH",), ("1", "2", "9"), "9"),),
    "IVLP": (_depth_axis(("TRAINER.IVLP.PROMPT_DEPTH_TEXT", "TRAINER.IVLP.PROMPT_DEPTH_VISION"), ("1", "2", "9"),
                         "9"),),
    "DeepVPT": (_depth_axis(("TRAINER.DEEP_VPT.PROMPT_DEPTH_VISION",), ("1", "2", "4"), "1"),),
    "APEX": (_depth_axis(("TRAINER.APEX.PROMPT_DEPTH_VISION",), ("1", "2", "12"), "12"),),
}


def axes_of(method: str, which=("shared", "method")) -> tuple:
    return (SHARED_AXES if "shared" in which else ()) + (METHOD_AXES[method] if "method" in which else ())


def label(axis: Axis, value: str) -> str:
    """The runs' config folder of a point off the rule's setting (a path-safe spelling of axis and value)."""
    key = axis.name.split(" ")[0].rsplit(".", 1)[1]
    return "grid_" + re.sub(r"[^A-Za-z0-9.]+", "_", f"{key}_{value}").strip("_").lower()


DEFAULT = ("rule", "")  # the point of the budget rule's setting: (axis name, value label)


def points(method: str, axes) -> dict:
    """{(axis name, value label): options} of a method: the rule's setting, then each other value of each axis."""
    found = {DEFAULT: ()}
    for axis in axes:
        for value, options in axis.values.items():
            if value != axis.default:
                found[(axis.name, value)] = options
    return found


def tasks_of(method: str, axes, seeds) -> dict:
    """{(point, seed): Task} of a method's sweep; the rule's point is the toy table's run (same folder)."""
    cost = {(axis.name, v): axis.cost.get(v, 1.0) for axis in axes for v in axis.values}
    found = {}
    for point, options in points(method, axes).items():
        axis = next((a for a in axes if a.name == point[0]), None)
        for seed in seeds:
            found[(point, seed)] = Task(method, method, seed, tuple(options),
                                        label=None if point == DEFAULT else label(axis, point[1]),
                                        with_validation=True, cost=cost.get(point, 1.0))
    return found


def mean_of(results: dict, point, quantity: str) -> float:
    return float(np.mean([acc[quantity] for acc in results[point].values()]))


def chosen_point(results: dict):
    """The point with the best mean validation HM (the rule's setting on a tie)."""
    return max(results, key=lambda point: (mean_of(results, point, "val_hm"), point == DEFAULT))


def describe(point) -> str:
    return "the rule's setting" if point == DEFAULT else f"`{point[0].split(' ')[0]}` = `{point[1]}`"


def plot(method: str, axes, results: dict, path: str) -> None:
    """One panel per axis: test base / new / HM against the value (the rule's point at its default)."""
    chosen = chosen_point(results)
    fig, panels = plt.subplots(1, len(axes), figsize=(3.1 * len(axes) + 0.4, 3.2), sharey=True, squeeze=False)
    for panel, axis in zip(panels[0], axes):
        values = list(axis.values)
        keyed = [DEFAULT if v == axis.default else (axis.name, v) for v in values]
        positions = np.arange(len(values))
        for quantity, colour in (("base", "tab:blue"), ("new", "tab:orange"), ("hm", "tab:green")):
            per_seed = np.array([[acc[quantity] for acc in results[p].values()] for p in keyed])
            panel.plot(positions, per_seed.mean(1), marker="o", color=colour, label=f"test {quantity}")
            panel.fill_between(positions, per_seed.min(1), per_seed.max(1), color=colour, alpha=0.15)
        panel.plot(positions, [mean_of(results, p, "val_hm") for p in keyed], "--", color="tab:green",
                   label="validation HM")
        panel.axvline(values.index(axis.default), color="grey", lw=0.8, ls=":", label="budget rule")
        if chosen in keyed and chosen != DEFAULT:
            panel.axvline(keyed.index(chosen), color="black", lw=0.8, label="chosen on validation")
        panel.set_xticks(positions, values, fontsize=7, rotation=15 if max(map(len, values)) > 8 else 0)
        panel.set_xlabel(axis.name.split(" (")[0].replace("TRAINER.", "").replace(" / ", "/\n"), fontsize=7)
    panels[0][0].set_ylabel("accuracy (%)")
    seeds = len(next(iter(results.values())))
    fig.suptitle(f"{method} on the toy world ({seeds} seeds; band: min-max; chosen: "
                 f"{describe(chosen).replace('`', '')})", fontsize=9)
    handles, names = panels[0][0].get_legend_handles_labels()
    for panel in panels[0][1:]:
        for handle, name in zip(*panel.get_legend_handles_labels()):
            if name not in names:
                handles.append(handle)
                names.append(name)
    fig.legend(handles, names, fontsize=7, loc="lower center", ncol=6, bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def table(rows: list) -> str:
    """One line per method: the rule's and the chosen point's test base / new / HM (mean over the seeds)."""
    lines = ["| method | budget rule: base / new / HM | chosen on validation | its base / new / HM | "
             "validation HM: rule / chosen | points |", "| --- | --- | --- | --- | --- | --- |"]
    for method, results in rows:
        best = chosen_point(results)
        cells = {p: " / ".join(f"{mean_of(results, p, q):.1f}" for q in ("base", "new", "hm")) for p in (DEFAULT,
                                                                                                       best)}
        lines.append(f"| {method} | {cells[DEFAULT]} | {describe(best)} | {cells[best]} | "
                     f"{mean_of(results, DEFAULT, 'val_hm'):.1f} / {mean_of(results, best, 'val_hm'):.1f} | "
                     f"{len(results)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHOD_AXES), choices=list(METHOD_AXES))
    parser.add_argument("--axes", nargs="+", default=["shared", "method"], choices=["shared", "method"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--output-dir", default=osp.join("output", "toy_protocols"),
                        help="the toy table's folder: the rule's points are its runs")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="processes running (point, seed) pairs side by side (default: one per CPU core)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads per process (0: torch's default with one job, 1 with several)")
    parser.add_argument("--plots", default=None, help="folder of the sensitivity_<method>.png plots (default: "
                                                      "--output-dir)")
    parser.add_argument("--write-docs", action="store_true",
                        help="write the table into docs/toyworld.md (block toy_sensitivity) and the plots into "
                             "docs/figures/toy_sensitivity_<method>.png")
    args = parser.parse_args(argv)
    threads = args.threads or (1 if args.jobs > 1 else 0)
    plots = args.plots or args.output_dir
    os.makedirs(plots, exist_ok=True)
    sweeps = {method: tasks_of(method, axes_of(method, args.axes), args.seeds) for method in args.methods}
    every = [task for sweep in sweeps.values() for task in sweep.values()]
    todo = [task for task in every if not task.finished(args.output_dir)]
    print(f"{len(every)} (point, seed) runs of {len(sweeps)} methods, {len(todo)} not finished yet: about "
          f"{sum(t.expected_seconds for t in todo) * 1.1 / 60 / max(1, args.jobs):.0f} min on {args.jobs} "
          f"process(es) of one thread (finished ones are read back)", flush=True)
    started, cpu_started, load_start = time.time(), cpu_seconds(), os.getloadavg()[0]

    def report(task, acc, seconds):
        print(f"{task.name:>16s} {task.label or 'rule':>28s} seed {task.seed}: "
              + "  ".join(f"{q} {acc[q]:5.1f}" for q in ("base", "new", "hm", "val_hm")) + f"  ({seconds:.0f} s)",
              flush=True)

    accuracies, seconds = run_tasks(every, args.output_dir, args.jobs, threads, report)
    rows = []
    for method, sweep in sweeps.items():
        results = {}
        for (point, seed), task in sweep.items():
            results.setdefault(point, {})[seed] = accuracies[task]
        rows.append((method, results))
        plot(method, axes_of(method, args.axes), results, osp.join(plots, f"sensitivity_{method}.png"))
    text = table(rows)
    timed = {(task.name, (task.label, task.seed)): s for task, s in seconds.items()}
    timing = timing_line(f"{len(every)} (point, seed) runs of {len(rows)} methods", len(every), timed, started,
                         cpu_started, load_start, args.jobs, threads).strip()
    print(text + "\n\n" + timing)
    atomic_write(osp.join(args.output_dir, "toy_sensitivity.md"), lambda f: f.write(f"{text}\n\n{timing}\n".encode()))
    if args.write_docs:
        write_block(osp.join(DOCS, "toyworld.md"), "toy_sensitivity", f"{text}\n\n{timing}")
        for method in args.methods:
            shutil.copyfile(osp.join(plots, f"sensitivity_{method}.png"),
                            osp.join(DOCS, "figures", f"toy_sensitivity_{method}.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
