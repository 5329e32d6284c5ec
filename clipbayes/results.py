"""Results tables for a sweep's output tree: ``python -m clipbayes.results OUTPUT_ROOT [options]``.

The command finds every ``seed<N>`` folder under OUTPUT_ROOT, reads the test result from the Dassl log in it,
works out (protocol, dataset, trainer, config, seed) from the folder path, and prints mean and spread over seeds per
dataset and method (a method is a trainer with one config), with an Average row.

Layouts recognised (those of CoOp's scripts):

* few-shot: ``DATASET/TRAINER/CFG_Kshots/nctxN_cscC_ctpP/seedS`` (also ``DATASET/TRAINER/CFG_Kshots/seedS``);
* base-to-new: ``base2new/{train_base,test_new}/DATASET/shots_K/TRAINER/CFG/seedS``; the base accuracy is the final
  test of the ``train_base`` run, the new accuracy the (eval-only) test of the ``test_new`` run;
* cross-dataset and domain generalization: ``evaluation/TRAINER/CFG_Kshots[/nctxN_cscC_ctpP]/DATASET/seedS``; the four ImageNet
  variants form the domain-generalization table, the other datasets the cross-dataset one.

Any other ``seed<N>`` folder is still reported, grouped by its parent folder, with trainer and dataset taken from
the ``** Arguments **`` section of its log when present.

Which result a run contributes: among its log files (``log.txt``, then ``log.txt-YYYY-MM-DD-HH-MM-SS`` written by
later runs into the same folder) the newest one that holds a complete test result. In a training log that is the
last test-set ``=> result`` block after ``Finish training``; a training log without ``Finish training`` is
unfinished and gives nothing, even if it has test blocks from evaluations during training. A log that never
trained (an ``--eval-only`` run) gives its last test-set block. Blocks printed while evaluating on the *val* split
are never used. Runs that give nothing are counted and listed on stderr.

Statistics: the spread over seeds is the population standard deviation (``numpy.std``, as CoOp's
``parse_test_res.py``; ``--sample-std`` for n-1), or with ``--ci95`` the half-width 1.96 * std / sqrt(n), again
as CoOp. Base-to-new HM = 2 * base * new / (base + new) of the seed means, as in the papers' tables, not the mean
of per-seed HMs. The Average row is the mean of the per-dataset means (for base-to-new over the datasets that have
both base and new results), and its HM is the HM of the two averages, as in CoCoOp's Table 1. The cross-dataset
Average leaves out ImageNet, the source dataset.
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from tabulate import tabulate

from . import published as pub

# ---------------------------------------------------------------------------------------------------------------
# Log parsing

_LOG_NAME_RE = re.compile(r"^log\.txt(?:-(\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}))?$")
# Dassl prints "Finish training"; some forks print "Finished training".
_FINISH_RE = re.compile(r"^Finish(?:ed)? training\b")
_SPLIT_RE = re.compile(r"^Evaluate on the \*(\w+)\* set")
# Lines that only appear when a trainer trains (Dassl's before_train and its epoch progress lines).
_TRAINING_RE = re.compile(r"^(?:Initialize tensorboard|epoch \[\d+/\d+\])")
# "* accuracy: 91.2%", "* total: 1,000"; per-class lines ("* class: 3 (dog)\ttotal: ...") do not match.
_METRIC_RE = re.compile(r"^\* ([A-Za-z_][\w-]*): ([-+]?(?:\d[\d,]*)?\.?\d+(?:[eE][-+]?\d+)?)%?$")
_ARG_RE = re.compile(r"^(trainer|dataset_config_file|config_file|seed): (.*)$")


@dataclass
class LogResult:
    """The test result a log file gives: the ``* key: value`` lines of its chosen ``=> result`` block."""

    metrics: Dict[str, float]
    log_file: str
    kind: str  # "after training" or "eval-only"


@dataclass
class ParsedLog:
    result: Optional[LogResult]
    problem: Optional[str]  # why there is no result
    arguments: Dict[str, str] = field(default_factory=dict)


def parse_log(path: str) -> ParsedLog:
    """Read one Dassl log file and pick its complete test result (see the module docstring for the rule)."""
    with open(path, "r", encoding="utf-8", errors="replace") as handle:
        lines = [line.strip() for line in handle]

    arguments: Dict[str, str] = {}
    finish_at: Optional[int] = None
    trained = False
    split: Optional[str] = None
    blocks: List[Tuple[int, Dict[str, float]]] = []  # (line index, metrics) of test-set result blocks
    i = 0
    while i < len(lines):
        line = lines[i]
        if line == "=> result":
            metrics: Dict[str, float] = {}
            j = i + 1
            while j < len(lines):
                match = _METRIC_RE.match(lines[j])
                if match:
                    metrics.setdefault(match.group(1), float(match.group(2).replace(",", "")))
                elif not (lines[j] == "=> per-class result" or lines[j].startswith("* class:")):
                    break
                j += 1
            if split in (None, "test"):  # no "Evaluate on" line at all: a custom test loop, accept it
                blocks.append((i, metrics))
            split = None
            i = j
            continue
        if _FINISH_RE.match(line):
            finish_at = i
        elif _TRAINING_RE.match(line):
            trained = True
        else:
            match = _SPLIT_RE.match(line)
            if match:
                split = match.group(1)
            elif not blocks and finish_at is None:
                match = _ARG_RE.match(line)
                if match:
                    arguments.setdefault(match.group(1), match.group(2).strip())
        i += 1

    name = os.path.basename(path)
    if finish_at is not None:
        after = [metrics for at, metrics in blocks if at > finish_at]
        if after:
            return ParsedLog(LogResult(after[-1], path, "after training"), None, arguments)
        return ParsedLog(None, f"{name}: no test result after 'Finish training' (TEST.NO_TEST?)", arguments)
    if trained:
        return ParsedLog(None, f"{name}: training did not finish (no 'Finish training')", arguments)
    if blocks:
        return ParsedLog(LogResult(blocks[-1][1], path, "eval-only"), None, arguments)
    return ParsedLog(None, f"{name}: no '=> result' block", arguments)


def log_files(run_dir: str) -> List[str]:
    """Dassl log files of a run folder, newest first (``log.txt`` is the first one Dassl writes)."""
    found = []
    for name in os.listdir(run_dir):
        match = _LOG_NAME_RE.match(name)
        if match and os.path.isfile(os.path.join(run_dir, name)):
            found.append((match.group(1) or "", name))
    return [os.path.join(run_dir, name) for _, name in sorted(found, reverse=True)]


# ---------------------------------------------------------------------------------------------------------------
# Run discovery and layouts

_SEED_RE = re.compile(r"^seed(\d+)$")
_KSHOTS_RE = re.compile(r"_(\d+)shots$")
_SHOTS_DIR_RE = re.compile(r"^shots_(\d+)$")

PROTOCOLS = ("fewshot", "base2new", "xd", "dg", "other")
PROTOCOL_TITLES = {
    "fewshot": "Few-shot classification",
    "base2new": "Base-to-new generalization",
    "xd": "Cross-dataset transfer",
    "dg": "Domain generalization (ImageNet to its variants)",
    "other": "Other runs (layout not recognised, grouped by folder)",
}


@dataclass
class Run:
    """One ``seed<N>`` folder: where it sits in the layout, and the result its logs give (or why not)."""

    path: str
    rel: str
    protocol: str
    dataset: str  # canonical key when known (see clipbayes.published.canonical_dataset)
    trainer: str
    config: str
    seed: int
    role: str = ""  # "base" / "new" for base-to-new runs
    result: Optional[LogResult] = None
    problem: Optional[str] = None
    newer_without_result: List[str] = field(default_factory=list)

    @property
    def method(self) -> Tuple[str, str]:
        return (self.trainer, self.config)


def _classify(parts: Sequence[str]) -> Optional[dict]:
    """Protocol, dataset, trainer, config (and role) from the folders above ``seedS``, or None if unrecognised."""
    n = len(parts)
    for i in range(n - 1, -1, -1):
        if parts[i] in ("train_base", "test_new") and n - i >= 5 and _SHOTS_DIR_RE.match(parts[i + 2]):
            return dict(protocol="base2new", dataset=parts[i + 1], trainer=parts[i + 3],
                        config="/".join(parts[i + 4:]), role="base" if parts[i] == "train_base" else "new")
    if n >= 4 and parts[n - 4] == "evaluation" and _KSHOTS_RE.search(parts[n - 2]):
        dataset = pub.canonical_dataset(parts[n - 1])
        return dict(protocol="dg" if dataset in pub.DG_TARGETS else "xd", dataset=parts[n - 1],
                    trainer=parts[n - 3], config=parts[n - 2])
    if n >= 5 and parts[n - 5] == "evaluation" and _KSHOTS_RE.search(parts[n - 3]):  # CoOp's eval.sh layout
        dataset = pub.canonical_dataset(parts[n - 1])
        return dict(protocol="dg" if dataset in pub.DG_TARGETS else "xd", dataset=parts[n - 1],
                    trainer=parts[n - 4], config=parts[n - 3] + "/" + parts[n - 2])
    if n >= 4 and _KSHOTS_RE.search(parts[n - 2]):
        return dict(protocol="fewshot", dataset=parts[n - 4], trainer=parts[n - 3],
                    config=parts[n - 2] + "/" + parts[n - 1])
    if n >= 3 and _KSHOTS_RE.search(parts[n - 1]):
        return dict(protocol="fewshot", dataset=parts[n - 3], trainer=parts[n - 2], config=parts[n - 1])
    return None


def find_run_dirs(root: str) -> List[str]:
    """Every ``seed<N>`` folder under root (root included), without descending into run folders."""
    found = []
    if _SEED_RE.match(os.path.basename(os.path.normpath(root))):
        return [root]
    for current, dirs, _files in os.walk(root):
        keep = []
        for name in sorted(dirs):
            if name.startswith("."):
                continue
            if _SEED_RE.match(name):
                found.append(os.path.join(current, name))
            else:
                keep.append(name)
        dirs[:] = keep
    return found


def read_run(run_dir: str, root: str) -> Run:
    """Describe one run folder and read its result."""
    absolute = os.path.abspath(run_dir)
    parts = [p for p in absolute.split(os.sep) if p]
    seed = int(_SEED_RE.match(parts[-1]).group(1))
    rel = os.path.relpath(absolute, os.path.abspath(root))
    if rel == ".":
        rel = parts[-1]

    result: Optional[LogResult] = None
    problem: Optional[str] = None
    arguments: Dict[str, str] = {}
    skipped: List[str] = []
    files = log_files(absolute)
    for path in files:
        parsed = parse_log(path)
        arguments = arguments or parsed.arguments
        if parsed.result is not None:
            result = parsed.result
            break
        skipped.append(parsed.problem)
    if not files:
        problem = "no log.txt"
    elif result is None:
        problem = "; ".join(skipped)

    info = _classify(parts[:-1])
    if info is None:
        parent_rel = os.path.dirname(rel) or parts[-2]
        trainer = arguments.get("trainer") or parts[-2]
        dataset_cfg = arguments.get("dataset_config_file", "")
        dataset = os.path.splitext(os.path.basename(dataset_cfg))[0] if dataset_cfg else "?"
        info = dict(protocol="other", dataset=dataset, trainer=trainer, config=parent_rel)
    info["dataset"] = pub.canonical_dataset(info["dataset"])
    return Run(path=absolute, rel=rel, seed=seed, result=result, problem=problem,
               newer_without_result=skipped if result is not None else [], **info)


def scan(root: str) -> List[Run]:
    """Read every run under root."""
    return [read_run(path, root) for path in find_run_dirs(root)]


# ---------------------------------------------------------------------------------------------------------------
# Statistics


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
            if self.metric == "error":
                return None
            base, new = self.stat(method, dataset, "base"), self.stat(method, dataset, "new")
            return harmonic_mean(base and base.mean, new and new.mean)
        stat = self.stat(method, dataset, quantity)
        return None if stat is None else stat.mean

    @property
    def columns(self) -> List[str]:
        return self.quantities + (["hm"] if self.protocol == "base2new" else [])

    def averaged_datasets(self) -> List[str]:
        """Datasets that count towards Average rows (the cross-dataset source, ImageNet, does not)."""
        if self.protocol == "xd":
            return [d for d in self.datasets if d != "imagenet"]
        return list(self.datasets)


_TRAINER_ORDER = ["zeroshotclip", "coop", "cocoop", "bayesianprompt", "pbprompt", "logitprior", "dualviewprompt"]


def _natural_key(text: str):
    return [(0, int(tok), "") if tok.isdigit() else (1, 0, tok) for tok in re.split(r"(\d+)", text)]


def _method_key(method: Tuple[str, str]):
    squashed = re.sub(r"[^0-9a-z]", "", method[0].lower())
    rank = _TRAINER_ORDER.index(squashed) if squashed in _TRAINER_ORDER else len(_TRAINER_ORDER)
    return (rank, method[0].lower(), _natural_key(method[1]))


def _dataset_key(dataset: str):
    if dataset in pub.DATASET_ORDER:
        return (0, pub.DATASET_ORDER.index(dataset), "")
    return (1, 0, dataset.lower())


def summarise(runs: Sequence[Run], metric: str = "accuracy") -> Dict[str, ProtocolSummary]:
    """Group runs with a result into per-protocol summaries of the given metric (a key of the result block)."""
    grouped: Dict[str, Dict[Tuple[Tuple[str, str], str], Dict[str, Stat]]] = {}
    for run in runs:
        if run.result is None or metric not in run.result.metrics:
            continue
        quantity = run.role or metric
        cell = grouped.setdefault(run.protocol, {}).setdefault((run.method, run.dataset), {})
        stat = cell.setdefault(quantity, Stat([], []))
        stat.values.append(run.result.metrics[metric])
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
        methods = sorted({m for m, _ in stats}, key=_method_key)
        datasets = sorted({d for _, d in stats}, key=_dataset_key)
        quantities = ["base", "new"] if protocol == "base2new" else [metric]
        summary = ProtocolSummary(protocol, metric, methods, datasets, stats, {}, quantities)
        eligible = summary.averaged_datasets()
        for method in methods:
            used = [d for d in eligible if all(summary.stat(method, d, q) for q in quantities)]
            values = {q: sum(summary.stat(method, d, q).mean for d in used) / len(used) for q in quantities} \
                if used else {}
            if protocol == "base2new" and used and metric != "error":
                values["hm"] = harmonic_mean(values["base"], values["new"])
            summary.averages[method] = Average(values, used, [d for d in eligible if d not in used])
        summaries[protocol] = summary
    return summaries


# ---------------------------------------------------------------------------------------------------------------
# Rendering


def method_labels(methods: Sequence[Tuple[str, str]]) -> Dict[Tuple[str, str], str]:
    """Short column labels: the trainer name, plus what differs between its configs when it has several."""
    by_trainer: Dict[str, List[str]] = {}
    for trainer, config in methods:
        by_trainer.setdefault(trainer, []).append(config)
    labels = {}
    for trainer, configs in by_trainer.items():
        if len(configs) == 1:
            labels[(trainer, configs[0])] = trainer
            continue
        tokens = [re.split(r"[/_]", c) for c in configs]
        same_length = len({len(t) for t in tokens}) == 1
        for config, toks in zip(configs, tokens):
            if same_length:
                differing = [tok for k, tok in enumerate(toks) if len({t[k] for t in tokens}) > 1]
                labels[(trainer, config)] = f"{trainer} ({'_'.join(differing)})"
            else:
                labels[(trainer, config)] = f"{trainer} ({config})"
    return labels


@dataclass
class Options:
    spread: str = "std"  # or "ci95"
    ddof: int = 0
    decimals: int = 2
    published: bool = False
    by: str = "dataset"


_QUANTITY_HEADERS = {"base": "Base", "new": "New", "hm": "HM"}


def _quantity_header(quantity: str) -> str:
    return _QUANTITY_HEADERS.get(quantity, quantity.replace("_", " ").capitalize()
                                 if quantity != "macro_f1" else "Macro-F1")


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


def _published_for(summary: ProtocolSummary, method: Tuple[str, str], dataset: str, quantity: str):
    name = pub.method_for_trainer(method[0])
    if name is None or summary.metric != "accuracy":
        return None
    return pub.lookup(name, summary.protocol, dataset, "accuracy" if quantity == "accuracy" else quantity)


class _Table:
    """Builds the text cells of one protocol's table."""

    def __init__(self, summary: ProtocolSummary, options: Options):
        self.s = summary
        self.o = options
        self.labels = method_labels(summary.methods)
        self.notes = _Footnotes()
        self.max_n = max((st.n for cell in summary.stats.values() for st in cell.values()), default=0)
        self.partial: List[str] = []

    def fmt(self, value: float) -> str:
        return f"{value:.{self.o.decimals}f}"

    def cell(self, method, dataset, quantity) -> str:
        if quantity == "hm":
            value = self.s.value(method, dataset, "hm")
            return "" if value is None else self.fmt(value)
        stat = self.s.stat(method, dataset, quantity)
        if stat is None:
            return ""
        text = self.fmt(stat.mean)
        if stat.n > 1:
            text += " ± " + self.fmt(stat.spread(self.o.spread, self.o.ddof))
        if stat.n < self.max_n:
            text += f" (n={stat.n})"
        return text

    def average_cell(self, method, quantity) -> str:
        average = self.s.averages[method]
        if quantity not in average.values:
            return ""
        text = self.fmt(average.values[quantity])
        if average.missing:
            text += "*"
        return text

    def published_cell(self, method, dataset, quantity) -> str:
        record = _published_for(self.s, method, dataset, quantity)
        if record is None:
            return ""
        text = f"{record.value:.2f}"
        if record.std is not None:
            text += f" ± {record.std:g}"
        return f"{text} [{self.notes.ref(record.source)}]"

    def published_quantities(self, method) -> List[str]:
        """Quantities for which this method has at least one published number among the table's rows."""
        if not self.o.published:
            return []
        rows = self.s.datasets + ["average"]
        return [q for q in self.s.columns if any(_published_for(self.s, method, d, q) for d in rows)]

    def average_label(self) -> str:
        return "Average (targets)" if self.s.protocol == "xd" else "Average"

    def build(self) -> Tuple[List[str], List[List[str]]]:
        columns = self.s.columns
        if self.o.by == "trainer":
            pub_columns = [q for q in columns if any(q in self.published_quantities(m) for m in self.s.methods)]
            headers = ["Method", "Dataset"] + [_quantity_header(q) for q in columns] + \
                [f"{_quantity_header(q)} (published)" for q in pub_columns]
            rows = []
            for method in self.s.methods:
                label = self.labels[method]
                for dataset in self.s.datasets:
                    if (method, dataset) not in self.s.stats:
                        continue
                    rows.append([label, pub.dataset_display(dataset)] +
                                [self.cell(method, dataset, q) for q in columns] +
                                [self.published_cell(method, dataset, q) for q in pub_columns])
                rows.append([label, self.average_label()] + [self.average_cell(method, q) for q in columns] +
                            [self.published_cell(method, "average", q) for q in pub_columns])
            return headers, rows

        headers = ["Dataset"]
        layout = []  # (method, quantity, is_published)
        for method in self.s.methods:
            label = self.labels[method]
            single = len(columns) == 1
            for q in columns:
                headers.append(label if single else f"{label} {_quantity_header(q)}")
                layout.append((method, q, False))
            for q in self.published_quantities(method):
                headers.append(f"{label} (published)" if single else f"{label} {_quantity_header(q)} (published)")
                layout.append((method, q, True))
        rows = []
        for dataset in self.s.datasets:
            rows.append([pub.dataset_display(dataset)] +
                        [self.published_cell(m, dataset, q) if is_pub else self.cell(m, dataset, q)
                         for m, q, is_pub in layout])
        rows.append([self.average_label()] +
                    [self.published_cell(m, "average", q) if is_pub else self.average_cell(m, q)
                     for m, q, is_pub in layout])
        return headers, rows

    def footer(self) -> List[str]:
        lines = []
        for method in self.s.methods:
            average = self.s.averages[method]
            if average.missing:
                missing = ", ".join(pub.dataset_display(d) for d in average.missing)
                lines.append(f"{self.labels[method]}: Average* over {len(average.datasets)} of "
                             f"{len(average.datasets) + len(average.missing)} datasets (missing: {missing})")
        if self.o.published and self.notes.sources:
            covers = pub.PUBLISHED_AVERAGE_COVERS.get(self.s.protocol)
            ours = {len(self.s.averages[m].datasets) for m in self.s.methods}
            if covers and ours != {covers}:
                lines.append(f"Published averages cover {covers} datasets; ours cover "
                             f"{', '.join(str(k) for k in sorted(ours))}.")
        return lines + self.notes.lines()


def describe(summary: ProtocolSummary, options: Options) -> str:
    """The title line of a table: what the numbers are."""
    spread = "95% CI" if options.spread == "ci95" else ("std (n-1)" if options.ddof else "std")
    text = f"{PROTOCOL_TITLES[summary.protocol]}: {summary.metric} (%), mean ± {spread} over seeds"
    if summary.protocol == "base2new":
        text += "; HM = 2·base·new/(base+new) of the seed means"
        if summary.metric == "error":
            text += " (not defined for error rates)"
    return text


def render_tables(summaries: Dict[str, ProtocolSummary], options: Options, fmt: str) -> str:
    """All protocol tables as plain text ("table") or Markdown."""
    blocks = []
    for summary in summaries.values():
        table = _Table(summary, options)
        headers, rows = table.build()
        body = tabulate(rows, headers=headers, tablefmt="github" if fmt == "markdown" else "simple",
                        disable_numparse=True, colalign=["left"] * len(headers))
        footer = table.footer()
        if fmt == "markdown":
            text = f"### {describe(summary, options)}\n\n{body}\n"
            if footer:
                text += "\n" + "\n".join(f"- {line}" for line in footer) + "\n"
        else:
            text = f"{describe(summary, options)}\n\n{body}\n"
            if footer:
                text += "\n" + "\n".join(footer) + "\n"
        blocks.append(text)
    return "\n".join(blocks)


def render_csv(summaries: Dict[str, ProtocolSummary], options: Options) -> str:
    """One tidy CSV: a row per (protocol, dataset or Average, method, quantity)."""
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

    for summary in summaries.values():
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
                        record = _published_for(summary, method, dataset, quantity)
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
            value = run.result.metrics.get(metric)
            value = "-" if value is None else f"{value:g}"
            source = f"{os.path.basename(run.result.log_file)} ({run.result.kind})"
        rows.append([run.rel, run.protocol, pub.dataset_display(run.dataset), run.trainer,
                     (run.role + " " if run.role else "") + str(run.seed), value, source])
    return tabulate(rows, headers=["run", "protocol", "dataset", "trainer", "seed", metric, "log"],
                    tablefmt="simple", disable_numparse=True) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Command line


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
    return parser


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _report_problems(runs: Sequence[Run], metric: str, limit: int = 10) -> None:
    """Say on stderr which runs give no number, so that nothing is dropped silently."""
    failed = [r for r in runs if r.result is None]
    if failed:
        _warn(f"{len(failed)} of {len(runs)} runs have no test result (unfinished or crashed):")
        for run in failed[:limit]:
            print(f"  {run.rel}: {run.problem}", file=sys.stderr)
        if len(failed) > limit:
            print(f"  ... and {len(failed) - limit} more (--list-runs shows all)", file=sys.stderr)
    lacking = [r for r in runs if r.result is not None and metric not in r.result.metrics]
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
        if run.protocol == "base2new" and run.result is not None and metric in run.result.metrics:
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
    metric = args.keyword or args.metric
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

    _report_problems(selected, metric)
    if args.list_runs:
        print(render_runs(selected, metric))
    summaries = summarise(selected, metric)
    if not summaries:
        print(f"error: no results under '{root}': none of its {len(selected)} selected runs has a complete test "
              f"result with '* {metric}:'", file=sys.stderr)
        return 1
    options = Options(spread="ci95" if args.ci95 else "std", ddof=1 if args.sample_std else 0,
                      decimals=args.decimals, published=args.published, by=args.by)
    if args.published and metric != "accuracy":
        _warn("published numbers are accuracies; they are not shown for " + metric)
    if args.format == "csv":
        sys.stdout.write(render_csv(summaries, options))
    else:
        sys.stdout.write(render_tables(summaries, options, args.format))
    return 0


if __name__ == "__main__":
    sys.exit(main())
