"""The command line: ``python -m clipbayes.results OUTPUT_ROOT [options]`` (also ``clipbayes-results``)."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Optional, Sequence

from clipbayes import published as pub
from clipbayes.results.export import render_csv, render_runs
from clipbayes.results.plots import write_plots
from clipbayes.results.runs import PROTOCOLS, Run, scan
from clipbayes.results.summary import json_metrics, run_value, summarise
from clipbayes.results.tables import CALIBRATION_METRICS, Options, render_calibration, render_tables

LOG_METRICS = ("accuracy", "macro_f1", "error")


def _split_values(values: Optional[List[str]]) -> List[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def filter_runs(runs: Sequence[Run], trainers=(), datasets=(), configs=(), protocols=()) -> List[Run]:
    """Keep runs matching every given filter (trainer names case-insensitive, datasets by canonical key,
    configs by substring, protocols by name)."""
    trainers = {t.lower() for t in trainers}
    datasets = {pub.canonical_dataset(d) for d in datasets}
    kept = []
    for run in runs:
        if trainers and run.trainer.lower() not in trainers:
            continue
        if datasets and run.dataset not in datasets:
            continue
        if configs and not any(c in run.config for c in configs):
            continue
        if protocols and run.protocol not in protocols:
            continue
        kept.append(run)
    return kept


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipbayes-results",
        description="Tables of mean and spread over seeds from a CoOp-style output tree (few-shot, base-to-new "
                    "with HM, cross-dataset, domain generalization), optionally beside published numbers.")
    parser.add_argument("root", help="output folder of a sweep (searched recursively for seed<N> folders)")
    parser.add_argument("--format", choices=("table", "markdown", "csv"), default="table",
                        help="plain-text table (default), Markdown, or one tidy CSV")
    parser.add_argument("--by", choices=("dataset", "trainer"), default="dataset",
                        help="dataset: a row per dataset, a column group per method (default); "
                             "trainer: rows grouped per method")
    parser.add_argument("--metric", choices=("accuracy", "macro_f1", "error"), default="accuracy",
                        help="which line of Dassl's result block to report (default: accuracy)")
    parser.add_argument("--keyword", help="any other '* KEYWORD: X%%' line of the result block, as CoOp's "
                                          "parse_test_res.py (overrides --metric)")
    parser.add_argument("--ci95", action="store_true", help="95%% confidence interval instead of std")
    parser.add_argument("--sample-std", action="store_true",
                        help="sample std (n-1) instead of the population std that CoOp's script uses")
    parser.add_argument("--published", action="store_true",
                        help="print published numbers (with sources) beside ours where available")
    parser.add_argument("--trainer", action="append", metavar="NAME", help="only these trainers (repeat or a,b)")
    parser.add_argument("--dataset", action="append", metavar="NAME", help="only these datasets (repeat or a,b)")
    parser.add_argument("--config", action="append", metavar="TEXT", help="only configs containing TEXT")
    parser.add_argument("--protocol", action="append", metavar="NAME",
                        help=f"only these protocols ({', '.join(PROTOCOLS)}; repeat or a,b)")
    parser.add_argument("--decimals", type=int, default=2, help="decimals of our numbers (default 2)")
    parser.add_argument("--list-runs", action="store_true", help="also list every run and the log it came from")
    parser.add_argument("--metrics", action="append", metavar="NAMES",
                        help="columns of these metrics, in order (a,b or repeat): accuracy, macro_f1, error, and "
                             "from the runs' metrics JSON " + ", ".join(m for m in json_metrics() if m not in LOG_METRICS) +
                             " (overrides --metric)")
    parser.add_argument("--calibration", action="store_true",
                        help="also print the calibration table of each protocol (ECE and NLL on base and new, "
                             "raw and temperature-scaled)")
    parser.add_argument("--plots", metavar="DIR",
                        help="write the figures (PNG and PDF) into DIR: reliability diagrams, base/new/HM bars, "
                             "risk-coverage curves, accuracy vs MC samples")
    return parser


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _report_problems(runs: Sequence[Run], metrics: Sequence[str], limit: int = 10) -> None:
    """Say on stderr which runs give no number, so that nothing is dropped silently."""
    metric = metrics[0]
    unreadable = [r for r in runs if r.record_problem]
    if unreadable:
        _warn(f"{len(unreadable)} runs have an unreadable metrics JSON (e.g. {unreadable[0].rel}: "
              f"{unreadable[0].record_problem})")
    wanted = [m for m in metrics if m not in LOG_METRICS]
    without = [r for r in runs if r.result is not None and r.record is None and not r.record_problem]
    if wanted and without:
        _warn(f"{len(without)} runs have no metrics JSON beside their log, so no {', '.join(wanted)} (e.g. "
              f"{without[0].rel}; evaluated before the metrics existed? --eval-only again writes one)")
    mismatched = [r for r in runs if r.record is not None and "accuracy" in r.result.metrics and
                  abs(r.record["metrics"]["accuracy"] - r.result.metrics["accuracy"]) > 0.051]
    if mismatched:
        _warn(f"{len(mismatched)} runs have a metrics JSON whose accuracy differs from their log's "
              f"(e.g. {mismatched[0].rel}); the log's is reported")
    failed = [r for r in runs if r.result is None]
    if failed:
        _warn(f"{len(failed)} of {len(runs)} runs have no test result (unfinished or crashed):")
        for run in failed[:limit]:
            print(f"  {run.rel}: {run.problem}", file=sys.stderr)
        if len(failed) > limit:
            print(f"  ... and {len(failed) - limit} more (--list-runs shows all)", file=sys.stderr)
    lacking = [r for r in runs if r.result is not None and run_value(r, metric) is None and
               metric in LOG_METRICS]
    if lacking:
        _warn(f"{len(lacking)} runs have a result block without '* {metric}:' (e.g. {lacking[0].rel})")
    older = [r for r in runs if r.result is not None and r.newer_without_result]
    if older:
        _warn(f"{len(older)} runs have a newer log without a result; their older result was used "
              f"(e.g. {older[0].rel}: {older[0].newer_without_result[0]})")
    seen: Dict[tuple, Run] = {}
    for run in runs:
        if run.result is None:
            continue
        key = (run.protocol, run.dataset, run.trainer, run.config, run.role, run.seed)
        if key in seen:
            _warn(f"{run.rel} repeats {seen[key].rel} (same protocol, dataset, trainer, config and seed); "
                  f"both are counted")
        else:
            seen[key] = run
    pairs: Dict[tuple, set] = {}
    for run in runs:
        if run.protocol == "base2new" and run_value(run, metric) is not None:
            pairs.setdefault((run.trainer, run.config, run.dataset), set()).add(run.role)
    for (trainer, config, dataset), roles in sorted(pairs.items()):
        if roles != {"base", "new"}:
            missing = "test_new" if "new" not in roles else "train_base"
            _warn(f"base-to-new {trainer} {config} {pub.dataset_display(dataset)}: no {missing} results "
                  f"(left out of the Average)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    root = args.root
    if not os.path.isdir(root):
        print(f"error: output root '{root}' does not exist or is not a folder", file=sys.stderr)
        return 2
    metrics = _split_values(args.metrics) or [args.keyword or args.metric]
    unknown = [m for m in metrics if m not in LOG_METRICS + tuple(json_metrics())]
    if unknown and args.metrics:
        known = list(LOG_METRICS) + [m for m in json_metrics() if m not in LOG_METRICS]
        print(f"error: unknown metric {', '.join(unknown)} (choose from {', '.join(known)}; --keyword reads any "
              f"other line of the result block)", file=sys.stderr)
        return 2
    runs = scan(root)
    if not runs:
        print(f"error: no seed<N> run folders under '{root}'", file=sys.stderr)
        return 1
    protocols = _split_values(args.protocol)
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        print(f"error: unknown protocol {', '.join(unknown)} (choose from {', '.join(PROTOCOLS)})", file=sys.stderr)
        return 2
    selected = filter_runs(runs, _split_values(args.trainer), _split_values(args.dataset),
                           _split_values(args.config), protocols)
    if not selected:
        print(f"error: {len(runs)} runs under '{root}', none matches the filters", file=sys.stderr)
        return 1

    _report_problems(selected, metrics)
    if args.list_runs:
        print(render_runs(selected, metrics[0]))
    by_metric = {m: summarise(selected, m) for m in metrics}
    by_metric = {m: s for m, s in by_metric.items() if s}
    if not by_metric:
        print(f"error: no results under '{root}': none of its {len(selected)} selected runs has a complete test "
              f"result with '* {metrics[0]}:'" if len(metrics) == 1 else
              f"error: no results under '{root}': none of its {len(selected)} selected runs has any of "
              f"{', '.join(metrics)}", file=sys.stderr)
        return 1
    options = Options(spread="ci95" if args.ci95 else "std", ddof=1 if args.sample_std else 0,
                      decimals=args.decimals, published=args.published, by=args.by)
    not_accuracy = [m for m in metrics if m != "accuracy"]
    if args.published and not_accuracy:
        _warn("published numbers are accuracies; they are not shown for " + ", ".join(not_accuracy))
    calibration = _calibration_summaries(selected) if args.calibration else {}
    if args.calibration and not calibration:
        _warn("no run has a metrics JSON with ECE and NLL: no calibration table")
    if args.format == "csv":  # the calibration numbers are rows of the one CSV
        sys.stdout.write(render_csv({**by_metric, **{m: s for m, s in calibration.items() if m not in by_metric}},
                                    options))
    else:
        sys.stdout.write(render_tables(by_metric, options, args.format))
        if calibration:
            sys.stdout.write("\n" + render_calibration(calibration, options, args.format))
    if args.plots:
        sys.stdout.flush()  # the tables before the figures' message on a shared terminal
        written = write_plots(selected, args.plots)
        print(f"{len(written)} figures written to {args.plots}", file=sys.stderr)
    return 0


def _calibration_summaries(runs: Sequence[Run]) -> Dict[str, dict]:
    """ECE and NLL, then their temperature-scaled values when any run has them."""
    names = list(CALIBRATION_METRICS) + [m + "_ts" for m in CALIBRATION_METRICS]
    summaries = {m: summarise(runs, m) for m in names}
    return {m: s for m, s in summaries.items() if s}
