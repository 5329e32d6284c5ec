"""The trainer's side of an evaluation report: after Dassl's ``=> result`` block, ``EvaluationReporter.report``
prints the calibration and selective-prediction metrics, appends them to the run's metrics JSON and, with
``TEST.SAVE_PREDICTIONS``, saves the test set's predictions (:mod:`clipbayes.evaluation.report`).

Temperature scaling (``TEST.TEMPERATURE_SCALING``, on by default) for a test-split evaluation: the temperature is
    1. carried over from the training run of ``--model-dir`` (its metrics JSON), when the weights were loaded from
       one: an ``--eval-only`` run on new classes or another dataset is then scaled with the temperature fitted on
       the training run's held-out data, never with labels of its own classes;
    2. else fitted on this run's validation split,
    3. or else on the few-shot training set (test-time transform, no augmentation),
       each only when it shares no image with the test set (CoOp's ImageNet reader uses the test set as val; the
       ImageNet variants' readers use it as training set);
    4. else none, and the report says why.
"""
from __future__ import annotations

import os.path as osp
from typing import Callable, Optional, Sequence, Tuple

from clipbayes.evaluation.report import EvaluationRecorder, Predictions, Temperature, make_record, read_metrics_file
from clipbayes.logfiles import artifact_path, current_log_file, log_files

# predict(split name, items) -> the gathered predictions of those items, with the test-time pipeline.
PredictItems = Callable[[str, Sequence], Predictions]


def carried_temperature(model_dir: str) -> Optional[Temperature]:
    """The temperature of the last test evaluation recorded in ``model_dir``'s newest metrics JSON, if any."""
    for log_file in log_files(model_dir) if osp.isdir(model_dir) else []:
        path = artifact_path(log_file, "metrics", ".json")
        if not osp.isfile(path):
            continue
        tests = [r for r in read_metrics_file(path) if r.get("split") == "test" and r.get("temperature")]
        if tests:
            fitted = tests[-1]["temperature"]
            return Temperature(fitted["value"], f"{fitted['fitted_on']} of the training run in {model_dir}")
    return None


class EvaluationReporter:
    """Built once per trainer; ``report`` is called by every ``test()`` with the gathered predictions."""

    def __init__(self, cfg, dataset, predict_items: PredictItems, writes: bool = True):
        """``writes``: print and write the report (False on every process but the first under torchrun, which
        still takes part in the temperature fit's collective passes)."""
        self.cfg = cfg
        self.writes = writes
        self.dataset = dataset  # Dassl's DatasetBase: train_x, val, test, classnames
        self.predict_items = predict_items
        self.recorder = EvaluationRecorder(current_log_file(cfg.OUTPUT_DIR))
        self.model_dir = ""

    def loaded_from(self, model_dir: str) -> None:
        """The weights now come from ``model_dir`` (``--model-dir``); reloading this run's own best checkpoint
        (``TEST.FINAL_MODEL best_val``) does not count: its temperature is fitted anew."""
        if osp.abspath(model_dir) != osp.abspath(self.cfg.OUTPUT_DIR):
            self.model_dir = model_dir

    def temperature(self) -> Tuple[Optional[Temperature], str]:
        """(temperature, "") or (None, why there is none); see the module docstring for the order."""
        if not self.cfg.TEST.TEMPERATURE_SCALING:
            return None, "TEST.TEMPERATURE_SCALING is off"
        if self.model_dir:
            carried = carried_temperature(self.model_dir)
            if carried is not None:
                return carried, ""
        test_images = {item.impath for item in self.dataset.test}
        for split, items, source in (("val", self.dataset.val, "the val split"),
                                     ("train", self.dataset.train_x, "the few-shot training set")):
            if items and not any(item.impath in test_images for item in items):
                return Temperature.fit(self.predict_items(split, items), source), ""
        return None, "no val split or training set without test images to fit it on"

    def report(self, split: str, predictions: Predictions, epoch: int) -> None:
        """Print, record (and for the test split with TEST.SAVE_PREDICTIONS save) one evaluation."""
        temperature, note = self.temperature() if split == "test" else (None, "fitted for test evaluations only")
        info = {"trainer": self.cfg.TRAINER.NAME, "dataset": self.cfg.DATASET.NAME,
                "classes": self.cfg.DATASET.SUBSAMPLE_CLASSES, "epoch": epoch, "model_dir": self.model_dir}
        record = make_record(predictions, split, info, temperature, note)
        if not self.writes:
            return
        save = split == "test" and self.cfg.TEST.SAVE_PREDICTIONS
        self.recorder.report(record, predictions if save else None,
                             [item.impath for item in self.dataset.test] if save else (),
                             self.dataset.classnames)
