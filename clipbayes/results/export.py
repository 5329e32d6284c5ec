"""Machine-readable output: one tidy CSV of every summary, and the listing of the runs (``--list-runs``)."""
from __future__ import annotations

import csv
import io
import os
from typing import Sequence

from tabulate import tabulate

from clipbayes import published as pub
from clipbayes.results.runs import Run
from clipbayes.results.summary import run_value
from clipbayes.results.tables import ByMetric, Options, method_labels, protocols_of, published_for


def render_csv(by_metric: ByMetric, options: Options) -> str:
    """One tidy CSV: a row per (protocol, metric, dataset or Average, method, quantity)."""
    spread_name = "ci95" if options.spread == "ci95" else "std"
    headers = ["protocol", "dataset", "method", "trainer", "config", "metric", "quantity", "mean", spread_name,
               "n_seeds", "seeds", "n_datasets"]
    if options.published:
        headers += ["published", "published_std", "published_source"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(headers)

    def number(value):
        return "" if value is None else f"{value:.{options.decimals}f}"

    summaries = [by_metric[m][p] for p in protocols_of(by_metric) for m in by_metric if p in by_metric[m]]
    for summary in summaries:
        labels = method_labels(summary.methods)
        for method in summary.methods:
            head = [labels[method], method[0], method[1], summary.metric]
            for dataset in summary.datasets + ["average"]:
                for quantity in summary.columns:
                    if dataset == "average":
                        average = summary.averages[method]
                        if quantity not in average.values:
                            continue
                        row = [summary.protocol, "Average", *head, quantity, number(average.values[quantity]),
                               "", "", "", len(average.datasets)]
                    else:
                        if (method, dataset) not in summary.stats:
                            continue
                        stat = summary.stat(method, dataset, quantity)
                        if quantity == "hm":
                            value = summary.value(method, dataset, "hm")
                            if value is None:
                                continue
                            row = [summary.protocol, pub.dataset_display(dataset), *head, quantity, number(value),
                                   "", "", "", ""]
                        elif stat is None:
                            continue
                        else:
                            row = [summary.protocol, pub.dataset_display(dataset), *head, quantity,
                                   number(stat.mean), number(stat.spread(options.spread, options.ddof)), stat.n,
                                   " ".join(str(s) for s in stat.seeds), ""]
                    if options.published:
                        record = published_for(summary, method, dataset, quantity)
                        row += ["", "", ""] if record is None else \
                            [f"{record.value:.2f}", "" if record.std is None else f"{record.std:g}", record.source]
                    writer.writerow(row)
    return out.getvalue()


def render_runs(runs: Sequence[Run], metric: str) -> str:
    """One line per run: where it sits, which log gave the result, the value (or why there is none)."""
    rows = []
    for run in sorted(runs, key=lambda r: r.rel):
        if run.result is None:
            value, source = "-", run.problem
        else:
            value = run_value(run, metric)
            value = "-" if value is None else f"{value:g}"
            source = f"{os.path.basename(run.result.log_file)} ({run.result.kind})"
        rows.append([run.rel, run.protocol, pub.dataset_display(run.dataset), run.trainer,
                     (run.role + " " if run.role else "") + str(run.seed), value, source])
    return tabulate(rows, headers=["run", "protocol", "dataset", "trainer", "seed", metric, "log"],
                    tablefmt="simple", disable_numparse=True) + "\n"

