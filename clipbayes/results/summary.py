"""Statistics over seeds: per protocol, per (method, dataset) and quantity (base / new for base-to-new, else the
metric), the values of every seed, and per method the Average row.

A quantity's value for a run (:func:`run_value`) comes from its log's ``=> result`` block (``accuracy``,
``macro_f1``, ``error`` and any ``--keyword``) or, for the other metrics, from its metrics JSON: ``ece``, ``nll``,
... (:data:`clipbayes.evaluation.metrics.METRIC_UNITS`), ``NAME_ts`` for the temperature-scaled value and
``temperature`` for the fitted T.

The spread over seeds is the population standard deviation (``numpy.std``, as CoOp's ``parse_test_res.py``;
n-1 on request), or the 95% half-width 1.96 * std / sqrt(n), again as CoOp. Base-to-new HM = 2 * base * new /
(base + new) of the seed means, as in the papers' tables, not the mean of per-seed HMs; it is defined for
accuracy-like metrics only. The Average row is the mean of the per-dataset means (for base-to-new over the
datasets that have both base and new results), and its HM is the HM of the two averages, as in CoCoOp's Table 1.
The cross-dataset Average leaves out ImageNet, the source dataset.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from clipbayes import published as pub
from clipbayes.evaluation.metrics import METRIC_UNITS
from clipbayes.registry import list_methods
from clipbayes.results.runs import OVER, PROTOCOLS, Run

TS_SUFFIX = "_ts"
# Metrics of the JSON that are not accuracies: no HM, no published numbers.
NOT_ACCURACIES = {"error", "temperature"} | {
    m for m in METRIC_UNITS if m not in ("accuracy", "macro_f1") and not m.startswith("acc@")}


def json_metrics() -> List[str]:
    """Every metric name a run's metrics JSON can give (raw, temperature-scaled, and the temperature)."""
    unchanged_by_t = ("accuracy", "macro_f1", "mutual_information")
    return list(METRIC_UNITS) + [m + TS_SUFFIX for m in METRIC_UNITS if m not in unchanged_by_t] + ["temperature"]


def run_value(run: Run, metric: str) -> Optional[float]:
    """The run's value of ``metric``: from the log's result block when it has the key, else from the JSON."""
    if run.result is None:
        return None
    if metric in run.result.metrics:
        return run.result.metrics[metric]
    record = run.record
    if record is None:
        return None
    if metric == "temperature":
        return record["temperature"]["value"] if record.get("temperature") else None
    if metric.endswith(TS_SUFFIX):
        scaled = record.get("temperature_scaled")
        return scaled["metrics"].get(metric[:-len(TS_SUFFIX)]) if scaled else None
    return record["metrics"].get(metric)


def has_hm(metric: str) -> bool:
    """HM of base and new is defined for accuracies (and for any ``--keyword``), not for the other metrics."""
    name = metric[:-len(TS_SUFFIX)] if metric.endswith(TS_SUFFIX) else metric
    return name not in NOT_ACCURACIES


@dataclass
class Stat:
    """Values of one quantity over seeds."""

    values: List[float]
    seeds: List[int]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    def std(self, ddof: int = 0) -> float:
        if self.n - ddof <= 0:
            return 0.0
        mean = self.mean
        return math.sqrt(sum((v - mean) ** 2 for v in self.values) / (self.n - ddof))

    def spread(self, kind: str = "std", ddof: int = 0) -> float:
        """Standard deviation, or with kind "ci95" the 95% half-width 1.96 std / sqrt(n) (CoOp's formula)."""
        std = self.std(ddof)
        return 1.96 * std / math.sqrt(self.n) if kind == "ci95" else std


def harmonic_mean(base: Optional[float], new: Optional[float]) -> Optional[float]:
    """HM = 2 b n / (b + n); None if either is missing, 0 if both are 0."""
    if base is None or new is None:
        return None
    return 0.0 if base + new == 0 else 2.0 * base * new / (base + new)


@dataclass
class Average:
    values: Dict[str, float]  # quantity -> mean over datasets (and "hm" for base-to-new)
    datasets: List[str]
    missing: List[str]  # eligible datasets of the table this method has no (complete) result for


@dataclass
class ProtocolSummary:
    """Everything one table needs: per (method, dataset) statistics and per-method averages."""

    protocol: str
    metric: str
    methods: List[Tuple[str, str]]
    datasets: List[str]
    stats: Dict[Tuple[Tuple[str, str], str], Dict[str, Stat]]
    averages: Dict[Tuple[str, str], Average]
    quantities: List[str]  # measured quantities; base-to-new adds the derived "hm"

    def stat(self, method, dataset, quantity) -> Optional[Stat]:
        return self.stats.get((method, dataset), {}).get(quantity)

    def value(self, method, dataset, quantity) -> Optional[float]:
        """Seed mean of a quantity, or for "hm" the HM of the seed means."""
        if quantity == "hm":
            if not has_hm(self.metric):
                return None
            base, new = self.stat(method, dataset, "base"), self.stat(method, dataset, "new")
            return harmonic_mean(base and base.mean, new and new.mean)
        stat = self.stat(method, dataset, quantity)
        return None if stat is None else stat.mean

    @property
    def columns(self) -> List[str]:
        return self.quantities + (["hm"] if self.protocol == "base2new" and has_hm(self.metric) else [])

    def averaged_datasets(self) -> List[str]:
        """Datasets that count towards Average rows (the cross-dataset source, ImageNet, does not)."""
        if self.protocol == "xd":
            return [d for d in self.datasets if d != "imagenet"]
        return list(self.datasets)


def natural_key(text: str):
    return [(0, int(tok), "") if tok.isdigit() else (1, 0, tok) for tok in re.split(r"(\d+)", text)]


def base_of(method: Tuple[str, str]) -> str:
    """The learner a wrapping method ran around (its config ends with " (over <base>)", Run.method), else ""."""
    config = method[1]
    return config[config.rindex(OVER) + len(OVER):-1] if config.endswith(")") and OVER in config else ""


def method_key(method: Tuple[str, str]):
    """Sort key of a (trainer, config): the registry's method order (clipbayes.registry.list_methods), then other
    trainers by name; configs of one trainer in natural order (1shots before 16shots); a wrapping method right
    after the base it ran around (LogitPrior over MaPLe after MaPLe)."""
    order = [m.name.lower() for m in list_methods()]

    def rank(name: str) -> int:
        return order.index(name.lower()) if name.lower() in order else len(order)

    base = base_of(method)
    anchor = base or method[0]
    return (rank(anchor), anchor.lower(), bool(base), rank(method[0]), method[0].lower(), natural_key(method[1]))


def dataset_key(dataset: str):
    if dataset in pub.DATASET_ORDER:
        return (0, pub.DATASET_ORDER.index(dataset), "")
    return (1, 0, dataset.lower())


def summarise(runs: Sequence[Run], metric: str = "accuracy") -> Dict[str, ProtocolSummary]:
    """Group runs with a result into per-protocol summaries of the given metric (see :func:`run_value`)."""
    grouped: Dict[str, Dict[Tuple[Tuple[str, str], str], Dict[str, Stat]]] = {}
    for run in runs:
        value = run_value(run, metric)
        if value is None:
            continue
        quantity = run.role or metric
        cell = grouped.setdefault(run.protocol, {}).setdefault((run.method, run.dataset), {})
        stat = cell.setdefault(quantity, Stat([], []))
        stat.values.append(value)
        stat.seeds.append(run.seed)

    summaries = {}
    for protocol in PROTOCOLS:
        if protocol not in grouped:
            continue
        stats = grouped[protocol]
        for cell in stats.values():
            for stat in cell.values():
                order = sorted(range(stat.n), key=lambda k: stat.seeds[k])
                stat.values[:] = [stat.values[k] for k in order]
                stat.seeds[:] = [stat.seeds[k] for k in order]
        methods = sorted({m for m, _ in stats}, key=method_key)
        datasets = sorted({d for _, d in stats}, key=dataset_key)
        quantities = ["base", "new"] if protocol == "base2new" else [metric]
        summary = ProtocolSummary(protocol, metric, methods, datasets, stats, {}, quantities)
        eligible = summary.averaged_datasets()
        for method in methods:
            used = [d for d in eligible if all(summary.stat(method, d, q) for q in quantities)]
            values = {q: sum(summary.stat(method, d, q).mean for d in used) / len(used) for q in quantities} \
                if used else {}
            if protocol == "base2new" and used and has_hm(metric):
                values["hm"] = harmonic_mean(values["base"], values["new"])
            summary.averages[method] = Average(values, used, [d for d in eligible if d not in used])
        summaries[protocol] = summary
    return summaries

