"""Class-wise Mixup of unit-norm image features: two features of the SAME class, never of two classes.

    z~ = normalise(lambda z_a + (1 - lambda) z_b),   y(z_a) = y(z_b) = y(z~),   lambda ~ Beta(a, a)

Pairs come from the batch (``same_class_partners``: every row whose class has another row in the batch gets one
partner drawn uniformly among them; rows without one are skipped) or from a bank of the training set's features
(``ClassFeatureBank``: two distinct bank images of the asked class, drawn uniformly). No image is encoded: the
mixed rows cost O(n E).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from clipbayes.config import ConfigError


def beta_lambdas(n: int, alpha: float, device=None, dtype=torch.float32) -> Tensor:
    """(n,) draws of lambda ~ Beta(alpha, alpha) from the global RNG (no argument validation: it would read the
    concentration back to the host on every call)."""
    concentration = torch.tensor(float(alpha), device=device, dtype=dtype)
    return torch.distributions.Beta(concentration, concentration, validate_args=False).sample((n,))


def mix_features(first: Tensor, second: Tensor, lam: Tensor) -> Tensor:
    """normalise(lam z_a + (1 - lam) z_b) row-wise: first, second (n, E), lam (n,) -> (n, E)."""
    lam = lam.to(first.dtype).unsqueeze(-1)
    return F.normalize(lam * first + (1 - lam) * second, dim=-1)


def same_class_partners(labels: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Rows of the batch that have a same-class partner, and one partner each.

    labels (B,) -> (rows (n,), partners (n,)) long, rows increasing, labels[partners] == labels[rows],
    partners != rows; each partner drawn uniformly among the other rows of the class. O(B^2) comparisons.
    """
    labels = labels.view(-1)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    same.fill_diagonal_(False)
    device = labels.device if generator is None else generator.device
    noise = torch.rand(same.shape, generator=generator, device=device).to(labels.device)
    noise = noise.masked_fill(~same, -1.0)  # argmax: uniform among the other rows of the class
    rows = same.any(dim=1).nonzero().view(-1)
    return rows, noise.argmax(dim=1)[rows]


class ClassFeatureBank(nn.Module):
    """Image features of the training set grouped by class; ``pairs(labels)`` draws two distinct images per row.

    features (N, E), labels (N,) in [0, num_classes). Every class needs at least two images (ConfigError
    otherwise: no pair of distinct images of it exists). The features are stored sorted by class, in
    non-persistent buffers (not checkpointed).
    """

    def __init__(self, features: Tensor, labels: Tensor, num_classes: int):
        super().__init__()
        labels = labels.view(-1).long()
        if features.dim() != 2 or features.shape[0] != labels.numel():
            raise ValueError(f"the feature bank needs features (N, E) and labels (N,); got {tuple(features.shape)} "
                             f"and {tuple(labels.shape)}")
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"bank labels must lie in [0, {num_classes}); got [{int(labels.min())}, "
                             f"{int(labels.max())}]")
        counts = torch.bincount(labels, minlength=num_classes)
        short = (counts < 2).nonzero().view(-1).tolist()
        if short:
            listed = ", ".join(f"{c} ({int(counts[c])} image{'s' if counts[c] != 1 else ''})" for c in short[:10])
            raise ConfigError(
                f"class-wise Mixup from the feature bank needs at least 2 training images per class; classes "
                f"{listed}{' ...' if len(short) > 10 else ''} have fewer ({len(short)} of {num_classes}). Use more "
                f"shots (DATASET.NUM_SHOTS >= 2) or MIXUP 'batch' or 'none'.")
        order = torch.argsort(labels, stable=True)
        self.register_buffer("features", features[order].detach().clone(), persistent=False)
        self.register_buffer("counts", counts, persistent=False)
        self.register_buffer("starts", torch.cumsum(counts, 0) - counts, persistent=False)

    def __len__(self) -> int:
        return self.features.shape[0]

    def pairs(self, labels: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Two distinct bank features of class labels[i] for every i: labels (n,) -> (first, second), each (n, E).

        With n_y images of class y: a ~ U{0..n_y-1}, b = (a + 1 + U{0..n_y-2}) mod n_y, so b != a and the pair
        (a, b) is uniform over the ordered pairs of distinct images of y.
        """
        labels = labels.view(-1).long().to(self.counts.device)
        n = self.counts[labels]
        device = labels.device if generator is None else generator.device
        u = torch.rand(2, labels.numel(), generator=generator, device=device, dtype=torch.float64).to(labels.device)
        first = (u[0] * n).long().clamp_max(n - 1)
        second = (first + 1 + (u[1] * (n - 1)).long().clamp_max(n - 2)) % n
        start = self.starts[labels]
        return self.features[start + first], self.features[start + second]
