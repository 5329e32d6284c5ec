"""Distances between two representations, the rows of (n, E) matrices: ReBaPL's repulsion choices.

With z, z' the current and the anchor representation (rows i = 1..n):

    mse           (1/n) sum_i |z_i - z'_i|^2                                    (row-aligned)
    wasserstein   sum_ij pi_ij |z_i - z'_j|^2,  pi the exact optimal plan between uniform weights (held fixed in the
                  gradient, as a solution of the linear programme)
    mmd           mean k(z, z) + mean k(z', z') - 2 mean k(z, z'),  k(a, b) = exp(-|a - b|^2 / 2)   (bandwidth 1)
    procrustes    SciPy's disparity (scipy.spatial.procrustes): centre both, scale each to unit Frobenius norm, rotate
                  and scale z' onto z by R = U V^T, U S V^T = z'^T z, and s = sum(S) (held fixed in the gradient); the
                  sum of squared differences. The official code, which says it mirrors SciPy, takes the SVD of
                  z^T z': its R is the transpose of the optimal rotation, so its distance is not rotation invariant;
                  we compute SciPy's

The repulsion potential is xi / (d + POTENTIAL_EPS) (clipbayes/trainers/rebapl.py).
"""
from __future__ import annotations

import ot
import torch

REPULSION_DISTANCES = ("mse", "wasserstein", "mmd", "procrustes")
POTENTIAL_EPS = 1e-6


def mse_distance(current: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    return (current - anchor).pow(2).sum(dim=1).mean()


def wasserstein_distance(current: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    cost = torch.cdist(current, anchor).pow(2)
    uniform_a = torch.full((current.shape[0],), 1.0 / current.shape[0], dtype=cost.dtype, device=cost.device)
    uniform_b = torch.full((anchor.shape[0],), 1.0 / anchor.shape[0], dtype=cost.dtype, device=cost.device)
    with torch.no_grad():
        plan = ot.emd(uniform_a, uniform_b, cost.detach())
    return (plan * cost).sum()


def mmd_distance(current: torch.Tensor, anchor: torch.Tensor, bandwidth: float = 1.0) -> torch.Tensor:
    def kernel(a, b):
        return torch.exp(-torch.cdist(a, b).pow(2) / (2 * bandwidth ** 2))
    return kernel(current, current).mean() + kernel(anchor, anchor).mean() - 2 * kernel(current, anchor).mean()


def procrustes_distance(current: torch.Tensor, anchor: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    def standardised(z):
        centred = z - z.mean(dim=0, keepdim=True)
        return centred / torch.linalg.norm(centred).clamp_min(eps)
    reference, moved = standardised(current), standardised(anchor)
    with torch.no_grad():
        u, s, vh = torch.linalg.svd(moved.t() @ reference, full_matrices=False)
    aligned = moved @ (u @ vh) * s.sum()
    return (reference - aligned).pow(2).sum()


_DISTANCES = {"mse": mse_distance, "wasserstein": wasserstein_distance, "mmd": mmd_distance,
              "procrustes": procrustes_distance}


def representation_distance(name: str, current: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """d(z, z') of two (n, E) representations, in float32 (the formulas above)."""
    if name not in _DISTANCES:
        raise ValueError(f"unknown repulsion distance {name!r}; choose one of {', '.join(REPULSION_DISTANCES)}")
    if current.shape != anchor.shape:
        raise ValueError(f"representations of different shapes: {tuple(current.shape)} vs {tuple(anchor.shape)}")
    return _DISTANCES[name](current.float(), anchor.float())

