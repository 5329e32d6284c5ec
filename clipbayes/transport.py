"""Transport distances between an image's patch features and a prompt's token features, batched.

Every function works on whole batches of sets at once: U = {u_i}_{i=1..N} the N unit-norm patch features of an
image, G = {g_k}_{k=1..K} the K unit-norm token features of one class prompt, uniform weights on both sets, cost

    c_ik = 1 - u_i . g_k                                                        (in [0, 2])

Conditional transport (CT; Zheng & Zhou, NeurIPS 2021), navigators at temperature tau:

    pi(k | i) = softmax_k(a_ik / tau)            pi(i | k) = softmax_i(a_ik / tau)
    CT(U, G) = (1/N) sum_i sum_k pi(k | i) c_ik  +  (1/K) sum_k sum_i pi(i | k) c_ik
             =      forward (patch -> token)     +       backward (token -> patch)

with the navigator's affinity a (``NAVIGATORS``):

    nearest    a_ik = -c_ik            the most similar pairs weigh most (a soft nearest neighbour)
    farthest   a_ik = -u_i . g_k       the LEAST similar pairs weigh most: ALIGN's released ``ct_dis``
                                       (wds2014/ALIGN trainers/mmp.py), = c_ik - 1, the same softmax as +c_ik / tau

tau is a number or a learned tensor, tau = exp(phi) (:class:`NavigatorTemperature`; ALIGN learns phi).

Token sets of different sizes (a class name's tokens in the set) come padded to K with a mask (C, K): masked
tokens get no navigator weight, no mass and do not count in 1/K.

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
import torch.nn as nn
from torch import Tensor
from torch.utils.checkpoint import checkpoint

TRANSPORTS = ("ct", "sinkhorn")
NAVIGATORS = ("nearest", "farthest")


def cosine_cost(patches: Tensor, tokens: Tensor) -> Tensor:
    """c = 1 - cosine of unit-norm features: patches (B, N, E), tokens (L, C, K, E) -> cost (B, L, C, N, K)."""
    similarity = torch.einsum("bne,lcke->blcnk", patches, tokens)
    return 1.0 - similarity.float()


def _mask_over_tokens(token_mask: Tensor | None, cost: Tensor) -> Tensor | None:
    """A (C, K) token mask broadcast against cost (..., C, N, K) as (C, 1, K); None stays None."""
    return None if token_mask is None else token_mask.to(cost.device).unsqueeze(-2)


def navigator_logits(cost: Tensor, temperature: float | Tensor, navigator: str = "nearest") -> Tensor:
    """a / tau of ``navigator`` (module docstring) for cost (..., N, K)."""
    if navigator == "nearest":
        return -cost / temperature
    if navigator == "farthest":
        return (cost - 1.0) / temperature
    raise ValueError(f"unknown CT navigator '{navigator}'; expected one of {NAVIGATORS}")


def conditional_transport(cost: Tensor, temperature: float | Tensor, navigator: str = "nearest",
                          token_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Forward and backward CT of each set pair: cost (..., N, K) -> ((...), (...)).

    forward = mean_i sum_k pi(k | i) c_ik;  backward = mean_k sum_i pi(i | k) c_ik, the means and the forward
    softmax over the tokens of ``token_mask`` (C, K) when given (cost (..., C, N, K)).
    """
    if not torch.is_tensor(temperature) and temperature <= 0:
        raise ValueError(f"the CT navigator temperature must be > 0, got {temperature}")
    logits = navigator_logits(cost, temperature, navigator)
    mask = _mask_over_tokens(token_mask, cost)
    forward_logits = logits if mask is None else logits.masked_fill(~mask, float("-inf"))
    forward = (forward_logits.softmax(dim=-1) * cost).sum(dim=-1).mean(dim=-1)
    backward_per_token = (logits.softmax(dim=-2) * cost).sum(dim=-2)
    if mask is None:
        return forward, backward_per_token.mean(dim=-1)
    valid = mask.squeeze(-2).to(cost.dtype)
    return forward, (backward_per_token * valid).sum(dim=-1) / valid.sum(dim=-1)


def ct_distance(cost: Tensor, temperature: float | Tensor, navigator: str = "nearest",
                token_mask: Tensor | None = None) -> Tensor:
    """Bidirectional CT of each set pair: cost (..., N, K) -> (...)."""
    forward, backward = conditional_transport(cost, temperature, navigator, token_mask)
    return forward + backward


@torch.no_grad()
def sinkhorn_plan(cost: Tensor, epsilon: float, n_iters: int, token_mask: Tensor | None = None) -> Tensor:
    """Entropic OT plan with uniform marginals for each set pair: cost (..., N, K) -> T (..., N, K), sum T = 1.

    Log-domain iterations on the potentials f (..., N), g (..., K), starting from g = 0:
        f = eps log a - eps logsumexp_k((g_k - c_ik) / eps),   g = eps log b - eps logsumexp_i((f_i - c_ik) / eps)
        T = exp((f_i + g_k - c_ik) / eps)
    (the Sinkhorn-Knopp scalings u = e^{f/eps}, v = e^{g/eps} without their under/overflow). With ``token_mask``
    (C, K) (cost (..., C, N, K)) b is 1 / K_c on the tokens of class c and 0 (log b = -inf) on its padding.
    """
    if epsilon <= 0 or n_iters < 1:
        raise ValueError(f"Sinkhorn needs epsilon > 0 and at least one iteration, got {epsilon} and {n_iters}")
    cost = cost.float()
    n, k = cost.shape[-2:]
    log_a = -math.log(n)
    if token_mask is None:
        log_b = torch.full_like(cost[..., 0, :], -math.log(k))
    else:
        mask = token_mask.to(cost.device)
        log_b = torch.where(mask, -mask.sum(dim=-1, keepdim=True).float().log(), float("-inf")).expand_as(
            cost[..., 0, :])
    scaled = -cost / epsilon
    g = torch.where(torch.isinf(log_b), log_b, torch.zeros_like(log_b))
    for _ in range(n_iters):
        f = log_a - torch.logsumexp(scaled + g.unsqueeze(-2), dim=-1)
        g = log_b - torch.logsumexp(scaled + f.unsqueeze(-1), dim=-2)
    return torch.exp(scaled + f.unsqueeze(-1) + g.unsqueeze(-2))


def sinkhorn_distance(cost: Tensor, epsilon: float, n_iters: int, token_mask: Tensor | None = None) -> Tensor:
    """<T*, c> of each set pair, T* from ``sinkhorn_plan`` (no gradient through it): (..., N, K) -> (...)."""
    return (sinkhorn_plan(cost.detach(), epsilon, n_iters, token_mask) * cost).sum(dim=(-2, -1))


class NavigatorTemperature(nn.Module):
    """tau = exp(phi) of the CT navigators, phi = log(``initial``): learned (``learned``, as ALIGN's phi) or fixed."""

    def __init__(self, initial: float, learned: bool):
        super().__init__()
        if initial <= 0:
            raise ValueError(f"the CT navigator temperature must be > 0, got {initial}")
        log_temperature = torch.tensor(math.log(initial))
        if learned:
            self.log_temperature = nn.Parameter(log_temperature)
        else:
            self.register_buffer("log_temperature", log_temperature, persistent=False)

    def forward(self) -> Tensor:
        return self.log_temperature.float().exp()


def transport_distance(kind: str, temperature: float | NavigatorTemperature = 0.1, epsilon: float = 0.1,
                       n_iters: int = 100, navigator: str = "nearest") -> Callable[..., Tensor]:
    """The set distance ``(cost (..., N, K), token_mask (C, K) or None) -> (...)`` named by ``kind`` (one of
    TRANSPORTS); ``temperature`` a number or a :class:`NavigatorTemperature` read at every call."""
    if kind == "ct":
        if navigator not in NAVIGATORS:
            raise ValueError(f"unknown CT navigator '{navigator}'; expected one of {NAVIGATORS}")
        tau = temperature if callable(temperature) else (lambda: temperature)
        return lambda cost, token_mask=None: ct_distance(cost, tau(), navigator, token_mask)
    if kind == "sinkhorn":
        return lambda cost, token_mask=None: sinkhorn_distance(cost, epsilon, n_iters, token_mask)
    raise ValueError(f"unknown transport '{kind}'; expected one of {TRANSPORTS}")


def _weighted_chunk(distance, patches: Tensor, tokens: Tensor, weights: Tensor, token_mask: Tensor | None) -> Tensor:
    """sum over (b, l, c) of w[l, b, c] * distance(U_b, G_{l,c}) for one chunk of classes."""
    distances = distance(cosine_cost(patches, tokens), token_mask)  # (B, L, c)
    return torch.einsum("blc,lbc->", distances, weights.float())


def weighted_transport(patches: Tensor, tokens: Tensor, weights: Tensor, distance: Callable[..., Tensor],
                       class_chunk: int = 0, token_mask: Tensor | None = None) -> Tensor:
    """(1 / (B L)) sum_{b, l, c} w[l, b, c] * distance(U_b, G_{l,c}), a scalar.

    patches (B, N, E) and tokens (L, C, K, E) unit-norm; weights (L, B, C), e.g. the predicted class probabilities
    of each sample; ``token_mask`` (C, K) bool: the tokens in each class's set (None: all K); ``class_chunk``
    classes per chunk (0: all at once). With a gradient and more than one chunk, each chunk is recomputed in the
    backward pass instead of storing its (B, L, chunk, N, K) intermediates.
    """
    n_samples, n_classes = tokens.shape[:2]
    if weights.shape != (n_samples, patches.shape[0], n_classes):
        raise ValueError(f"weights must be (L, B, C) = {(n_samples, patches.shape[0], n_classes)}, "
                         f"got {tuple(weights.shape)}")
    if token_mask is not None and token_mask.shape != tokens.shape[1:3]:
        raise ValueError(f"token_mask must be (C, K) = {tuple(tokens.shape[1:3])}, got {tuple(token_mask.shape)}")
    size = class_chunk if 0 < class_chunk < n_classes else n_classes
    recompute = size < n_classes and torch.is_grad_enabled()
    masks = [None] * n_classes if token_mask is None else token_mask.split(size, dim=0)
    total = patches.new_zeros((), dtype=torch.float32)
    # split (not slicing): the backward pass concatenates the chunks' gradients once instead of writing each into
    # a full-size zero tensor
    for token_chunk, weight_chunk, mask_chunk in zip(tokens.split(size, dim=1), weights.split(size, dim=-1), masks):
        if recompute:
            total = total + checkpoint(_weighted_chunk, distance, patches, token_chunk, weight_chunk, mask_chunk,
                                       use_reentrant=False)
        else:
            total = total + _weighted_chunk(distance, patches, token_chunk, weight_chunk, mask_chunk)
    return total / (patches.shape[0] * n_samples)
