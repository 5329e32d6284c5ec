"""What every evaluation writes besides Dassl's ``=> result`` block: the metric lines in the log, one JSON file per
log file, and (``TEST.SAVE_PREDICTIONS``) the test set's predictions.

Files beside Dassl's log, named after it (Dassl writes ``log.txt``, and ``log.txt-YYYY-MM-DD-HH-MM-SS`` when a
later run shares the folder), so a rerun never overwrites an earlier run's files:
    log.txt      -> metrics.json,      predictions.npz
    log.txt-TS   -> metrics-TS.json,   predictions-TS.npz
``metrics.json`` holds ``{"format": FORMAT, "evaluations": [record, ...]}``, one record per evaluation of that
log, in order (see :func:`make_record`); every write replaces the file atomically. ``predictions.npz`` holds the
last test-split evaluation of the log: ``probs`` (N, C) float16, ``labels`` (N,) int64, ``predicted`` (N,) int64
(the argmax of the full-precision predictive: near-equal probabilities can tie in float16), ``image_paths`` (N,)
str, ``classnames`` (C,) str, ``temperature`` () float64 (NaN when none was fitted).
"""
from __future__ import annotations

import datetime
import json
import math
import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from clipbayes.evaluation import metrics as M
from clipbayes.evaluation.temperature import fit_temperature, scale
from clipbayes.fileio import atomic_write
from clipbayes.logfiles import artifact_path

FORMAT = "clipbayes-metrics/1"
# Metrics printed after Dassl's block (accuracy and macro-F1 are in that block already).
PRINTED = ("nll", "brier", "ece", "ace", "mce", "aurc", "acc@50", "acc@80", "acc@90", "entropy",
           "mutual_information")


@dataclass
class Predictions:
    """The gathered predictions of one split: log p (N, C), labels (N,), per-image mutual information (N,) for
    methods that predict from Monte Carlo samples."""

    log_probs: Tensor
    labels: Tensor
    mutual_information: Optional[Tensor] = None
    mc_samples: int = 1  # L of the Monte Carlo predictive (1: a deterministic prediction)

    def metrics(self, temperature: float = 1.0) -> Dict[str, float]:
        log_probs = M.log_predictive(scale(self.log_probs, temperature))
        return M.compute_metrics(log_probs, self.labels, self.mutual_information if temperature == 1.0 else None)

    def curves(self, temperature: float = 1.0) -> Dict[str, dict]:
        return M.compute_curves(M.log_predictive(scale(self.log_probs, temperature)), self.labels)


class PredictionCollector:
    """Accumulates an evaluation batch by batch, from what the method's ``predict_logits`` returns."""

    def __init__(self):
        self._log_probs: List[Tensor] = []
        self._mi: List[Tensor] = []
        self._mc_samples = 1

    def add(self, scores: Tensor, mc_logits: Optional[Tensor] = None) -> None:
        """scores (B, C): softmax(scores) is the predictive; mc_logits (L, B, C): the samples behind them."""
        log_probs = M.log_predictive(scores)
        self._log_probs.append(log_probs.float().cpu())
        if mc_logits is not None and mc_logits.shape[0] > 1:
            self._mi.append(M.mutual_information(mc_logits, log_probs).float().cpu())
            self._mc_samples = mc_logits.shape[0]

    def absorb(self, other: "PredictionCollector") -> None:
        """Append the batches ``other`` collected (e.g. one test batch computed by another process)."""
        self._log_probs += other._log_probs
        self._mi += other._mi
        self._mc_samples = max(self._mc_samples, other._mc_samples)

    def gather(self, labels: Tensor) -> Predictions:
        """The predictions of the batches added, in order, with their labels (N,)."""
        return Predictions(torch.cat(self._log_probs), labels.cpu(), torch.cat(self._mi) if self._mi else None,
                           self._mc_samples)


@dataclass
class Temperature:
    """A fitted temperature and what it was fitted on (a sentence, printed and stored)."""

    value: float
    fitted_on: str

    @classmethod
    def fit(cls, held_out: Predictions, source: str) -> "Temperature":
        return cls(fit_temperature(held_out.log_probs, held_out.labels),
                   f"{source}, {len(held_out.labels):,} images")


def _number(name: str, value: float) -> str:
    return f"{value:.2f}%" if M.METRIC_UNITS.get(name) == "%" else f"{value:.4f}"


def format_block(record: dict) -> str:
    """The log lines after Dassl's ``=> result`` block. Every line is ``* NAME: VALUE`` with the raw value first, so
    CoOp's parse_test_res.py (``--keyword ece`` and the like) reads the raw number."""
    temperature = record["temperature"]
    scaled = record["temperature_scaled"]["metrics"] if temperature else {}
    lines = [f"=> calibration and selective prediction ({record['split']} split, {record['num_images']:,} images)"]
    for name in PRINTED:
        if name not in record["metrics"]:
            continue
        line = f"* {name}: {_number(name, record['metrics'][name])}"
        if name in scaled:
            line += f" (temperature-scaled: {_number(name, scaled[name])})"
        lines.append(line)
    if temperature:
        lines.append(f"* temperature: {temperature['value']:.4f} (fitted on {temperature['fitted_on']})")
    elif record.get("temperature_note"):
        lines.append(f"* temperature: none ({record['temperature_note']})")
    return "\n".join(lines)


def make_record(predictions: Predictions, split: str, info: dict, temperature: Optional[Temperature] = None,
                temperature_note: str = "") -> dict:
    """One evaluation as JSON-ready data: ``info`` (trainer, dataset, epoch, ...), metrics and curves (raw and,
    with a temperature, temperature-scaled), the temperature and where it came from."""
    record = {"time": datetime.datetime.now().isoformat(timespec="seconds"), "split": split, **info,
              "num_images": int(len(predictions.labels)), "num_classes": int(predictions.log_probs.shape[-1]),
              "mc_samples": predictions.mc_samples,
              "metrics": predictions.metrics(), "curves": predictions.curves(),
              "temperature": None, "temperature_scaled": None, "temperature_note": temperature_note}
    if temperature is not None:
        record["temperature"] = {"value": temperature.value, "fitted_on": temperature.fitted_on}
        record["temperature_scaled"] = {"metrics": predictions.metrics(temperature.value),
                                        "curves": predictions.curves(temperature.value)}
    return record


def save_predictions(path: str, predictions: Predictions, image_paths: Sequence[str], classnames: Sequence[str],
                     temperature: Optional[Temperature]) -> None:
    """Probabilities (fp16), labels, image paths and class names of one split, written atomically."""
    if len(image_paths) != len(predictions.labels):
        raise ValueError(f"{len(image_paths)} image paths for {len(predictions.labels)} predictions")
    arrays = {"probs": predictions.log_probs.exp().half().numpy(), "labels": predictions.labels.long().numpy(),
              "predicted": predictions.log_probs.argmax(-1).numpy(),
              "image_paths": np.asarray(list(image_paths), dtype=str),
              "classnames": np.asarray(list(classnames), dtype=str),
              "temperature": np.float64(math.nan if temperature is None else temperature.value)}
    atomic_write(path, lambda handle: np.savez_compressed(handle, **arrays))


def load_predictions(path: str) -> dict:
    """The arrays of a predictions file (no pickled objects are read)."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def read_metrics_file(path: str) -> List[dict]:
    """The evaluation records of a metrics JSON file; a file of another format is an error naming it."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("evaluations"), list):
        raise ValueError(f"{path} is not a clipbayes metrics file (expected \"format\": \"{FORMAT}\" and a list "
                         f"of \"evaluations\"); move it away to write a new one")
    return data["evaluations"]


class EvaluationRecorder:
    """Prints the metric block and keeps the run's JSON file (and predictions file) up to date. Records already in
    the JSON file (a file left by an earlier process writing to the same log name) are kept, new ones appended."""

    def __init__(self, log_file: str):
        self.json_path = artifact_path(log_file, "metrics", ".json")
        self.predictions_path = artifact_path(log_file, "predictions", ".npz")
        self.log_name = osp.basename(log_file)
        self.records: List[dict] = read_metrics_file(self.json_path) if osp.isfile(self.json_path) else []

    def report(self, record: dict, predictions: Optional[Predictions] = None, image_paths: Sequence[str] = (),
               classnames: Sequence[str] = ()) -> None:
        """Print ``record``'s block, append it to the JSON file, and save the predictions when they are given."""
        if predictions is not None:
            temperature = record["temperature"]
            save_predictions(self.predictions_path, predictions, image_paths, classnames,
                             temperature and Temperature(**temperature))
            record["predictions_file"] = osp.basename(self.predictions_path)
        record["log_file"] = self.log_name
        self.records.append(record)
        text = json.dumps({"format": FORMAT, "evaluations": self.records}, indent=1)
        atomic_write(self.json_path, lambda handle: handle.write(text), binary=False)
        print(format_block(record))
        print(f"Metrics written to {self.json_path}" +
              (f"; predictions to {self.predictions_path}" if predictions is not None else ""))
