"""Rendering the summaries as text or Markdown tables: one table per protocol with, per method, the columns of
every requested metric (Base / New / HM for base-to-new), published numbers beside ours, and the calibration table
(methods x datasets: ECE and NLL on base and new, raw and temperature-scaled)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

from tabulate import tabulate

from clipbayes import published as pub
from clipbayes.evaluation.metrics import METRIC_UNITS
from clipbayes.results.runs import OVER, PROTOCOL_TITLES
from clipbayes.results.summary import TS_SUFFIX, ProtocolSummary, base_of, dataset_key, method_key

Method = Tuple[str, str]
# metric -> protocol -> summary, for the requested metrics in order.
ByMetric = Dict[str, Dict[str, ProtocolSummary]]

_METRIC_HEADERS = {"accuracy": "Accuracy", "macro_f1": "Macro-F1", "error": "Error", "nll": "NLL",
                   "brier": "Brier", "ece": "ECE", "ace": "ACE", "mce": "MCE", "aurc": "AURC", "entropy": "Entropy",
                   "mutual_information": "MI", "temperature": "T"}
_QUANTITY_HEADERS = {"base": "Base", "new": "New", "hm": "HM"}
CALIBRATION_METRICS = ("ece", "nll")


def method_labels(methods: Sequence[Method]) -> Dict[Method, str]:
    """Short column labels: the trainer name ("LogitPrior over MaPLe" for a wrapping method), plus what differs
    between its configs when it has several."""
    by_trainer: Dict[str, List[str]] = {}
    for trainer, config in methods:
        base = base_of((trainer, config))
        by_trainer.setdefault(f"{trainer} over {base}" if base else trainer, []).append(config)
    labels = {}
    for name, configs in by_trainer.items():
        trainer = name.split(" over ")[0]
        if len(configs) == 1:
            labels[(trainer, configs[0])] = name
            continue
        tokens = [re.split(r"[/_]", c.split(OVER)[0]) for c in configs]
        same_length = len({len(t) for t in tokens}) == 1
        for config, toks in zip(configs, tokens):
            if same_length:
                differing = [tok for k, tok in enumerate(toks) if len({t[k] for t in tokens}) > 1]
                labels[(trainer, config)] = f"{name} ({'_'.join(differing)})"
            else:
                labels[(trainer, config)] = f"{name} ({config.split(OVER)[0]})"
    return labels


@dataclass
class Options:
    spread: str = "std"  # or "ci95"
    ddof: int = 0
    decimals: int = 2
    published: bool = False
    by: str = "dataset"


def metric_header(metric: str) -> str:
    """``ece`` -> ``ECE``, ``nll_ts`` -> ``NLL (TS)``, ``acc@90`` -> ``Acc@90``; other keys capitalised."""
    if metric.endswith(TS_SUFFIX):
        return metric_header(metric[:-len(TS_SUFFIX)]) + " (TS)"
    return _METRIC_HEADERS.get(metric, metric.replace("_", " ").capitalize())


def metric_unit(metric: str) -> str:
    """The unit a metric is printed in: "%" for the result block's keys and the JSON's percentages."""
    name = metric[:-len(TS_SUFFIX)] if metric.endswith(TS_SUFFIX) else metric
    return METRIC_UNITS.get(name, "" if name == "temperature" else "%")


def _quantity_header(quantity: str) -> str:
    return _QUANTITY_HEADERS.get(quantity) or metric_header(quantity)


class _Footnotes:
    """Numbers the sources of published cells in order of first use."""

    def __init__(self):
        self.sources: List[str] = []

    def ref(self, source: str) -> int:
        if source not in self.sources:
            self.sources.append(source)
        return self.sources.index(source) + 1

    def lines(self) -> List[str]:
        return [f"[{k}] {source}" for k, source in enumerate(self.sources, 1)]


def published_for(summary: ProtocolSummary, method: Method, dataset: str, quantity: str):
    """The published number for a cell of an accuracy table, or None."""
    name = pub.method_for_trainer(method[0])
    if name is None or summary.metric != "accuracy":
        return None
    return pub.lookup(name, summary.protocol, dataset, "accuracy" if quantity == "accuracy" else quantity)


class _Cells:
    """Formats the cells of the summaries of one protocol (mean ± spread, (n=k) when seeds are missing)."""

    def __init__(self, summaries: Sequence[ProtocolSummary], options: Options):
        self.summaries = list(summaries)
        self.o = options
        self.notes = _Footnotes()
        self.max_n = max((st.n for s in summaries for cell in s.stats.values() for st in cell.values()), default=0)
        self.methods = sorted({m for s in summaries for m in s.methods}, key=method_key)
        self.datasets = sorted({d for s in summaries for d in s.datasets}, key=dataset_key)
        self.labels = method_labels(self.methods)
        self.protocol = self.summaries[0].protocol

    def fmt(self, value: float) -> str:
        return f"{value:.{self.o.decimals}f}"

    def cell(self, s: ProtocolSummary, method, dataset, quantity) -> str:
        if quantity == "hm":
            value = s.value(method, dataset, "hm")
            return "" if value is None else self.fmt(value)
        stat = s.stat(method, dataset, quantity)
        if stat is None:
            return ""
        text = self.fmt(stat.mean)
        if stat.n > 1:
            text += " ± " + self.fmt(stat.spread(self.o.spread, self.o.ddof))
        if stat.n < self.max_n:
            text += f" (n={stat.n})"
        return text

    def average_cell(self, s: ProtocolSummary, method, quantity) -> str:
        average = s.averages.get(method)
        if average is None or quantity not in average.values:
            return ""
        return self.fmt(average.values[quantity]) + ("*" if average.missing else "")

    def published_cell(self, s: ProtocolSummary, method, dataset, quantity) -> str:
        record = published_for(s, method, dataset, quantity)
        if record is None:
            return ""
        text = f"{record.value:.2f}" + ("" if record.std is None else f" ± {record.std:g}")
        return f"{text} [{self.notes.ref(record.source)}]"

    def published_quantities(self, s: ProtocolSummary, method) -> List[str]:
        """Quantities for which this method has at least one published number among the table's rows."""
        if not self.o.published:
            return []
        rows = self.datasets + ["average"]
        return [q for q in s.columns if any(published_for(s, method, d, q) for d in rows)]

    def average_label(self) -> str:
        return "Average (targets)" if self.protocol == "xd" else "Average"

    def header(self, s: ProtocolSummary, quantity: str) -> str:
        """Column header of a quantity: ``Base``, ``ECE``, or ``ECE Base`` when several metrics share the table."""
        if len(self.summaries) == 1 or quantity == s.metric:
            return _quantity_header(quantity)
        return f"{metric_header(s.metric)} {_quantity_header(quantity)}"

    def footer(self) -> List[str]:
        lines = []
        for s in self.summaries:
            what = f" ({metric_header(s.metric)})" if len(self.summaries) > 1 else ""
            for method in s.methods:
                average = s.averages[method]
                if average.missing:
                    missing = ", ".join(pub.dataset_display(d) for d in average.missing)
                    lines.append(f"{self.labels[method]}{what}: Average* over {len(average.datasets)} of "
                                 f"{len(average.datasets) + len(average.missing)} datasets (missing: {missing})")
        if self.o.published and self.notes.sources:
            covers = pub.PUBLISHED_AVERAGE_COVERS.get(self.protocol)
            ours = {len(s.averages[m].datasets) for s in self.summaries if s.metric == "accuracy"
                    for m in s.methods}
            if covers and ours and ours != {covers}:
                lines.append(f"Published averages cover {covers} datasets; ours cover "
                             f"{', '.join(str(k) for k in sorted(ours))}.")
        return lines + self.notes.lines()


def _main_table(cells: _Cells, by: str) -> Tuple[List[str], List[List[str]]]:
    """Headers and rows: a row per dataset and a column group per method (``by="dataset"``), or rows grouped per
    method (``by="trainer"``)."""
    columns = [(s, q) for s in cells.summaries for q in s.columns]
    if by == "trainer":
        pub_columns = [(s, q) for s, q in columns if any(q in cells.published_quantities(s, m) for m in s.methods)]
        headers = ["Method", "Dataset"] + [cells.header(s, q) for s, q in columns] + \
            [f"{cells.header(s, q)} (published)" for s, q in pub_columns]
        rows = []
        for method in cells.methods:
            label = cells.labels[method]
            for dataset in cells.datasets:
                if not any((method, dataset) in s.stats for s in cells.summaries):
                    continue
                rows.append([label, pub.dataset_display(dataset)] +
                            [cells.cell(s, method, dataset, q) for s, q in columns] +
                            [cells.published_cell(s, method, dataset, q) for s, q in pub_columns])
            rows.append([label, cells.average_label()] + [cells.average_cell(s, method, q) for s, q in columns] +
                        [cells.published_cell(s, method, "average", q) for s, q in pub_columns])
        return headers, rows

    headers = ["Dataset"]
    layout = []  # (summary, method, quantity, is_published)
    single = len(columns) == 1
    for method in cells.methods:
        label = cells.labels[method]
        for s, q in columns:
            if method in s.methods:
                headers.append(label if single else f"{label} {cells.header(s, q)}")
                layout.append((s, method, q, False))
        for s in cells.summaries:
            for q in cells.published_quantities(s, method):
                headers.append(f"{label} (published)" if single else f"{label} {cells.header(s, q)} (published)")
                layout.append((s, method, q, True))
    rows = [[pub.dataset_display(dataset)] +
            [cells.published_cell(s, m, dataset, q) if is_pub else cells.cell(s, m, dataset, q)
             for s, m, q, is_pub in layout] for dataset in cells.datasets]
    rows.append([cells.average_label()] +
                [cells.published_cell(s, m, "average", q) if is_pub else cells.average_cell(s, m, q)
                 for s, m, q, is_pub in layout])
    return headers, rows


def describe(summaries: Sequence[ProtocolSummary], options: Options) -> str:
    """The title line of a table: what the numbers are."""
    spread = "95% CI" if options.spread == "ci95" else ("std (n-1)" if options.ddof else "std")
    what = ", ".join(s.metric + (f" ({metric_unit(s.metric)})" if metric_unit(s.metric) else "")
                     for s in summaries)
    text = f"{PROTOCOL_TITLES[summaries[0].protocol]}: {what}, mean ± {spread} over seeds"
    if summaries[0].protocol == "base2new":
        text += "; HM = 2·base·new/(base+new) of the seed means"
        if not all("hm" in s.columns for s in summaries):
            text += " (for accuracies only)"
    return text


def _render(title: str, headers, rows, footer: List[str], fmt: str) -> str:
    body = tabulate(rows, headers=headers, tablefmt="github" if fmt == "markdown" else "simple",
                    disable_numparse=True, colalign=["left"] * len(headers))
    if fmt == "markdown":
        text = f"### {title}\n\n{body}\n"
        return text + ("\n" + "\n".join(f"- {line}" for line in footer) + "\n" if footer else "")
    return f"{title}\n\n{body}\n" + ("\n" + "\n".join(footer) + "\n" if footer else "")


def protocols_of(by_metric: ByMetric) -> List[str]:
    return [p for p in PROTOCOL_TITLES if any(p in summaries for summaries in by_metric.values())]


def render_tables(by_metric: ByMetric, options: Options, fmt: str) -> str:
    """All protocol tables as plain text ("table") or Markdown, each with the columns of every metric."""
    blocks = []
    for protocol in protocols_of(by_metric):
        summaries = [s[protocol] for s in by_metric.values() if protocol in s]
        cells = _Cells(summaries, options)
        headers, rows = _main_table(cells, options.by)
        blocks.append(_render(describe(summaries, options), headers, rows, cells.footer(), fmt))
    return "\n".join(blocks)


def render_calibration(by_metric: ByMetric, options: Options, fmt: str) -> str:
    """Per protocol: rows method x (metric, base/new), columns the datasets and the Average; ECE (%) and NLL, and
    their temperature-scaled values (TS) when the runs fitted a temperature."""
    blocks = []
    for protocol in protocols_of(by_metric):
        summaries = [by_metric[m][protocol] for m in by_metric if protocol in by_metric[m]]
        if not summaries:
            continue
        cells = _Cells(summaries, options)
        headers = ["Method", "Metric"] + [pub.dataset_display(d) for d in cells.datasets] + [cells.average_label()]
        rows = []
        for method in cells.methods:
            for s in summaries:
                if method not in s.methods:
                    continue
                for q in s.quantities:
                    name = metric_header(s.metric) + ("" if q == s.metric else f" {q}")
                    rows.append([cells.labels[method], name] + [cells.cell(s, method, d, q) for d in cells.datasets]
                                + [cells.average_cell(s, method, q)])
        spread = "95% CI" if options.spread == "ci95" else "std"
        title = (f"Calibration, {PROTOCOL_TITLES[protocol].lower()}: ECE (%, 15 bins) and NLL (nats), mean ± "
                 f"{spread} over seeds; TS = after temperature scaling")
        blocks.append(_render(title, headers, rows, cells.footer(), fmt))
    return "\n".join(blocks)


