"""Finding the runs of an output tree and what each one is: protocol, dataset, trainer, config, seed from where
its ``seed<N>`` folder sits, its test result from the logs (:mod:`clipbayes.results.logs`) and, when the run wrote
one, the matching evaluation record of its metrics JSON (:mod:`clipbayes.evaluation.report`).

Layouts recognised (those of CoOp's scripts, and of scripts/bayesian_prompt/mc_samples.sh):

* few-shot: ``DATASET/TRAINER/CFG_Kshots/nctxN_cscC_ctpP/seedS`` (also ``DATASET/TRAINER/CFG_Kshots/seedS``);
* base-to-new: ``base2new/{train_base,test_new}/DATASET/shots_K/TRAINER/CFG/seedS``; the base accuracy is the final
  test of the ``train_base`` run, the new accuracy the (eval-only) test of the ``test_new`` run;
* cross-dataset and domain generalization: ``evaluation/TRAINER/CFG_Kshots[/nctxN_cscC_ctpP]/DATASET/seedS``; the
  four ImageNet variants form the domain-generalization table, the other datasets the cross-dataset one;
* MC samples: ``mc_samples/DATASET/shots_K/TRAINER/CFG/L<L>/seedS``.

Any other ``seed<N>`` folder is still reported, grouped by its parent folder, with trainer and dataset taken from
the ``** Arguments **`` section of its log when present.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

from clipbayes import published as pub
from clipbayes.evaluation.report import read_metrics_file
from clipbayes.logfiles import artifact_path, log_files
from clipbayes.results.logs import LogResult, parse_log

OVER = " (over "  # the marker of a wrapping method's base in its config (Run.method)
_SEED_RE = re.compile(r"^seed(\d+)$")
_KSHOTS_RE = re.compile(r"_(\d+)shots$")
_SHOTS_DIR_RE = re.compile(r"^shots_(\d+)$")

_MC_SAMPLES_RE = re.compile(r"^L(\d+)$")
# Targets of the domain-generalization table: ImageNet's variants, and the toy world's shifted style (the
# toy-world protocol's DG run, clipbayes/toyworld/protocol.py).
_DG_DATASETS = set(pub.DG_TARGETS) | {"ToyWorldShift"}

PROTOCOLS = ("fewshot", "base2new", "xd", "dg", "mc_samples", "other")
PROTOCOL_TITLES = {
    "fewshot": "Few-shot classification",
    "base2new": "Base-to-new generalization",
    "xd": "Cross-dataset transfer",
    "dg": "Domain generalization (ImageNet to its variants)",
    "mc_samples": "Monte Carlo samples L at test time (new classes)",
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
    record: Optional[dict] = None  # the metrics-JSON record of the evaluation that gave the result
    record_problem: Optional[str] = None  # why a metrics JSON beside the log could not be read

    base: str = ""  # the learner a wrapping method (LogitPrior) ran around, from the run's log

    @property
    def method(self) -> Tuple[str, str]:
        """(trainer, config); a wrapping method's config names its base, "<config> (over <base>)", so that the
        tables put it beside that base (clipbayes.results.summary.method_key)."""
        return (self.trainer, f"{self.config}{OVER}{self.base})" if self.base else self.config)


def _classify(parts: Sequence[str]) -> Optional[dict]:
    """Protocol, dataset, trainer, config (and role) from the folders above ``seedS``, or None if unrecognised."""
    n = len(parts)
    for i in range(n - 6, -1, -1):  # scripts/bayesian_prompt/mc_samples.sh
        if parts[i] == "mc_samples" and _SHOTS_DIR_RE.match(parts[i + 2]) and _MC_SAMPLES_RE.match(parts[-1]):
            return dict(protocol="mc_samples", dataset=parts[i + 1], trainer=parts[i + 3],
                        config="/".join(parts[i + 4:]))
    for i in range(n - 1, -1, -1):
        if parts[i] in ("train_base", "test_new") and n - i >= 5 and _SHOTS_DIR_RE.match(parts[i + 2]):
            return dict(protocol="base2new", dataset=parts[i + 1], trainer=parts[i + 3],
                        config="/".join(parts[i + 4:]), role="base" if parts[i] == "train_base" else "new")
    if n >= 4 and parts[n - 4] == "evaluation" and _KSHOTS_RE.search(parts[n - 2]):
        dataset = pub.canonical_dataset(parts[n - 1])
        return dict(protocol="dg" if dataset in _DG_DATASETS else "xd", dataset=parts[n - 1],
                    trainer=parts[n - 3], config=parts[n - 2])
    if n >= 5 and parts[n - 5] == "evaluation" and _KSHOTS_RE.search(parts[n - 3]):  # CoOp's eval.sh layout
        dataset = pub.canonical_dataset(parts[n - 1])
        return dict(protocol="dg" if dataset in _DG_DATASETS else "xd", dataset=parts[n - 1],
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

    record, record_problem = evaluation_record(result.log_file) if result is not None else (None, None)
    info = _classify(parts[:-1])
    if info is None:
        parent_rel = os.path.dirname(rel) or parts[-2]
        trainer = arguments.get("trainer") or parts[-2]
        dataset_cfg = arguments.get("dataset_config_file", "")
        dataset = os.path.splitext(os.path.basename(dataset_cfg))[0] if dataset_cfg else "?"
        info = dict(protocol="other", dataset=dataset, trainer=trainer, config=parent_rel)
    info["dataset"] = pub.canonical_dataset(info["dataset"])
    return Run(path=absolute, rel=rel, seed=seed, result=result, problem=problem,
               newer_without_result=skipped if result is not None else [], record=record,
               record_problem=record_problem, base=arguments.get("base", ""), **info)


def evaluation_record(log_file: str) -> Tuple[Optional[dict], Optional[str]]:
    """The last test-split record of the metrics JSON written beside ``log_file`` (the evaluation whose ``=> result``
    block the log gives), or None; and why the file could not be read, if it could not."""
    path = artifact_path(log_file, "metrics", ".json")
    if not os.path.isfile(path):
        return None, None
    try:
        records = read_metrics_file(path)
    except (OSError, ValueError, KeyError) as err:  # json.JSONDecodeError is a ValueError
        return None, f"{os.path.basename(path)}: {err}"
    tests = [r for r in records if r.get("split") == "test"]
    return (tests[-1] if tests else None), None


def scan(root: str) -> List[Run]:
    """Read every run under root."""
    return [read_run(path, root) for path in find_run_dirs(root)]

