"""Transport distances between an image's patch features and a prompt's token features, batched.

Every function works on whole batches of sets at once: U = {u_i}_{i=1..N} the N unit-norm patch features of an
image, G = {g_k}_{k=1..K} the K unit-norm token features of one class prompt, uniform weights on both sets, cost

    c_ik = 1 - u_i . g_k                                                        (in [0, 2])

Conditional transport (CT; Zheng & Zhou, NeurIPS 2021), navigators at temperature tau:

    pi(k | i) = softmax_k(-c_ik / tau)           pi(i | k) = softmax_i(-c_ik / tau)
    CT(U, G) = (1/N) sum_i sum_k pi(k | i) c_ik  +  (1/K) sum_k sum_i pi(i | k) c_ik
             =      forward (patch -> token)     +       backward (token -> patch)

Entropic optimal transport (Cuturi, 2013), marginals a = 1/N, b = 1/K:

    T* = argmin_{T 1 = a, T^T 1 = b}  <T, c> - eps H(T)          OT_eps(U, G) = <T*, c>

T* comes from a fixed number of log-domain Sinkhorn iterations and is a constant in the backward pass, so the
gradient of OT_eps is T* (the envelope theorem, as PLOT and ALIGN do).

The method's regulariser (``weighted_transport``) sums, for every image b, sample l and class c, a weight w[l, b, c]
times the distance between U_b and G_{l,c}: (B, L, C) distances from one einsum of the (B, N) x (L, C, K) cosines,
computed over chunks of classes; each chunk's graph is recomputed in the backward pass (activation checkpointing),
so the memory of the term is that of one chunk whatever C is.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

TRANSPORTS = ("ct", "sinkhorn")


def cosine_cost(patches: Tensor, tokens: Tensor) -> Tensor:
    """c = 1 - cosine of unit-norm features: patches (B, N, E), tokens (L, C, K, E) -> cost (B, L, C, N, K)."""
    similarity = torch.einsum("bne,lcke->blcnk", patches, tokens)
    return 1.0 - similarity.float()


def conditional_transport(cost: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """Forward and backward CT of each set pair: cost (..., N, K) -> ((...), (...)).

    forward = mean_i sum_k softmax_k(-c / tau)[i, k] c_ik;  backward = mean_k sum_i softmax_i(-c / tau)[i, k] c_ik.
    """
    if temperature <= 0:
        raise ValueError(f"the CT navigator temperature must be > 0, got {temperature}")
    logits = -cost / temperature
    forward = (logits.softmax(dim=-1) * cost).sum(dim=-1).mean(dim=-1)
    backward = (logits.softmax(dim=-2) * cost).sum(dim=-2).mean(dim=-1)
    return forward, backward


def ct_distance(cost: Tensor, temperature: float) -> Tensor:
    """Bidirectional CT of each set pair: cost (..., N, K) -> (...)."""
    forward, backward = conditional_transport(cost, temperature)
    return forward + backward


@torch.no_grad()
def sinkhorn_plan(cost: Tensor, epsilon: float, n_iters: int) -> Tensor:
    """Entropic OT plan with uniform marginals for each set pair: cost (..., N, K) -> T (..., N, K), sum T = 1.

    Log-domain iterations on the potentials f (..., N), g (..., K), starting from g = 0:
        f = eps log a - eps logsumexp_k((g_k - c_ik) / eps),   g = eps log b - eps logsumexp_i((f_i - c_ik) / eps)
        T = exp((f_i + g_k - c_ik) / eps)
    (the Sinkhorn-Knopp scalings u = e^{f/eps}, v = e^{g/eps} without their under/overflow).
    """
    if epsilon <= 0 or n_iters < 1:
        raise ValueError(f"Sinkhorn needs epsilon > 0 and at least one iteration, got {epsilon} and {n_iters}")
    cost = cost.float()
    n, k = cost.shape[-2:]
    log_a, log_b = -math.log(n), -math.log(k)
    scaled = -cost / epsilon
    g = torch.zeros_like(cost[..., 0, :])
    for _ in range(n_iters):
        f = log_a - torch.logsumexp(scaled + g.unsqueeze(-2), dim=-1)
        g = log_b - torch.logsumexp(scaled + f.unsqueeze(-1), dim=-2)
    return torch.exp(scaled + f.unsqueeze(-1) + g.unsqueeze(-2))


def sinkhorn_distance(cost: Tensor, epsilon: float, n_iters: int) -> Tensor:
    """<T*, c> of each set pair, T* from ``sinkhorn_plan`` (no gradient through it): (..., N, K) -> (...)."""
    return (sinkhorn_plan(cost.detach(), epsilon, n_iters) * cost).sum(dim=(-2, -1))


def transport_distance(kind: str, temperature: float = 0.1, epsilon: float = 0.1,
                       n_iters: int = 100) -> Callable[[Tensor], Tensor]:
    """The set distance ``cost (..., N, K) -> (...)`` named by ``kind`` (one of TRANSPORTS)."""
    if kind == "ct":
        return lambda cost: ct_distance(cost, temperature)
    if kind == "sinkhorn":
        return lambda cost: sinkhorn_distance(cost, epsilon, n_iters)
    raise ValueError(f"unknown transport '{kind}'; expected one of {TRANSPORTS}")


def _weighted_chunk(distance, patches: Tensor, tokens: Tensor, weights: Tensor) -> Tensor:
    """sum over (b, l, c) of w[l, b, c] * distance(U_b, G_{l,c}) for one chunk of classes."""
    distances = distance(cosine_cost(patches, tokens))  # (B, L, c)
    return torch.einsum("blc,lbc->", distances, weights.float())


def weighted_transport(patches: Tensor, tokens: Tensor, weights: Tensor, distance: Callable[[Tensor], Tensor],
                       class_chunk: int = 0) -> Tensor:
    """(1 / (B L)) sum_{b, l, c} w[l, b, c] * distance(U_b, G_{l,c}), a scalar.

    patches (B, N, E) and tokens (L, C, K, E) unit-norm; weights (L, B, C), e.g. the predicted class probabilities
    of each sample; ``class_chunk`` classes per chunk (0: all at once). With a gradient and more than one chunk,
    each chunk is recomputed in the backward pass instead of storing its (B, L, chunk, N, K) intermediates.
    """
    n_samples, n_classes = tokens.shape[:2]
    if weights.shape != (n_samples, patches.shape[0], n_classes):
        raise ValueError(f"weights must be (L, B, C) = {(n_samples, patches.shape[0], n_classes)}, "
                         f"got {tuple(weights.shape)}")
    size = class_chunk if 0 < class_chunk < n_classes else n_classes
    recompute = size < n_classes and torch.is_grad_enabled()
    total = patches.new_zeros((), dtype=torch.float32)
    # split (not slicing): the backward pass concatenates the chunks' gradients once instead of writing each into
    # a full-size zero tensor
    for token_chunk, weight_chunk in zip(tokens.split(size, dim=1), weights.split(size, dim=-1)):
        if recompute:
            total = total + checkpoint(_weighted_chunk, distance, patches, token_chunk, weight_chunk,
                                       use_reentrant=False)
        else:
            total = total + _weighted_chunk(distance, patches, token_chunk, weight_chunk)
    return total / (patches.shape[0] * n_samples)
