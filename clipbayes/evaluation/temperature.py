"""Post-hoc temperature scaling (Guo et al., ICML 2017): p_T = softmax(s / T), T > 0 fitted on held-out data.

With beta = 1 / T, the held-out NLL(beta) = mean_i [logsumexp_c(beta s_ic) - beta s_i,y_i] is convex in beta, and
    dNLL/dbeta = mean_i [E_{c ~ p_beta,i}[s_ic] - s_i,y_i]
is non-decreasing, so the minimiser is found by bisection on the sign of the derivative (in log beta, over
T in [1e-3, 1e3]): no optimiser settings, the same T on every machine. T does not change the argmax, so accuracy
and macro-F1 are unchanged. With more than two classes it can reorder the confidences of different images, so
AURC and accuracy at a coverage may move slightly, besides the calibration metrics.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

LOG_T_RANGE = (-3.0 * math.log(10.0), 3.0 * math.log(10.0))
_ITERATIONS = 60


def _nll_slope(scores: Tensor, labels: Tensor, beta: float) -> float:
    probs = torch.softmax(beta * scores, dim=-1)
    return ((probs * scores).sum(-1) - scores.gather(-1, labels[:, None]).squeeze(-1)).mean().item()


def fit_temperature(scores: Tensor, labels: Tensor) -> float:
    """T minimising the NLL of softmax(scores / T) on (scores (N, C), labels (N,)), clamped to [1e-3, 1e3]
    (the bound is returned when the minimum lies beyond it, e.g. for perfectly separated held-out data)."""
    scores = scores.detach().cpu().double()
    # Same softmax at every beta, and finite (a -inf score would give 0 * inf in the slope).
    scores = (scores - scores.max(-1, keepdim=True).values).clamp_min(-1e4)
    labels = labels.detach().cpu().long()
    if scores.dim() != 2 or labels.shape != scores.shape[:1] or len(labels) == 0:
        raise ValueError(f"expected scores (N, C) and labels (N,) with N > 0; got {tuple(scores.shape)} and "
                         f"{tuple(labels.shape)}")
    # log beta = -log T; the slope in beta is non-decreasing, so bisect on its sign.
    low, high = -LOG_T_RANGE[1], -LOG_T_RANGE[0]
    if _nll_slope(scores, labels, math.exp(high)) <= 0:
        return math.exp(-high)
    if _nll_slope(scores, labels, math.exp(low)) >= 0:
        return math.exp(-low)
    for _ in range(_ITERATIONS):
        middle = 0.5 * (low + high)
        if _nll_slope(scores, labels, math.exp(middle)) > 0:
            high = middle
        else:
            low = middle
    return math.exp(-0.5 * (low + high))


def scale(scores: Tensor, temperature: float) -> Tensor:
    """Scores whose softmax is the temperature-scaled predictive: s / T."""
    return scores / temperature
