"""Post-hoc temperature scaling (Guo et al., ICML 2017): p_T = softmax(s / T), T > 0 fitted on held-out data.

With beta = 1 / T, the held-out NLL(beta) = mean_i [logsumexp_c(beta s_ic) - beta s_i,y_i] is convex in beta:
    dNLL/dbeta   = mean_i [E_{c ~ p_beta,i}[s_ic] - s_i,y_i]
    d2NLL/dbeta2 = mean_i Var_{c ~ p_beta,i}[s_ic] >= 0,
so the minimiser is the root of the first derivative, found by Newton steps kept inside a bracket that shrinks
with the sign of the derivative (a step leaving it is replaced by a geometric bisection), over T in [1e-3, 1e3]:
no optimiser settings, a handful of passes over the data. T does not change the argmax, so accuracy
and macro-F1 are unchanged. With more than two classes it can reorder the confidences of different images, so
AURC and accuracy at a coverage may move slightly, besides the calibration metrics.
"""
from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import Tensor

LOG_T_RANGE = (-3.0 * math.log(10.0), 3.0 * math.log(10.0))
_ITERATIONS = 100
_TOLERANCE = 1e-7  # relative change of beta at which the search stops


def _derivatives(scores: Tensor, labels: Tensor, beta: float) -> Tuple[float, float]:
    """(dNLL/dbeta, d2NLL/dbeta2) at beta; per-image terms in the scores' dtype, means in float64."""
    probs = torch.softmax(beta * scores, dim=-1)
    mean = (probs * scores).sum(-1)
    variance = (probs * (scores - mean[:, None]).square()).sum(-1)
    slope = mean - scores.gather(-1, labels[:, None]).squeeze(-1)
    return slope.double().mean().item(), variance.double().mean().item()


def fit_temperature(scores: Tensor, labels: Tensor) -> float:
    """T minimising the NLL of softmax(scores / T) on (scores (N, C), labels (N,)), clamped to [1e-3, 1e3]
    (the bound is returned when the minimum lies beyond it, e.g. for perfectly separated held-out data)."""
    scores = scores.detach().cpu()
    scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
    labels = labels.detach().cpu().long()
    if scores.dim() != 2 or labels.shape != scores.shape[:1] or len(labels) == 0:
        raise ValueError(f"expected scores (N, C) and labels (N,) with N > 0; got {tuple(scores.shape)} and "
                         f"{tuple(labels.shape)}")
    # Same softmax at every beta, and finite (a -inf score would give 0 * inf in the derivatives).
    scores = (scores - scores.max(-1, keepdim=True).values).clamp_min(-1e4)
    low, high = math.exp(-LOG_T_RANGE[1]), math.exp(-LOG_T_RANGE[0])  # the bracket of beta
    if _derivatives(scores, labels, high)[0] <= 0:
        return 1.0 / high
    if _derivatives(scores, labels, low)[0] >= 0:
        return 1.0 / low
    beta = 1.0
    for _ in range(_ITERATIONS):
        slope, curvature = _derivatives(scores, labels, beta)
        if slope > 0:
            high = beta
        else:
            low = beta
        step = beta - slope / curvature if curvature > 0 else math.nan
        new = step if low < step < high else math.sqrt(low * high)
        if abs(new - beta) <= _TOLERANCE * beta:
            return 1.0 / new
        beta = new
    return 1.0 / beta


def scale(scores: Tensor, temperature: float) -> Tensor:
    """Scores whose softmax is the temperature-scaled predictive: s / T."""
    return scores / temperature
