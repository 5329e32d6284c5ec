"""Classification, calibration and selective-prediction metrics, as pure functions of tensors.

Inputs, for N test images and C classes:
    log_probs  (N, C)  log of the predictive distribution p (``log_softmax`` of a method's scores)
    labels     (N,)    integer labels y
    conf_i = max_c p_ic,  pred_i = argmax_c p_ic,  correct_i = [pred_i == y_i]

Definitions (percentages are x 100; ``docs/results.md`` states them with the conventions):
    accuracy   mean_i correct_i
    macro_f1   mean over the classes present in y of F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)   (Dassl's evaluator)
    nll        -mean_i log p_i,y_i                                                           (nats)
    brier      mean_i sum_c (p_ic - [c == y_i])^2                                            (in [0, 2])
    ece        sum_b |B_b| / N |acc(B_b) - conf(B_b)|, 15 equal-width bins [k/15, (k+1)/15) of conf (top label)
    ace        the same over 15 equal-mass bins (sorted by conf, sizes differing by at most one)
    mce        max over non-empty equal-width bins of |acc(B_b) - conf(B_b)|
    risk(k)    error rate among the k most confident images; ties in conf are broken uniformly at random, in
               expectation (so a constant predictor has risk(k) = its error rate for every k)
    aurc       mean_{k=1..N} risk(k)                  (area under the risk-coverage curve)
    acc@c      1 - risk(ceil(c N)),  c in {0.5, 0.8, 0.9}
    entropy    mean_i H(p_i),  H(p) = -sum_c p_c log p_c                                     (nats)
    mutual_information  mean_i [H(mean_l p_li) - mean_l H(p_li)] over L Monte Carlo samples  (nats, epistemic)
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

N_BINS = 15
COVERAGES = (0.5, 0.8, 0.9)
CURVE_POINTS = 100  # points of the stored risk-coverage curve

__all__ = ["N_BINS", "COVERAGES", "log_predictive", "mutual_information", "entropy", "accuracy", "macro_f1", "nll",
           "brier", "reliability_bins", "equal_mass_bins", "binned_errors", "merge_bins", "calibration_errors",
           "risk_coverage", "aurc", "accuracy_at_coverage", "compute_metrics", "compute_curves", "METRIC_UNITS"]

# name -> unit of the value stored in the metrics dict ("%" values are x 100).
METRIC_UNITS = {
    "accuracy": "%", "macro_f1": "%", "nll": "nats", "brier": "", "ece": "%", "ace": "%", "mce": "%",
    "aurc": "%", **{f"acc@{int(c * 100)}": "%" for c in COVERAGES}, "entropy": "nats",
    "mutual_information": "nats",
}


def log_predictive(scores: Tensor) -> Tensor:
    """Log-probabilities (N, C) of the predictive distribution of scores (N, C): log_softmax, in float32+."""
    return F.log_softmax(scores.to(torch.promote_types(scores.dtype, torch.float32)), dim=-1)


def entropy(log_probs: Tensor) -> Tensor:
    """H(p) = -sum_c p_c log p_c over the last dim (0 log 0 = 0: a -inf log-probability counts as the dtype's min)."""
    return -(log_probs.exp() * log_probs.clamp_min(torch.finfo(log_probs.dtype).min)).sum(-1)


def mutual_information(logits: Tensor, log_probs: Tensor) -> Tensor:
    """MI_b = H(p_b) - mean_l H(p_lb) >= 0 (B,), for Monte Carlo logits (L, B, C) and the log of their averaged
    softmax p (B, C): the part of the predictive entropy that comes from disagreement between the samples."""
    return (entropy(log_probs) - entropy(log_predictive(logits)).mean(0)).clamp_min(0.0)


def accuracy(log_probs: Tensor, labels: Tensor) -> float:
    return 100.0 * (log_probs.argmax(-1) == labels).double().mean().item()


def macro_f1(log_probs: Tensor, labels: Tensor) -> float:
    """Macro F1 over the classes present in ``labels`` (sklearn's f1_score(average="macro",
    labels=unique(y_true)), as Dassl's Classification evaluator; a class never predicted has F1 = 0)."""
    pred = log_probs.argmax(-1)
    classes = torch.unique(labels)
    size = int(max(log_probs.shape[-1], labels.max().item() + 1))
    tp = torch.bincount(labels[pred == labels], minlength=size).double()
    n_true = torch.bincount(labels, minlength=size).double()
    n_pred = torch.bincount(pred, minlength=size).double()
    denominator = n_true + n_pred  # 2 TP + FP + FN
    f1 = torch.where(denominator > 0, 2 * tp / denominator.clamp_min(1), torch.zeros_like(tp))
    return 100.0 * f1[classes].mean().item()


def nll(log_probs: Tensor, labels: Tensor) -> float:
    return -log_probs.gather(-1, labels[:, None]).double().mean().item()


def brier(log_probs: Tensor, labels: Tensor) -> float:
    """mean_i sum_c (p_ic - [c == y_i])^2 = mean_i (sum_c p_ic^2 - 2 p_i,y_i + 1), without a one-hot matrix."""
    probs = log_probs.exp()
    per_image = probs.square().sum(-1) - 2 * probs.gather(-1, labels[:, None]).squeeze(-1) + 1
    return per_image.double().mean().item()


def _confidence_correct(log_probs: Tensor, labels: Tensor) -> Tuple[Tensor, Tensor]:
    log_conf, pred = log_probs.max(-1)
    return log_conf.exp().double(), (pred == labels).double()


def _ranking(log_probs: Tensor, labels: Tensor) -> Tuple[Tensor, Tensor]:
    """(-log(1 - conf), correct): the same order as conf, computed from the other classes' log-probabilities so
    that confidences which round to 1.0 still keep their order."""
    pred = log_probs.argmax(-1)
    others = log_probs.scatter(-1, pred[:, None], -math.inf)
    return -torch.logsumexp(others, dim=-1).double(), (pred == labels).double()


def reliability_bins(confidence: Tensor, correct: Tensor, n_bins: int = N_BINS) -> Dict[str, list]:
    """Equal-width bins [k/n, (k+1)/n) of confidence (the last one closed): count, mean confidence, accuracy per
    bin (mean confidence and accuracy are 0 for an empty bin)."""
    index = (confidence * n_bins).floor().long().clamp(0, n_bins - 1)
    count = torch.bincount(index, minlength=n_bins).double()
    conf_sum = torch.bincount(index, weights=confidence, minlength=n_bins)
    correct_sum = torch.bincount(index, weights=correct, minlength=n_bins)
    safe = count.clamp_min(1)
    return {"count": count.long().tolist(), "confidence": (conf_sum / safe).tolist(),
            "accuracy": (correct_sum / safe).tolist()}


def equal_mass_bins(confidence: Tensor, correct: Tensor, n_bins: int = N_BINS) -> Dict[str, list]:
    """Bins of (almost) equal size over the images sorted by confidence (sizes differ by at most one)."""
    order = torch.argsort(confidence, stable=True)
    groups = [g for g in torch.tensor_split(order, min(n_bins, len(order))) if len(g)]
    return {"count": [len(g) for g in groups], "confidence": [confidence[g].mean().item() for g in groups],
            "accuracy": [correct[g].mean().item() for g in groups]}


def binned_errors(bins: Dict[str, list]) -> Tuple[float, float]:
    """(count-weighted mean, max over non-empty bins) of |accuracy - confidence|: (ECE, MCE) as fractions."""
    count = torch.tensor(bins["count"], dtype=torch.float64)
    gap = (torch.tensor(bins["accuracy"], dtype=torch.float64) -
           torch.tensor(bins["confidence"], dtype=torch.float64)).abs()
    return (gap * count).sum().item() / count.sum().item(), gap[count > 0].max().item()


def merge_bins(bins: Sequence[Dict[str, list]]) -> Dict[str, list]:
    """The equal-width bins of several evaluations pooled: counts add, mean confidence and accuracy are
    count-weighted, so the result is the bins of all their images together."""
    n_bins = len(bins[0]["count"])
    count = [sum(b["count"][k] for b in bins) for k in range(n_bins)]
    merged = {"count": count}
    for field in ("confidence", "accuracy"):
        merged[field] = [sum(b["count"][k] * b[field][k] for b in bins) / count[k] if count[k] else 0.0
                         for k in range(n_bins)]
    return merged


def calibration_errors(log_probs: Tensor, labels: Tensor, n_bins: int = N_BINS) -> Dict[str, float]:
    """ECE and MCE (equal-width bins) and adaptive ECE (equal-mass bins) of the top label, in %."""
    confidence, correct = _confidence_correct(log_probs, labels)
    ece, mce = binned_errors(reliability_bins(confidence, correct, n_bins))
    ace, _ = binned_errors(equal_mass_bins(confidence, correct, n_bins))
    return {"ece": 100.0 * ece, "ace": 100.0 * ace, "mce": 100.0 * mce}


def risk_coverage(confidence: Tensor, correct: Tensor) -> Tensor:
    """risk(k) for k = 1..N (N,): expected error rate among the k most confident images, ties in confidence
    broken uniformly at random (within a tie group the errors are spread evenly). Only the order of
    ``confidence`` matters (any increasing function of it gives the same risks)."""
    n = len(confidence)
    order = torch.argsort(confidence, descending=True, stable=True)
    conf, errors = confidence[order], 1.0 - correct[order].double()
    _, group_sizes = torch.unique_consecutive(conf, return_counts=True)
    group_end = torch.cumsum(group_sizes, 0)
    group_start = group_end - group_sizes
    cum_errors = torch.cat([errors.new_zeros(1), torch.cumsum(errors, 0)])
    group_rate = (cum_errors[group_end] - cum_errors[group_start]) / group_sizes
    k = torch.arange(1, n + 1, dtype=torch.float64)
    group_of = torch.repeat_interleave(torch.arange(len(group_sizes)), group_sizes)
    expected = cum_errors[group_start[group_of]] + (k - group_start[group_of]) * group_rate[group_of]
    return expected / k


def aurc(confidence: Tensor, correct: Tensor) -> float:
    return risk_coverage(confidence, correct).mean().item()


def accuracy_at_coverage(risk: Tensor, coverage: float) -> float:
    """1 - risk at the smallest k with k / N >= coverage."""
    k = max(1, math.ceil(coverage * len(risk) - 1e-9))
    return 1.0 - risk[k - 1].item()


def _work(log_probs: Tensor) -> Tensor:
    """On the CPU, in float32 (or the input's wider dtype): per-image terms in it, means over images in float64."""
    log_probs = log_probs.detach().cpu()
    return log_probs.to(torch.promote_types(log_probs.dtype, torch.float32))


def compute_metrics(log_probs: Tensor, labels: Tensor, mi: Optional[Tensor] = None) -> Dict[str, float]:
    """Every scalar metric of the module docstring, keyed as in METRIC_UNITS (mutual information only when the
    per-image values mi (N,) are given)."""
    log_probs, labels = _work(log_probs), labels.detach().cpu().long()
    if log_probs.dim() != 2 or labels.shape != log_probs.shape[:1] or len(labels) == 0:
        raise ValueError(f"expected log_probs (N, C) and labels (N,) with N > 0; got {tuple(log_probs.shape)} "
                         f"and {tuple(labels.shape)}")
    risk = risk_coverage(*_ranking(log_probs, labels))
    metrics = {"accuracy": accuracy(log_probs, labels), "macro_f1": macro_f1(log_probs, labels),
               "nll": nll(log_probs, labels), "brier": brier(log_probs, labels),
               **calibration_errors(log_probs, labels), "aurc": 100.0 * risk.mean().item()}
    for c in COVERAGES:
        metrics[f"acc@{int(c * 100)}"] = 100.0 * accuracy_at_coverage(risk, c)
    metrics["entropy"] = entropy(log_probs).mean().item()
    if mi is not None:
        metrics["mutual_information"] = mi.detach().cpu().double().mean().item()
    return metrics


def compute_curves(log_probs: Tensor, labels: Tensor, points: int = CURVE_POINTS) -> Dict[str, dict]:
    """What the plots need, small enough for a JSON file: the equal-width reliability bins and the risk-coverage
    curve at coverages 1/points, 2/points, ..., 1."""
    log_probs, labels = _work(log_probs), labels.detach().cpu().long()
    confidence, correct = _confidence_correct(log_probs, labels)
    risk = risk_coverage(*_ranking(log_probs, labels))
    coverage = [(j + 1) / points for j in range(points)]
    return {"reliability": reliability_bins(confidence, correct),
            "risk_coverage": {"coverage": coverage,
                              "risk": [1.0 - accuracy_at_coverage(risk, c) for c in coverage]}}
