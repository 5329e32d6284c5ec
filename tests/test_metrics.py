"""Metrics (clipbayes.evaluation.metrics), temperature scaling and the evaluation report: hand-computed cases,
independent implementations (sklearn, torchmetrics, slow loops), and known limits."""
from __future__ import annotations

import itertools
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from torchmetrics.functional.classification import multiclass_calibration_error
from yacs.config import CfgNode

import support

from clipbayes.evaluation import metrics as M
from clipbayes.evaluation import report as R
from clipbayes.evaluation.reporter import EvaluationReporter
from clipbayes.evaluation.temperature import fit_temperature

# Four images, two classes; confidences 0.9, 0.75, 0.62, 0.7 (none on a bin edge), the first two correct.
HAND_PROBS = torch.tensor([[0.9, 0.1], [0.25, 0.75], [0.62, 0.38], [0.3, 0.7]], dtype=torch.float64)
HAND_LABELS = torch.tensor([0, 1, 1, 0])


def hand_metrics():
    return M.compute_metrics(HAND_PROBS.log(), HAND_LABELS)


def calibrated_predictor(n=100_000, classes=10, sharpness=3.0, seed=0):
    """Logits and labels drawn from softmax(logits): calibrated by construction."""
    generator = torch.Generator().manual_seed(seed)
    logits = sharpness * torch.randn(n, classes, generator=generator, dtype=torch.float64)
    labels = torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)
    return logits, labels


def test_hand_computed_case():
    m = hand_metrics()
    assert m["accuracy"] == pytest.approx(50.0)
    assert m["macro_f1"] == pytest.approx(50.0)  # both classes: TP 1, FP 1, FN 1 -> F1 = 2/4
    assert m["nll"] == pytest.approx(-(math.log(0.9) + math.log(0.75) + math.log(0.38) + math.log(0.3)) / 4)
    # (0.1^2 + 0.1^2) + (0.25^2 * 2) + (0.62^2 * 2) + (0.7^2 * 2), over 4
    assert m["brier"] == pytest.approx((0.02 + 0.125 + 0.7688 + 0.98) / 4)
    # Every image alone in its bin: ECE = mean |correct - conf|, MCE = max.
    assert m["ece"] == pytest.approx(100 * (0.1 + 0.25 + 0.62 + 0.7) / 4)
    assert m["mce"] == pytest.approx(70.0)
    assert m["ace"] == pytest.approx(m["ece"])  # 4 images in min(15, 4) equal-mass bins of one
    # Sorted by confidence: right, right, wrong, wrong -> risks 0, 0, 1/3, 1/2.
    assert m["aurc"] == pytest.approx(100 * (1 / 3 + 1 / 2) / 4)
    assert (m["acc@50"], m["acc@80"], m["acc@90"]) == pytest.approx((100.0, 50.0, 50.0))
    entropies = [-(p * math.log(p) + (1 - p) * math.log(1 - p)) for p in (0.9, 0.75, 0.62, 0.7)]
    assert m["entropy"] == pytest.approx(sum(entropies) / 4)
    assert "mutual_information" not in m


def test_bins_with_two_bins_by_hand():
    confidence, correct = HAND_PROBS.max(-1).values, torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    width = M.reliability_bins(confidence, correct, n_bins=2)
    assert width["count"] == [0, 4] and width["accuracy"][1] == pytest.approx(0.5)
    assert width["confidence"][1] == pytest.approx((0.9 + 0.75 + 0.62 + 0.7) / 4)
    mass = M.equal_mass_bins(confidence, correct, n_bins=2)  # [0.62, 0.7] wrong, [0.75, 0.9] right
    assert mass["count"] == [2, 2] and mass["accuracy"] == [0.0, 1.0]
    assert mass["confidence"] == pytest.approx([0.66, 0.825])
    errors = M.calibration_errors(HAND_PROBS.log(), HAND_LABELS, n_bins=2)
    assert errors["ece"] == pytest.approx(100 * abs(0.5 - 0.7425))
    assert errors["ace"] == pytest.approx(100 * (0.66 + 0.175) / 2)


def test_accuracy_and_macro_f1_match_sklearn_as_dassl_computes_them():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(300, 7, generator=generator)
    labels = torch.randint(0, 6, (300,), generator=generator)  # class 6 never true, but predicted
    pred = logits.argmax(-1).numpy()
    expected = 100 * f1_score(labels.numpy(), pred, average="macro", labels=np.unique(labels.numpy()))
    log_probs = M.log_predictive(logits)
    assert M.macro_f1(log_probs, labels) == pytest.approx(expected)
    assert M.accuracy(log_probs, labels) == pytest.approx(100 * (pred == labels.numpy()).mean())


def test_nll_and_brier_against_direct_formulas():
    logits, labels = calibrated_predictor(n=500, classes=5)
    log_probs = M.log_predictive(logits)
    assert M.nll(log_probs, labels) == pytest.approx(F.cross_entropy(logits, labels).item())
    probs = logits.softmax(-1).numpy()
    slow = np.mean([sum((probs[i, c] - (c == labels[i].item())) ** 2 for c in range(5)) for i in range(500)])
    assert M.brier(log_probs, labels) == pytest.approx(slow)


def test_ece_and_mce_match_torchmetrics():
    logits, labels = calibrated_predictor(n=3000, classes=6, sharpness=1.5, seed=3)
    noise = torch.randn(logits.shape, dtype=logits.dtype, generator=torch.Generator().manual_seed(3))
    logits = 0.5 * logits + noise  # miscalibrated, so the values are far from 0
    probs = logits.softmax(-1).float()
    assert probs.max() < 1  # torchmetrics puts conf == 1 in a 16th bin of its own; ours closes the last bin
    for norm, name in (("l1", "ece"), ("max", "mce")):
        expected = multiclass_calibration_error(probs, labels, num_classes=6, n_bins=15, norm=norm)
        assert M.calibration_errors(probs.double().log(), labels)[name] == pytest.approx(100 * expected.item(),
                                                                                       abs=1e-4)


def test_adaptive_ece_matches_a_loop_over_sorted_chunks():
    logits, labels = calibrated_predictor(n=1003, classes=4, sharpness=1.0, seed=4)
    logits = 2.0 * logits
    probs = logits.softmax(-1).numpy()
    conf, correct = probs.max(1), (probs.argmax(1) == labels.numpy()).astype(float)
    order = np.argsort(conf, kind="stable")
    total = sum(len(chunk) * abs(correct[chunk].mean() - conf[chunk].mean())
                for chunk in np.array_split(order, 15))
    assert M.calibration_errors(M.log_predictive(logits), labels)["ace"] == pytest.approx(100 * total / 1003)


def test_calibrated_predictor_has_ece_near_zero_and_overconfident_does_not():
    logits, labels = calibrated_predictor()
    m = M.compute_metrics(M.log_predictive(logits), labels)
    assert m["ece"] < 0.6 and m["ace"] < 0.6  # sampling noise of 100k images
    over = M.compute_metrics(M.log_predictive(4.0 * logits), labels)
    assert over["ece"] > 10 and over["nll"] > m["nll"]
    assert over["accuracy"] == m["accuracy"]


def test_risk_coverage_against_a_loop_and_known_limits():
    generator = torch.Generator().manual_seed(5)
    confidence = torch.rand(50, generator=generator, dtype=torch.float64)
    correct = (torch.rand(50, generator=generator) < confidence).double()
    order = sorted(range(50), key=lambda i: -confidence[i].item())
    loop = [sum(1 - correct[i].item() for i in order[:k]) / k for k in range(1, 51)]
    assert M.risk_coverage(confidence, correct).tolist() == pytest.approx(loop)

    # A constant predictor ranks nothing: with ties broken at random its risk is the error rate at every coverage.
    constant = torch.full((10,), 0.4, dtype=torch.float64)
    correct = torch.tensor([1.0] * 3 + [0.0] * 7, dtype=torch.float64)
    assert M.risk_coverage(constant, correct).tolist() == pytest.approx([0.7] * 10)
    assert M.aurc(constant, correct) == pytest.approx(0.7)
    # Ties: the expectation over every tie-breaking order, computed by brute force on a small case.
    confidence = torch.tensor([0.9, 0.5, 0.5, 0.5, 0.2], dtype=torch.float64)
    correct = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    brute = np.zeros(5)
    perms = list(itertools.permutations([1, 2, 3]))
    for perm in perms:
        ordered = [0, *perm, 4]
        brute += [sum(1 - correct[i].item() for i in ordered[:k]) / k for k in range(1, 6)]
    assert M.risk_coverage(confidence, correct).tolist() == pytest.approx((brute / len(perms)).tolist())
    # Perfect ranking (all errors least confident): AURC = mean_k max(0, k - (N - e)) / k.
    confidence = torch.linspace(1, 0.1, 10, dtype=torch.float64)
    correct = torch.tensor([1.0] * 6 + [0.0] * 4, dtype=torch.float64)
    assert M.aurc(confidence, correct) == pytest.approx(sum(max(0, k - 6) / k for k in range(1, 11)) / 10)


def test_mutual_information_by_hand():
    p1, p2 = torch.tensor([0.9, 0.1]), torch.tensor([0.1, 0.9])
    logits = torch.stack([p1.log(), p2.log()])[:, None, :]  # (L=2, B=1, C=2)
    log_mean = torch.logsumexp(F.log_softmax(logits, -1), 0) - math.log(2)
    h = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert M.mutual_information(logits, log_mean).item() == pytest.approx(math.log(2) - h, rel=1e-5)
    same = torch.stack([p1.log(), p1.log()])[:, None, :]
    assert M.mutual_information(same, F.log_softmax(p1.log(), -1)[None]).item() == pytest.approx(0, abs=1e-6)


def test_temperature_scaling_fixes_an_overconfident_predictor():
    logits, labels = calibrated_predictor(n=20_000, seed=6)
    temperature = fit_temperature(5.0 * logits, labels)
    assert temperature == pytest.approx(5.0, rel=0.05)
    raw = M.compute_metrics(M.log_predictive(5.0 * logits), labels)
    scaled = M.compute_metrics(M.log_predictive(5.0 * logits / temperature), labels)
    assert scaled["nll"] < raw["nll"] and scaled["ece"] < raw["ece"] / 5
    assert scaled["accuracy"] == raw["accuracy"] and scaled["macro_f1"] == raw["macro_f1"]
    # The bisection finds the minimum of the held-out NLL (checked against a fine grid).
    grid = torch.exp(torch.linspace(math.log(2), math.log(10), 2001, dtype=torch.float64))
    losses = [F.cross_entropy(5.0 * logits / t, labels).item() for t in grid]
    assert temperature == pytest.approx(grid[int(np.argmin(losses))].item(), rel=2e-3)
    # Separable held-out data: the NLL keeps falling as T -> 0; the bound is returned.
    assert fit_temperature(torch.tensor([[3.0, 0.0], [0.0, 3.0]]), torch.tensor([0, 1])) == pytest.approx(1e-3)


# ---------------------------------------------------------------------------------------------------------------
# The report: log lines, JSON, saved predictions


def test_artifact_names_follow_the_log_file(tmp_path):
    assert R.artifact_path(str(tmp_path / "log.txt"), "metrics", ".json") == str(tmp_path / "metrics.json")
    assert R.artifact_path(str(tmp_path / "log.txt-2026-01-02-03-04-05"), "predictions", ".npz") == \
        str(tmp_path / "predictions-2026-01-02-03-04-05.npz")


def _collected(logits, labels, mc=None):
    collector = R.PredictionCollector()
    for start in range(0, len(labels), 64):  # batch by batch, as the trainer adds them
        part = slice(start, start + 64)
        collector.add(logits[part], None if mc is None else mc[:, part])
    return collector.gather(labels)


def test_record_json_block_and_predictions_round_trip(tmp_path, capsys):
    logits, labels = calibrated_predictor(n=300, classes=5, seed=7)
    mc = logits[None] + torch.randn(4, 300, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    scores = torch.logsumexp(F.log_softmax(mc, -1), 0) - math.log(4)
    predictions = _collected(scores, labels, mc)
    held_out = _collected(2.0 * logits, labels)
    temperature = R.Temperature.fit(held_out, "the val split")
    assert temperature.fitted_on == "the val split, 300 images"
    record = R.make_record(predictions, "test", {"trainer": "BayesianPrompt", "epoch": 2}, temperature)
    assert record["metrics"] == M.compute_metrics(M.log_predictive(scores.float()), labels,
                                                  record_mi := predictions.mutual_information)
    assert record_mi.shape == (300,) and record["metrics"]["mutual_information"] > 0
    assert record["mc_samples"] == 4

    recorder = R.EvaluationRecorder(str(tmp_path / "log.txt"))
    paths = [f"img/{i}.jpg" for i in range(300)]
    recorder.report(record, predictions, paths, [f"class{c}" for c in range(5)])
    recorder.report(R.make_record(predictions, "val", {"epoch": 3}, temperature_note="val split"))
    R.EvaluationRecorder(str(tmp_path / "log.txt")).report(R.make_record(predictions, "test", {"epoch": 4}))
    records = R.read_metrics_file(str(tmp_path / "metrics.json"))
    assert [r["split"] for r in records] == ["test", "val", "test"]  # a second writer appends, never drops
    assert records[0]["predictions_file"] == "predictions.npz" and "predictions_file" not in records[1]
    assert records[0]["temperature"]["value"] == pytest.approx(temperature.value)
    assert records[0]["curves"]["reliability"]["count"] and len(records[0]["curves"]["risk_coverage"]["risk"]) == 100

    saved = R.load_predictions(str(tmp_path / "predictions.npz"))
    assert saved["probs"].dtype == np.float16 and saved["probs"].shape == (300, 5)
    assert saved["image_paths"].tolist() == paths and saved["labels"].tolist() == labels.tolist()
    assert saved["predicted"].tolist() == predictions.log_probs.argmax(-1).tolist()
    recomputed = R.Predictions(torch.from_numpy(saved["probs"].astype(np.float64)).log(),
                               torch.from_numpy(saved["labels"])).metrics()
    # The file holds exactly the float16 probabilities (float16 rounding alone can move an image across a bin edge).
    assert recomputed == pytest.approx(R.Predictions(predictions.log_probs.exp().half().double().log(),
                                                     labels).metrics())

    proc = subprocess.run([sys.executable, "-m", "clipbayes.evaluation", str(tmp_path / "predictions.npz")],
                          capture_output=True, text=True, cwd=support.ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    from_file = json.loads(proc.stdout)
    assert from_file["metrics"] == pytest.approx(recomputed)
    assert from_file["temperature"] == pytest.approx(temperature.value)

    printed = capsys.readouterr().out
    assert "=> calibration and selective prediction (test split, 300 images)" in printed
    ece = re.search(r"\* ece: ([\.\deE+-]+)%", printed)  # CoOp's parse_test_res.py rule reads the raw value
    assert float(ece.group(1)) == pytest.approx(record["metrics"]["ece"], abs=0.005)
    assert "(temperature-scaled: " in printed and "fitted on the val split, 300 images" in printed
    assert "* accuracy:" not in printed and "=> result" not in printed
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "metrics.json").st_mode & 0o777 == 0o666 & ~umask  # not a temporary file's 0600
    json.dumps(records)  # plain JSON data


def test_bad_shapes_are_explained():
    with pytest.raises(ValueError, match="expected log_probs"):
        M.compute_metrics(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="expected scores"):
        fit_temperature(torch.zeros(3, 2, 2), torch.zeros(3, dtype=torch.long))


# ---------------------------------------------------------------------------------------------------------------
# Where the temperature comes from (clipbayes.evaluation.reporter)


class _Item:
    def __init__(self, impath):
        self.impath = impath


class _Dataset:
    def __init__(self, train, val, test):
        self.train_x, self.val, self.test = ([_Item(p) for p in paths] for paths in (train, val, test))
        self.classnames = ["a", "b", "c", "d", "e"]


def _cfg(output_dir, scaling=True):
    return CfgNode({"OUTPUT_DIR": str(output_dir), "TRAINER": {"NAME": "CoOp"},
                    "DATASET": {"NAME": "DTD", "SUBSAMPLE_CLASSES": "new"},
                    "TEST": {"TEMPERATURE_SCALING": scaling, "SAVE_PREDICTIONS": False}})


def test_temperature_source_order(tmp_path):
    logits, labels = calibrated_predictor(n=200, classes=5, seed=8)
    asked = []

    def predict(split, items):
        asked.append((split, len(items)))
        return R.Predictions(M.log_predictive(3.0 * logits[:len(items)]), labels[:len(items)])

    test = [f"t{i}" for i in range(50)]
    cases = [
        (_Dataset(["a", "b"], ["v1", "v2", "v3"], test), ("val", 3), "the val split, 3 images"),
        (_Dataset(["a", "b"], test, test), ("train", 2), "the few-shot training set, 2 images"),  # ImageNet
        (_Dataset(test, [], test), None, None),  # an ImageNet variant: nothing held out
    ]
    for dataset, expected_call, fitted_on in cases:
        asked.clear()
        temperature, note = EvaluationReporter(_cfg(tmp_path), dataset, predict).temperature()
        assert asked == ([expected_call] if expected_call else [])
        if fitted_on is None:
            assert temperature is None and "no val split or training set without test images" in note
        else:
            assert temperature.fitted_on == fitted_on and temperature.value > 1  # 3x over-confident
    reporter = EvaluationReporter(_cfg(tmp_path, scaling=False), cases[0][0], predict)
    assert reporter.temperature() == (None, "TEST.TEMPERATURE_SCALING is off")

    # An eval-only run from a model folder takes the temperature its training run recorded, fitting nothing.
    model_dir = tmp_path / "train_base"
    trained = EvaluationReporter(_cfg(model_dir), cases[0][0], predict)
    trained.report("test", predict("test", test), epoch=10)
    (model_dir / "log.txt").write_text("")  # the training run's log, which the metrics JSON is named after
    reporter = EvaluationReporter(_cfg(model_dir), cases[2][0], predict)
    reporter.loaded_from(str(model_dir))  # the run's own best-val checkpoint: fitted anew (here: nothing to fit)
    assert reporter.temperature()[0] is None
    reporter = EvaluationReporter(_cfg(tmp_path / "test_new"), cases[2][0], predict)
    reporter.loaded_from(str(model_dir))
    asked.clear()
    temperature, _ = reporter.temperature()
    assert asked == [] and temperature.value == pytest.approx(trained.recorder.records[-1]["temperature"]["value"])
    assert temperature.fitted_on == f"the val split, 3 images of the training run in {model_dir}"
