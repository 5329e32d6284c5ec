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


# --- the navigators and variable-size token sets (PBPrompt's TRANSPORT_TOKENS with_name) ---------------------------
def slow_ct_navigated(patches, tokens, tau, navigator):
    """CT of one patch set (N, E) and one token set (K, E) with navigator weights written per pair: ``nearest``
    exp(-c / tau), ``farthest`` exp(-(u . g) / tau) (ALIGN's ct_dis: softmax(-sim / exp(phi)))."""
    n, k = len(patches), len(tokens)
    sim = [[float(patches[i] @ tokens[j]) for j in range(k)] for i in range(n)]
    weight = [[math.exp(-(1 - sim[i][j]) / tau) if navigator == "nearest" else math.exp(-sim[i][j] / tau)
               for j in range(k)] for i in range(n)]
    forward = sum(sum(weight[i][j] * (1 - sim[i][j]) for j in range(k)) / sum(weight[i]) for i in range(n)) / n
    backward = sum(sum(weight[i][j] * (1 - sim[i][j]) for i in range(n)) / sum(weight[i][j] for i in range(n))
                   for j in range(k)) / k
    return forward, backward


@pytest.mark.parametrize("navigator", ["nearest", "farthest"])
@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_each_navigator_equals_a_slow_loop(navigator, tau):
    patches, tokens = unit(2, 5, 8, seed=11), unit(2, 3, 4, 8, seed=12)
    forward, backward = conditional_transport(cosine_cost(patches, tokens).double(), tau, navigator)
    for b in range(2):
        for l in range(2):
            for c in range(3):
                f, bw = slow_ct_navigated(patches[b], tokens[l, c], tau, navigator)
                assert forward[b, l, c].item() == pytest.approx(f, rel=1e-6)
                assert backward[b, l, c].item() == pytest.approx(bw, rel=1e-6)


def test_the_navigators_weigh_opposite_ends_of_the_cost():
    """nearest -> the smallest cost of each row as tau -> 0, farthest -> the largest (ALIGN's sign)."""
    patches, tokens = unit(1, 6, 8, seed=13), unit(1, 1, 4, 8, seed=14)
    cost = cosine_cost(patches, tokens).double()
    near, _ = conditional_transport(cost, 1e-4, "nearest")
    far, _ = conditional_transport(cost, 1e-4, "farthest")
    assert near.item() == pytest.approx(cost.amin(-1).mean().item(), rel=1e-6)
    assert far.item() == pytest.approx(cost.amax(-1).mean().item(), rel=1e-6)
    with pytest.raises(ValueError, match="navigator"):
        conditional_transport(cost, 0.1, "closest")


@pytest.mark.parametrize("navigator", ["nearest", "farthest"])
def test_a_learned_temperature_gives_the_fixed_value_and_a_gradient(navigator):
    from clipbayes.transport import NavigatorTemperature
    patches, tokens = unit(2, 5, 8, seed=15, dtype=torch.float32), unit(1, 3, 4, 8, seed=16, dtype=torch.float32)
    weights = torch.rand(1, 2, 3, generator=torch.Generator().manual_seed(0))
    learned, fixed = NavigatorTemperature(0.2, learned=True), NavigatorTemperature(0.2, learned=False)
    assert [name for name, _ in learned.named_parameters()] == ["log_temperature"]
    assert list(fixed.parameters()) == [] and fixed.state_dict() == {}  # old checkpoints load unchanged
    values = [weighted_transport(patches, tokens, weights, transport_distance("ct", t, navigator=navigator))
              for t in (learned, fixed, 0.2)]
    assert values[0].item() == pytest.approx(values[2].item(), rel=1e-6) == pytest.approx(values[1].item(), rel=1e-6)
    grad, = torch.autograd.grad(values[0], learned.log_temperature)
    assert grad.abs() > 0


def test_masked_token_sets_equal_each_class_set_on_its_own():
    """Token sets padded to K with a mask give, for every transport, the distance of each class's own smaller set."""
    patches, tokens = unit(2, 6, 8, seed=17), unit(2, 3, 5, 8, seed=18)
    sizes = [5, 2, 3]
    mask = torch.arange(5).expand(3, -1) < torch.tensor(sizes).unsqueeze(1)
    padded = tokens.clone()
    padded[:, ~mask] = unit(int((~mask).sum()), 8, seed=19)  # padding content must not matter
    cost = cosine_cost(patches, padded)
    for distance in (transport_distance("ct", 0.1), transport_distance("ct", 0.3, navigator="farthest"),
                     transport_distance("sinkhorn", epsilon=0.1, n_iters=300)):
        masked = distance(cost, mask)
        for c, size in enumerate(sizes):
            alone = distance(cosine_cost(patches, tokens[:, c:c + 1, :size]))[..., 0]
            torch.testing.assert_close(masked[..., c], alone, rtol=1e-5, atol=1e-7)


def test_masked_sinkhorn_plan_puts_no_mass_on_padding():
    cost = cosine_cost(unit(1, 4, 8, seed=20), unit(1, 2, 3, 8, seed=21))
    mask = torch.tensor([[True, True, False], [True, True, True]])
    plan = sinkhorn_plan(cost, 0.1, 200, mask)
    assert plan[..., 0, :, 2].abs().max() == 0
    torch.testing.assert_close(plan.sum(dim=(-2, -1)), torch.ones(1, 1, 2))
    torch.testing.assert_close(plan[..., 0, :, :2].sum(-2), torch.full((1, 1, 2), 0.5), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chunk", [0, 1, 2])
def test_weighted_transport_with_a_mask_chunks_the_mask_with_the_classes(chunk):
    patches, tokens = unit(2, 5, 8, seed=22, dtype=torch.float32), unit(2, 3, 4, 8, seed=23, dtype=torch.float32)
    mask = torch.arange(4).expand(3, -1) < torch.tensor([[4], [1], [2]])
    weights = torch.rand(2, 2, 3, generator=torch.Generator().manual_seed(1))
    distance = transport_distance("ct", 0.2)
    expected = sum(weights[l, b, c] * distance(cosine_cost(patches[b:b + 1], tokens[l:l + 1, c:c + 1,
                                                                                     :int(mask[c].sum())]))
                   for b in range(2) for l in range(2) for c in range(3)).squeeze() / 4
    value = weighted_transport(patches, tokens, weights, distance, class_chunk=chunk, token_mask=mask)
    torch.testing.assert_close(value, expected)
    with pytest.raises(ValueError, match="token_mask"):
        weighted_transport(patches, tokens, weights, distance, token_mask=mask[:2])
