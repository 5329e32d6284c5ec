"""Training objectives of the Bayesian prompt learners, as pure functions of tensors.

Nothing here knows about CLIP: every function takes logits, labels or Gaussian parameters and returns
tensors, so each formula can be tested on its own and composed by the trainers.

Notation used throughout
    L  Monte Carlo samples of the prompt residual (BayesianPrompt)
    B  batch size
    C  number of classes
    D  dimension of the prompt residual (text width)
    M  Gibbs samples of the Polya-Gamma augmented OVE likelihood (LogitPrior)

BayesianPrompt (``docs/methods/bayesian_prompt_notes.md``)
    loss = -(1/B) sum_b log((1/L) sum_l softmax(logits_l)[b, y_b]) + beta * KL(q || N(0, I))

LogitPrior (``docs/methods/logit_prior_notes.md``), with f the fine-tuned and z the zero-shot logits
    m_h   = f_y - f_h,  c_h = z_y - z_h             for every class h != y
    omega = E[PG(1, c_h)]                            (or the official variant, see ``polya_gamma_mean``)
    psi_h = (alpha m_h + 1/2) / (alpha + omega_h) + eps_h / sqrt(alpha + omega_h),   eps_h ~ N(0, 1)
    loss  = (1/M) sum_m mean_b(-sum_h log sigmoid(psi_h)) + lambda_1 * mean((z - f)^2)

DualViewPrompt (``docs/methods/dual_view.md``), with t_c, h_c the soft and hand-crafted views of class c
    S[c, c'] = t_c . h_c' / tau    (or t_c^T W h_c' / tau, a learnable bilinear critic)
    L_MI     = (1/2C) sum_c (-log softmax(S[c, :])[c] - log softmax(S[:, c])[c]),   I(t; h) >= log C - L_MI
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from clipbayes.modeling.contract import LossOutput

__all__ = [
    "log_mean_exp",
    "mc_log_mean_exp_probs",
    "mc_nll",
    "gaussian_samples",
    "gaussian_kl_to_standard_normal",
    "predictive_scores",
    "loggable",
    "likelihood_loss",
    "polya_gamma_mean",
    "ove_other_classes",
    "ove_pg_loss",
    "OMEGA_FORMULAS",
    "critic_scores",
    "symmetric_infonce",
]

OMEGA_FORMULAS = ("official", "exact")

# Constants of the official Polya-Gamma mean (BP_CLIP, trainers/*_ove_pg.py, ``polya_gamma_mean``).
_OFFICIAL_C_MIN = 1e-8
_OFFICIAL_C_MAX = 20.0
_OFFICIAL_EPS = 1e-8
_OFFICIAL_TANH_MAX = 10.0

# Below this |c| the exact PG mean uses its Taylor series instead of tanh(c/2) / (2c).
_EXACT_SERIES_BELOW = 1e-2


def _work_dtype(t: Tensor) -> torch.dtype:
    """float32 for half/bfloat16 inputs, otherwise the input's own floating dtype."""
    return torch.promote_types(t.dtype, torch.float32)


# --------------------------------------------------------------------------------------------------
# BayesianPrompt
# --------------------------------------------------------------------------------------------------
def log_mean_exp(x: Tensor, dim: int = 0) -> Tensor:
    """log((1/n) sum_i exp(x_i)) along ``dim`` (n = x.shape[dim]), via logsumexp - log n."""
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])


def mc_log_mean_exp_probs(logits: Tensor) -> Tensor:
    """Log of the Monte Carlo predictive distribution.

    logits: (L, B, C), one set of logits per sample l.  Returns (B, C):
        log((1/L) sum_l softmax(logits_l))  =  logsumexp_l(log_softmax(logits_l)) - log L,
    which stays finite for arbitrarily large logits (no exp of a logit is ever formed).
    """
    if logits.dim() != 3:
        raise ValueError(f"expected logits of shape (L, B, C), got {tuple(logits.shape)}")
    log_p = F.log_softmax(logits.to(_work_dtype(logits)), dim=-1)
    return log_mean_exp(log_p, dim=0)


def mc_nll(logits: Tensor, labels: Tensor) -> Tensor:
    """BayesianPrompt data term (scalar).

    logits: (L, B, C); labels: (B,) int.  Returns
        -(1/B) sum_b log((1/L) sum_l softmax(logits_l)[b, y_b]).
    With L = 1 this is the ordinary cross-entropy.
    """
    log_probs = mc_log_mean_exp_probs(logits)
    return -log_probs.gather(-1, labels.long().view(-1, 1)).mean()


def gaussian_samples(mu: Tensor, log_var: Tensor, n_samples: int, noise: Optional[Tensor] = None) -> Tensor:
    """Reparameterised draws r_l = mu + eps_l * exp(l / 2): mu, log_var (S, D) -> r (S, L, D).

    ``noise`` is eps (S, L, D); by default standard normal draws on mu's device. The standard deviation is
    computed in at least float32 (an fp16 exp overflows above log_var = 22) and r is returned in mu's dtype.
    """
    if noise is None:
        noise = torch.randn(mu.shape[0], n_samples, mu.shape[-1], device=mu.device, dtype=mu.dtype)
    std = torch.exp(0.5 * log_var.to(_work_dtype(log_var)))
    return (mu.unsqueeze(1) + noise.to(std) * std.unsqueeze(1)).to(mu.dtype)


def gaussian_kl_to_standard_normal(mu: Tensor, log_var: Tensor) -> Tensor:
    """KL(N(mu, diag(exp(log_var))) || N(0, I)), reduced to a scalar.

    mu, log_var: (..., D) (same shape).  Per dimension
        KL_d = 0.5 * (exp(l_d) + mu_d^2 - 1 - l_d),
    averaged over D (the official reduction), then averaged over every leading (batch) dimension, e.g. the
    B images of the conditional variant. Computed in at least float32 (exp(l) overflows fp16 above l = 11).
    """
    if mu.shape != log_var.shape:
        raise ValueError(f"mu {tuple(mu.shape)} and log_var {tuple(log_var.shape)} differ in shape")
    mu, log_var = mu.to(_work_dtype(mu)), log_var.to(_work_dtype(log_var))
    kl = 0.5 * (torch.exp(log_var) + mu.pow(2) - 1.0 - log_var)
    return kl.mean(dim=-1).mean()


# --------------------------------------------------------------------------------------------------
# The likelihood every method shares
# --------------------------------------------------------------------------------------------------
def predictive_scores(logits: Tensor) -> Tensor:
    """(B, C) scores whose softmax is the predictive distribution: (B, C) logits as they are, or for (L, B, C)
    samples the log of the MC-averaged softmax, log((1/L) sum_l softmax(logits_l))."""
    return logits if logits.dim() == 2 else mc_log_mean_exp_probs(logits)


def loggable(parts: Dict[str, Tensor]) -> Dict[str, float]:
    """Scalar tensors -> plain floats for the training log (detached: no autograd state is read)."""
    return {name: float(value.detach()) if torch.is_tensor(value) else float(value) for name, value in parts.items()}


def likelihood_loss(logits: Tensor, labels: Tensor, regularisers: Dict[str, Tensor]) -> LossOutput:
    """loss = -log p(y | x) + sum of the (already weighted) regularisers, p the softmax of (B, C) logits or the MC
    average of the softmaxes of (L, B, C) logits (``mc_nll``), in at least float32. Parts logged: ``nll`` and each
    regulariser."""
    logits = logits.to(_work_dtype(logits))
    nll = F.cross_entropy(logits, labels) if logits.dim() == 2 else mc_nll(logits, labels)
    parts = loggable({"nll": nll, **regularisers}) if regularisers else {}
    return LossOutput(nll + sum(regularisers.values()), predictive_scores(logits), parts)


# --------------------------------------------------------------------------------------------------
# LogitPrior: Polya-Gamma augmented one-vs-each likelihood
# --------------------------------------------------------------------------------------------------
def polya_gamma_mean(c: Tensor, formula: str = "official") -> Tensor:
    """Polya-Gamma "mean" omega(c), element-wise, same shape as ``c`` (at least float32).

    formula="exact":    E[PG(1, c)] = tanh(c/2) / (2c); even in c, equal to 1/4 at c = 0.  For |c| < 1e-2 the
                        series 1/4 - c^2/48 + c^4/480 is used, so there is no 0/0.
    formula="official": the value BP_CLIP computes (b = 1):
                            c' = clamp(c, 1e-8, 20),   omega = tanh(min(c'/2, 10)) / (c' + 1e-8).
                        For 1e-6 < c < 20 this is about 2 x the exact mean.  Every c <= 1e-8 (all negative
                        differences) gives tanh(5e-9) / 2e-8 = 1/4, while small positive c gives ~1/2, and
                        every c >= 20 gives tanh(10) / 20 ~ 0.05.
    """
    c = c.to(_work_dtype(c))
    if formula == "official":
        c_clamped = torch.clamp(c, min=_OFFICIAL_C_MIN, max=_OFFICIAL_C_MAX)
        half = torch.clamp(0.5 * c_clamped, max=_OFFICIAL_TANH_MAX)
        return torch.tanh(half) / (c_clamped + _OFFICIAL_EPS)
    if formula == "exact":
        a = c.abs()
        small = a < _EXACT_SERIES_BELOW
        a_safe = torch.where(small, torch.ones_like(a), a)
        direct = torch.tanh(0.5 * a_safe) / (2.0 * a_safe)
        c2 = c * c
        series = 0.25 - c2 / 48.0 + c2 * c2 / 480.0
        return torch.where(small, series, direct)
    raise ValueError(f"unknown omega formula {formula!r}; expected one of {OMEGA_FORMULAS}")


def ove_other_classes(labels: Tensor, num_classes: int) -> Tensor:
    """Indices of the classes other than the label, in increasing order.

    labels: (B,) int.  Returns (B, C-1) long with row b = [h for h in range(C) if h != y_b], built without a
    loop: entry k is k + (k >= y_b).  This fixes the order of the OVE pairs (y_b, h) everywhere (and of the
    noise passed to ``ove_pg_loss``).
    """
    k = torch.arange(num_classes - 1, device=labels.device)
    return k.unsqueeze(0) + (k.unsqueeze(0) >= labels.long().view(-1, 1)).long()


def ove_pg_loss(
    finetuned_logits: Tensor,
    zeroshot_logits: Tensor,
    labels: Tensor,
    alpha: float = 1.0,
    lambda_1: float = 0.2,
    omega_formula: str = "official",
    num_samples: Optional[int] = None,
    noise: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> Tuple[Tensor, Dict[str, Tensor]]:
    """LogitPrior objective: PG-augmented one-vs-each likelihood plus a Gaussian logit prior at zero-shot CLIP.

    Shapes
        finetuned_logits f: (B, C) for CoOp/CoCoOp bases, or (L, B, C) for a BayesianPrompt base (L samples).
        zeroshot_logits  z: (B, C); detached here, so it never receives a gradient.
        labels           y: (B,) int.
        noise: standard-normal eps of shape (M, B, C-1), or (M, L, B, C-1) for 3-D logits; the leading M may be
            omitted (then M = 1).  noise[m, (l,) b, k] is used for the pair (y_b, h) where h is the k-th class
            other than y_b in increasing order (``ove_other_classes``).  Drawn with ``generator`` when None.
        num_samples: M when ``noise`` is None (default 1); must agree with noise when both are given.

    Per sample b (and MC sample l), with h running over the C-1 classes != y_b
        m_h    = f_y - f_h                    (gradient flows here only)
        c_h    = z_y - z_h,  omega_h = polya_gamma_mean(c_h, omega_formula)
        psi_h  = (alpha m_h + 1/2) / (alpha + omega_h) + eps_h / sqrt(alpha + omega_h)     (kappa = 1/2)
        loglik = sum_h log sigmoid(psi_h)
    For (L, B, C) logits the L likelihoods are averaged in probability space:
        loglik_b = log((1/L) sum_l exp(loglik_{l,b})).
    Then
        nll  = (1/M) sum_m (1/B) sum_b -loglik_b
        reg  = mean over all elements of (z - f)^2     (over L, B and C for 3-D logits)
        loss = nll + lambda_1 * reg                    (reg omitted when lambda_1 == 0)
    Work is O(M x L x B x C) element-wise: only the true-class row of the OVE matrix is formed.

    Returns (loss, {"nll": nll, "reg": reg}) with the parts detached and reg unweighted.
    """
    if omega_formula not in OMEGA_FORMULAS:
        raise ValueError(f"unknown omega formula {omega_formula!r}; expected one of {OMEGA_FORMULAS}")
    if finetuned_logits.dim() not in (2, 3):
        raise ValueError(f"finetuned_logits must be (B, C) or (L, B, C), got {tuple(finetuned_logits.shape)}")
    dtype = _work_dtype(finetuned_logits)
    f = finetuned_logits.to(dtype)
    z = zeroshot_logits.detach().to(dtype)
    B, C = f.shape[-2], f.shape[-1]
    if z.shape != (B, C):
        raise ValueError(f"zeroshot_logits must be {(B, C)}, got {tuple(z.shape)}")
    if C < 2:
        raise ValueError("the one-vs-each likelihood needs at least two classes")
    labels = labels.long().to(f.device).view(-1)
    if labels.numel() != B:
        raise ValueError(f"expected {B} labels, got {labels.numel()}")

    # true-class row of the OVE matrix: differences y - h for the C-1 classes h != y
    others = ove_other_classes(labels, C)  # (B, C-1)
    y_col = labels.view(B, 1)
    lead = f.shape[:-2]  # () or (L,)
    idx_others = others.expand(*lead, B, C - 1)
    idx_y = y_col.expand(*lead, B, 1)
    m = f.gather(-1, idx_y) - f.gather(-1, idx_others)  # ([L,] B, C-1)
    with torch.no_grad():
        c = z.gather(-1, y_col) - z.gather(-1, others)  # (B, C-1)
        precision = alpha + polya_gamma_mean(c, omega_formula).to(dtype)  # alpha + omega
    mean = (alpha * m + 0.5) / precision

    pair_shape = tuple(m.shape)
    if noise is None:
        M = 1 if num_samples is None else int(num_samples)
        if M < 1:
            raise ValueError("num_samples must be >= 1")
        noise = torch.randn((M,) + pair_shape, generator=generator, device=f.device, dtype=dtype)
    else:
        noise = noise.to(device=f.device, dtype=dtype)
        if noise.dim() == len(pair_shape):
            noise = noise.unsqueeze(0)
        if tuple(noise.shape[1:]) != pair_shape:
            raise ValueError(f"noise must be (M,) + {pair_shape}, got {tuple(noise.shape)}")
        if num_samples is not None and int(num_samples) != noise.shape[0]:
            raise ValueError(f"num_samples={num_samples} but noise holds {noise.shape[0]} samples")

    psi = mean.unsqueeze(0) + noise * torch.rsqrt(precision)  # (M, [L,] B, C-1)
    loglik = F.logsigmoid(psi).sum(dim=-1)  # (M, [L,] B)
    if f.dim() == 3:
        loglik = log_mean_exp(loglik, dim=1)  # average the L likelihoods: (M, B)
    nll = -loglik.mean()  # mean over batch, then over the M Gibbs samples

    reg = (z - f).pow(2).mean()
    loss = nll + lambda_1 * reg if lambda_1 != 0 else nll
    return loss, {"nll": nll.detach(), "reg": reg.detach()}


# --------------------------------------------------------------------------------------------------
# DualViewPrompt: InfoNCE lower bound on the mutual information of two views
# --------------------------------------------------------------------------------------------------
def critic_scores(first: Tensor, second: Tensor, temperature: float, weight: Optional[Tensor] = None) -> Tensor:
    """Critic scores S (C, C) of paired views first (C, E), second (C, E) (row c of each is a positive pair):

        S[c, c'] = first_c . second_c' / tau,   or   first_c^T W second_c' / tau  with ``weight`` W (E, E).

    O(C^2 E) (+ O(C E^2) for W), in at least float32.
    """
    dtype = torch.promote_types(_work_dtype(first), _work_dtype(second))
    first, second = first.to(dtype), second.to(dtype)
    if weight is not None:
        second = second @ weight.to(dtype).t()  # rows W h_c'
    return first @ second.t() / temperature


def symmetric_infonce(scores: Tensor) -> Tensor:
    """Symmetric InfoNCE loss of critic scores (C, C) whose diagonal holds the positive pairs (scalar):

        L = (1/2C) sum_c (-log softmax(S[c, :])[c] - log softmax(S[:, c])[c]).

    Each direction is the InfoNCE bound I >= log C - L_direction, so I >= log C - L. Zero only in the limit of
    a dominant diagonal; log C when all scores are equal.
    """
    if scores.dim() != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"expected square critic scores (C, C), got {tuple(scores.shape)}")
    target = torch.arange(scores.shape[0], device=scores.device)
    return 0.5 * (F.cross_entropy(scores, target) + F.cross_entropy(scores.t(), target))
