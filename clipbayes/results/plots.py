"""Figures from an output tree (``--plots DIR``; matplotlib's Agg canvas, each figure as PNG and PDF).

    reliability_<protocol>_<dataset|pooled>   per method (rows) and base / new (columns): accuracy per confidence
                                              bin against the diagonal, the gap to the bin's mean confidence, ECE
                                              (and after temperature scaling) in the title; bins pooled over seeds
                                              (and datasets): the ECE of the pooled predictions
    accuracy_<protocol>                       accuracy per dataset (base / new / HM panels for base-to-new), methods
                                              side by side, std over seeds as error bars, published numbers as
                                              black diamonds where clipbayes.published has them
    risk_coverage_<protocol>_<dataset|pooled> selective risk against coverage per method (mean over runs), AURC
                                              in the legend
    mc_samples                                accuracy against the number of Monte Carlo samples L, for every group
                                              of runs that differ only in L (a trailing ``L<k>`` config folder,
                                              e.g. scripts/bayesian_prompt/mc_samples.sh), BayesianPrompt's Table 6
                                              as markers
Figures are drawn from the runs' metrics JSON records (curves and metrics), so no model or prediction file is
needed.
"""
from __future__ import annotations

import math
import os
import re
from typing import Dict, List, Sequence, Tuple

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from clipbayes import published as pub
from clipbayes.evaluation.metrics import binned_errors, merge_bins
from clipbayes.fileio import atomic_write
from clipbayes.results.runs import PROTOCOL_TITLES, Run
from clipbayes.results.summary import dataset_key, method_key, run_value, summarise
from clipbayes.results.tables import method_labels, published_for

_L_FOLDER_RE = re.compile(r"(?:^|/)L(\d+)$")
_ROLE_TITLES = {"base": "base classes", "new": "new classes", "": ""}
_TABLE6_L = (1, 2, 5, 10, 20, 40, 80)  # the L of BayesianPrompt's Table 6


def _save(figure: Figure, folder: str, name: str) -> List[str]:
    FigureCanvasAgg(figure)
    paths = []
    for extension in ("png", "pdf"):
        path = os.path.join(folder, f"{name}.{extension}")
        atomic_write(path, lambda handle: figure.savefig(handle, format=extension, dpi=120,
                                                         bbox_inches="tight"))
        paths.append(path)
    return paths


def _colours(n: int) -> List[str]:
    cycle = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
             "#17becf"]
    return [cycle[k % len(cycle)] for k in range(n)]


def _safe(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.-]+", "-", name)


def pooled_bins(records: Sequence[dict], scaled: bool = False) -> Dict[str, list]:
    """The reliability bins of several evaluations (after temperature scaling with ``scaled``) pooled."""
    return merge_bins([(r["temperature_scaled"] if scaled else r)["curves"]["reliability"] for r in records])


def bins_ece(bins: Dict[str, list]) -> float:
    """ECE (%) of reliability bins."""
    return 100.0 * binned_errors(bins)[0]


def _roles(runs: Sequence[Run]) -> List[str]:
    return [r for r in ("base", "new", "") if any(run.role == r for run in runs)]


def _reliability_panel(axis, bins: Dict[str, list], title: str) -> None:
    n_bins = len(bins["count"])
    width = 1.0 / n_bins
    centres = [(k + 0.5) * width for k in range(n_bins)]
    filled = [k for k in range(n_bins) if bins["count"][k]]
    axis.bar([centres[k] for k in filled], [bins["accuracy"][k] for k in filled], width=width, color="#1f77b4",
             edgecolor="white", label="accuracy")
    axis.bar([centres[k] for k in filled], [bins["confidence"][k] - bins["accuracy"][k] for k in filled],
             bottom=[bins["accuracy"][k] for k in filled], width=width, color="#d62728", alpha=0.35,
             edgecolor="#d62728", label="gap to confidence")
    axis.plot([0, 1], [0, 1], "--", color="#555555", linewidth=1)
    total = sum(bins["count"])
    axis.bar(centres, [0.25 * c / max(bins["count"]) for c in bins["count"]], width=width * 0.5,
             color="#7f7f7f", alpha=0.6, label=f"share of images (tallest {max(bins['count']) / total:.0%})")
    axis.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=title)
    axis.title.set_fontsize(9)


def _figure_groups(runs: Sequence[Run]):
    """Per protocol with metric records, per dataset and then pooled: (protocol, dataset or "pooled", the runs,
    the methods in registry order, their labels, the roles present, the suptitle's place)."""
    for protocol in PROTOCOL_TITLES:
        chosen = [r for r in runs if r.protocol == protocol and r.record is not None]
        if not chosen:
            continue
        methods = sorted({r.method for r in chosen}, key=method_key)
        labels, roles = method_labels(methods), _roles(chosen)
        for dataset in sorted({r.dataset for r in chosen}, key=dataset_key) + ["pooled"]:
            subset = [r for r in chosen if dataset == "pooled" or r.dataset == dataset]
            where = "pooled over datasets" if dataset == "pooled" else pub.dataset_display(dataset)
            yield protocol, dataset, subset, methods, labels, roles, where


def reliability_figures(runs: Sequence[Run], folder: str) -> List[str]:
    written = []
    for protocol, dataset, subset, methods, labels, roles, where in _figure_groups(runs):
        figure = Figure(figsize=(max(4.5, 3.2 * len(roles)), 3.0 * len(methods) + 0.4), layout="constrained")
        axes = figure.subplots(len(methods), len(roles), squeeze=False)
        for i, method in enumerate(methods):
            for j, role in enumerate(roles):
                records = [r.record for r in subset if r.method == method and r.role == role]
                axis = axes[i][j]
                if not records:
                    axis.set_axis_off()
                    axis.text(0.5, 0.5, "no runs", ha="center", va="center")
                    continue
                bins = pooled_bins(records)
                title = f"{labels[method]}, {_ROLE_TITLES[role]}".rstrip(", ") + f"\nECE {bins_ece(bins):.1f}%"
                if all(r.get("temperature_scaled") for r in records):
                    title += f" (TS {bins_ece(pooled_bins(records, scaled=True)):.1f}%)"
                runs_text = f"{len(records)} run" + ("s" if len(records) > 1 else "")
                _reliability_panel(axis, bins, f"{title}, {runs_text}")
        axes[0][0].legend(loc="upper left", fontsize=7)
        figure.suptitle(f"Reliability, {where}\n{PROTOCOL_TITLES[protocol]}", fontsize=10)
        written += _save(figure, folder, f"reliability_{protocol}_{_safe(dataset)}")
    return written


def _bar_series(summary, method, quantity, rows, position):
    """Bar positions, heights and std error bars of one method, and the positions and values of published numbers."""
    bars, published = [], []
    for x, dataset in enumerate(rows):
        if dataset == "average":
            value, error = summary.averages[method].values.get(quantity), 0.0
        else:
            stat = summary.stat(method, dataset, quantity)
            value, error = summary.value(method, dataset, quantity), stat.spread() if stat is not None else 0.0
        if value is not None:
            bars.append((x + position, value, error))
        record = published_for(summary, method, dataset, quantity)
        if record is not None:
            published.append((x + position, record.value))
    return bars, published


def accuracy_figures(runs: Sequence[Run], folder: str) -> List[str]:
    written = []
    for protocol, summary in summarise(runs, "accuracy").items():
        methods, labels = summary.methods, method_labels(summary.methods)
        rows = summary.datasets + ["average"]
        quantities = summary.columns
        figure = Figure(figsize=(max(6.0, 0.35 * len(rows) * len(methods) + 2.5), 2.6 * len(quantities) + 0.6),
                        layout="constrained")
        axes = figure.subplots(len(quantities), 1, squeeze=False)[:, 0]
        width = 0.8 / len(methods)
        any_published_average = False
        for axis, quantity in zip(axes, quantities):
            published_label = "published"
            for k, (method, colour) in enumerate(zip(methods, _colours(len(methods)))):
                bars, published = _bar_series(summary, method, quantity, rows, -0.4 + (k + 0.5) * width)
                if bars:
                    xs, heights, errors = zip(*bars)
                    axis.bar(xs, heights, width=width * 0.95, yerr=[e or math.nan for e in errors], color=colour,
                             label=labels[method], capsize=2, error_kw={"linewidth": 0.8})
                if published:
                    axis.scatter(*zip(*published), marker="D", s=18, color="black", zorder=3, label=published_label)
                    published_label = None  # one legend entry
                    any_published_average |= any(x > len(rows) - 1.5 for x, _ in published)
            axis.set_xticks(range(len(rows)))
            axis.set_xticklabels([pub.dataset_display(d) if d != "average" else "Average" for d in rows],
                                 rotation=30, ha="right", fontsize=8)
            axis.set_ylabel({"hm": "HM (%)", "base": "base accuracy (%)", "new": "new accuracy (%)"}.get(
                quantity, "accuracy (%)"))
            axis.set_ylim(0, 100)
            axis.grid(axis="y", alpha=0.3)
        handles, names = axes[0].get_legend_handles_labels()
        for axis in axes[1:]:
            for handle, name in zip(*axis.get_legend_handles_labels()):
                if name not in names:
                    handles.append(handle), names.append(name)
        figure.legend(handles, names, loc="outside lower center", ncol=min(5, len(names)), fontsize=8)
        title = f"{PROTOCOL_TITLES[protocol]}: accuracy, mean ± std over seeds"
        covers = pub.PUBLISHED_AVERAGE_COVERS.get(protocol)
        if any_published_average and covers:
            title += f"\n(published averages cover {covers} datasets; ours cover those shown)"
        figure.suptitle(title, fontsize=10)
        written += _save(figure, folder, f"accuracy_{protocol}")
    return written


def _mean_curve(records: Sequence[dict]) -> Tuple[List[float], List[float]]:
    curves = [r["curves"]["risk_coverage"] for r in records]
    coverage = curves[0]["coverage"]
    return coverage, [100.0 * sum(c["risk"][k] for c in curves) / len(curves) for k in range(len(coverage))]


def risk_coverage_figures(runs: Sequence[Run], folder: str) -> List[str]:
    written = []
    for protocol, dataset, subset, methods, labels, roles, where in _figure_groups(runs):
        figure = Figure(figsize=(max(5.0, 4.2 * len(roles)), 3.6), layout="constrained")
        axes = figure.subplots(1, len(roles), squeeze=False)[0]
        for axis, role in zip(axes, roles):
            for method, colour in zip(methods, _colours(len(methods))):
                records = [r.record for r in subset if r.method == method and r.role == role]
                if not records:
                    continue
                coverage, risk = _mean_curve(records)
                aurc = sum(r["metrics"]["aurc"] for r in records) / len(records)
                axis.plot(coverage, risk, color=colour, label=f"{labels[method]} (AURC {aurc:.1f})")
            axis.set(xlim=(0, 1), ylim=(0, None), xlabel="coverage", ylabel="selective risk (%)",
                     title=_ROLE_TITLES[role])
            axis.grid(alpha=0.3)
            axis.legend(fontsize=7, loc="lower right")
        figure.suptitle(f"Risk-coverage, {where}\n{PROTOCOL_TITLES[protocol]}", fontsize=10)
        written += _save(figure, folder, f"risk_coverage_{protocol}_{_safe(dataset)}")
    return written


def mc_sweeps(runs: Sequence[Run]) -> Dict[Tuple[str, str, str, str, str], Dict[int, List[float]]]:
    """(protocol, trainer, base config, dataset, role) -> {L: accuracies over seeds}, for groups of runs that
    differ only in a trailing ``L<k>`` config folder, with at least two values of L."""
    sweeps: Dict[Tuple[str, str, str, str, str], Dict[int, List[float]]] = {}
    for run in runs:
        match = _L_FOLDER_RE.search(run.config)
        accuracy = run_value(run, "accuracy")
        if match is None or run.record is None or accuracy is None:
            continue
        classes = run.role or run.record.get("classes", "")  # base / new from the layout, else from the run's config
        key = (run.protocol, run.trainer, run.config[:match.start()], run.dataset, "" if classes == "all" else classes)
        sweeps.setdefault(key, {}).setdefault(int(run.record.get("mc_samples", match.group(1))), []).append(
            accuracy)
    return {key: values for key, values in sweeps.items() if len(values) >= 2}


def mc_samples_figure(runs: Sequence[Run], folder: str) -> List[str]:
    sweeps = mc_sweeps(runs)
    if not sweeps:
        return []
    datasets = sorted({key[3] for key in sweeps}, key=dataset_key)
    columns = min(3, len(datasets))
    rows = math.ceil(len(datasets) / columns)
    figure = Figure(figsize=(4.0 * columns, 3.2 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis in axes[len(datasets):]:
        axis.set_axis_off()
    for axis, dataset in zip(axes, datasets):
        keys = [key for key in sweeps if key[3] == dataset]
        published_shown = False
        for key, colour in zip(keys, _colours(len(keys))):
            values = sweeps[key]
            ls = sorted(values)
            means = [sum(values[L]) / len(values[L]) for L in ls]
            stds = [math.sqrt(sum((v - m) ** 2 for v in values[L]) / len(values[L])) for L, m in zip(ls, means)]
            label = f"{key[1]}, {_ROLE_TITLES[key[4]]}".rstrip(", ") if len(keys) == 1 else \
                f"{key[1]} ({key[2]}), {_ROLE_TITLES[key[4]]}".rstrip(", ")
            axis.errorbar(ls, means, yerr=stds, marker="o", color=colour, capsize=2, label=label)
            method = pub.method_for_trainer(key[1])
            published = [(int(rec.variant[2:]), rec.value) for rec in pub.records(method, "base2new", dataset, "new")
                         if rec.variant and re.fullmatch(r"L=\d+", rec.variant)] if method else []
            if published and key[4] == "new" and not published_shown:
                axis.scatter(*zip(*published), marker="D", s=18, color="black", zorder=3,
                             label="published (BayesianPrompt Table 6)")
                published_shown = True
        axis.set_xscale("log")
        ticks = sorted({L for key in keys for L in sweeps[key]} | {x for x in _TABLE6_L if published_shown})
        axis.set_xticks(ticks, [str(L) for L in ticks])
        axis.minorticks_off()
        axis.set(xlabel="MC samples L", ylabel="accuracy (%)", title=pub.dataset_display(dataset))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.suptitle("Accuracy against the number of Monte Carlo samples at test time", fontsize=10)
    return _save(figure, folder, "mc_samples")


def write_plots(runs: Sequence[Run], folder: str) -> List[str]:
    """Every figure the runs allow, into folder; returns the paths written."""
    os.makedirs(folder, exist_ok=True)
    with_result = [r for r in runs if r.result is not None]
    return (reliability_figures(with_result, folder) + accuracy_figures(with_result, folder) +
            risk_coverage_figures(with_result, folder) + mc_samples_figure(with_result, folder))
