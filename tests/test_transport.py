"""The transport distances of clipbayes.transport against slow loop re-statements, POT, limits and invariances."""
from __future__ import annotations

import math

import ot
import pytest
import torch
import torch.nn.functional as F

from clipbayes.transport import (conditional_transport, cosine_cost, sinkhorn_distance, sinkhorn_plan,
                                 transport_distance, weighted_transport)


def unit(*shape, seed=0, dtype=torch.float64):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype), dim=-1)


def slow_ct(patches, tokens, tau):
    """CT of one patch set (N, E) and one token set (K, E), written per patch and per token."""
    n, k = len(patches), len(tokens)
    cost = [[1 - float(patches[i] @ tokens[j]) for j in range(k)] for i in range(n)]
    forward = 0.0
    for i in range(n):
        norm = sum(math.exp(-cost[i][j] / tau) for j in range(k))
        forward += sum(math.exp(-cost[i][j] / tau) / norm * cost[i][j] for j in range(k)) / n
    backward = 0.0
    for j in range(k):
        norm = sum(math.exp(-cost[i][j] / tau) for i in range(n))
        backward += sum(math.exp(-cost[i][j] / tau) / norm * cost[i][j] for i in range(n)) / k
    return forward, backward


def test_cosine_cost_layout():
    patches, tokens = unit(2, 5, 8, seed=1), unit(3, 4, 2, 8, seed=2)
    cost = cosine_cost(patches, tokens)
    assert cost.shape == (2, 3, 4, 5, 2)
    b, l, c, i, k = 1, 2, 3, 4, 1
    assert torch.isclose(cost[b, l, c, i, k], 1 - (patches[b, i] @ tokens[l, c, k]).float())


@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_ct_both_directions_equal_slow_loops(tau):
    patches, tokens = unit(2, 6, 8, seed=3), unit(3, 4, 3, 8, seed=4)
    forward, backward = conditional_transport(cosine_cost(patches, tokens).double(), tau)
    assert forward.shape == backward.shape == (2, 3, 4)
    for b in range(2):
        for l in range(3):
            for c in range(4):
                f, bw = slow_ct(patches[b], tokens[l, c], tau)
                assert forward[b, l, c].item() == pytest.approx(f, rel=1e-6)
                assert backward[b, l, c].item() == pytest.approx(bw, rel=1e-6)


def test_ct_is_zero_for_identical_sets_as_temperature_vanishes():
    points = unit(5, 8, seed=5)
    cost = cosine_cost(points[None], points[None, None])[0, 0, 0]
    values = [sum(conditional_transport(cost.double(), tau)).item() for tau in (1.0, 0.1, 0.01, 0.001)]
    assert values[0] > values[1] > values[2] >= 0
    assert values[-1] < 1e-12


def test_ct_and_sinkhorn_are_invariant_to_permutations_of_patches_and_tokens():
    patches, tokens = unit(2, 7, 8, seed=6), unit(2, 3, 4, 8, seed=7)
    patch_order, token_order = torch.randperm(7), torch.randperm(4)
    for kind in ("ct", "sinkhorn"):
        distance = transport_distance(kind, temperature=0.1, epsilon=0.1, n_iters=200)
        base = distance(cosine_cost(patches, tokens))
        permuted = distance(cosine_cost(patches[:, patch_order], tokens[:, :, token_order]))
        torch.testing.assert_close(base, permuted)


def test_sinkhorn_plan_matches_pot():
    patches, tokens = unit(2, 6, 8, seed=8), unit(1, 3, 4, 8, seed=9)
    cost = cosine_cost(patches, tokens).double()
    plans = sinkhorn_plan(cost, epsilon=0.05, n_iters=2000)
    assert plans.dtype == torch.float32 and plans.shape == (2, 1, 3, 6, 4)
    for b in range(2):
        for c in range(3):
            m = cost[b, 0, c].numpy()
            reference = ot.sinkhorn(ot.unif(6), ot.unif(4), m, reg=0.05, numItermax=20000, stopThr=1e-12)
            torch.testing.assert_close(plans[b, 0, c].double(), torch.from_numpy(reference), atol=1e-6, rtol=1e-4)
            assert sinkhorn_distance(cost[b, 0, c], 0.05, 2000).item() == pytest.approx(
                float((reference * m).sum()), rel=1e-4)


def test_sinkhorn_closed_cases():
    # one token: the only plan with uniform marginals sends 1/N from every patch to it
    cost = torch.rand(4, 5, 1, generator=torch.Generator().manual_seed(10))
    torch.testing.assert_close(sinkhorn_plan(cost, 0.1, 3), torch.full_like(cost, 1 / 5))
    # identical sets, small epsilon: the identity coupling, distance 0
    points = unit(4, 8, seed=11)
    cost = 1 - points @ points.T
    plan = sinkhorn_plan(cost, 0.005, 500)
    torch.testing.assert_close(plan, torch.eye(4, dtype=torch.float32) / 4, atol=1e-5, rtol=0)
    assert sinkhorn_distance(cost, 0.005, 500).item() < 1e-5


def test_sinkhorn_gradient_is_the_plan():
    cost = torch.rand(3, 5, 4, generator=torch.Generator().manual_seed(12), requires_grad=True)
    sinkhorn_distance(cost, 0.1, 100).sum().backward()
    torch.testing.assert_close(cost.grad, sinkhorn_plan(cost.detach(), 0.1, 100))


def slow_weighted(patches, tokens, weights, tau):
    total = 0.0
    n_samples, n_classes = tokens.shape[:2]
    for b in range(patches.shape[0]):
        for l in range(n_samples):
            for c in range(n_classes):
                total += float(weights[l, b, c]) * sum(slow_ct(patches[b], tokens[l, c], tau))
    return total / (patches.shape[0] * n_samples)


@pytest.mark.parametrize("chunk", [0, 2, 3])
def test_weighted_transport_equals_slow_sum_and_chunking_changes_nothing(chunk):
    patches, tokens = unit(3, 5, 8, seed=13), unit(2, 7, 4, 8, seed=14).requires_grad_(True)
    weights = torch.rand(2, 3, 7, generator=torch.Generator().manual_seed(15), dtype=torch.float64)
    distance = transport_distance("ct", temperature=0.2)
    value = weighted_transport(patches, tokens, weights, distance, class_chunk=chunk)
    assert value.item() == pytest.approx(slow_weighted(patches, tokens.detach(), weights, 0.2), rel=1e-6)
    grad, = torch.autograd.grad(value, tokens)
    unchunked, = torch.autograd.grad(weighted_transport(patches, tokens, weights, distance), tokens)
    torch.testing.assert_close(grad, unchunked)


def test_weighted_transport_checks_weights():
    with pytest.raises(ValueError, match=r"weights must be \(L, B, C\)"):
        weighted_transport(unit(2, 3, 4), unit(1, 5, 2, 4), torch.ones(2, 1, 5), transport_distance("ct"))
    with pytest.raises(ValueError, match="unknown transport"):
        transport_distance("emd")
