"""DualViewPrompt: the InfoNCE bound against a slow per-pair re-statement, the critic's gradient, class-wise Mixup
(labels, classes, the Beta draws), the hand-crafted views encoded once, the reduction to CoOp, configs and scripts.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from clipbayes.modeling.mixup import ClassFeatureBank, beta_lambdas, mix_features, same_class_partners
from clipbayes.objectives import critic_scores, symmetric_infonce


def views(n_classes=6, dim=8, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    soft = F.normalize(torch.randn(n_classes, dim, generator=generator, dtype=dtype), dim=-1)
    handcrafted = F.normalize(torch.randn(n_classes, dim, generator=generator, dtype=dtype), dim=-1)
    weight = torch.eye(dim, dtype=dtype) + 0.3 * torch.randn(dim, dim, generator=generator, dtype=dtype)
    return soft, handcrafted, weight


def slow_infonce(soft, handcrafted, temperature, weight=None):
    """(1/2C) sum_c [-log p(h_c | t_c) - log p(t_c | h_c)], every critic value computed pair by pair."""
    n = soft.shape[0]

    def critic(a, b):
        return (a @ (b if weight is None else weight @ b)) / temperature

    total = 0.0
    for c in range(n):
        row = torch.stack([critic(soft[c], handcrafted[k]) for k in range(n)])
        column = torch.stack([critic(soft[k], handcrafted[c]) for k in range(n)])
        total = total - (row[c] - torch.logsumexp(row, 0)) - (column[c] - torch.logsumexp(column, 0))
    return total / (2 * n)


# --- the MI bound ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bilinear", [False, True])
def test_infonce_equals_slow_per_pair_restatement(bilinear):
    soft, handcrafted, weight = views()
    weight = weight if bilinear else None
    ours = symmetric_infonce(critic_scores(soft, handcrafted, 0.1, weight))
    torch.testing.assert_close(ours, slow_infonce(soft, handcrafted, 0.1, weight))


@pytest.mark.parametrize("temperature", [0.07, 0.5, 2.0])
def test_infonce_at_perfectly_aligned_views(temperature):
    n_classes, dim = 5, 8
    orthonormal = torch.linalg.qr(torch.randn(dim, n_classes, dtype=torch.float64,
                                              generator=torch.Generator().manual_seed(1)))[0].t()
    loss = symmetric_infonce(critic_scores(orthonormal, orthonormal, temperature))
    # S = I / tau: each row is -log(e^{1/tau} / (e^{1/tau} + C - 1)) in both directions
    expected = math.log1p((n_classes - 1) * math.exp(-1 / temperature))
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float64))
    assert 0 < math.log(n_classes) - loss.item() <= math.log(n_classes)  # the bound on I(t; h)
    same = F.normalize(torch.ones(n_classes, dim, dtype=torch.float64), dim=-1)  # indistinguishable views
    torch.testing.assert_close(symmetric_infonce(critic_scores(same, same, temperature)),
                               torch.tensor(math.log(n_classes), dtype=torch.float64))


def test_infonce_is_symmetric_in_the_two_views():
    soft, handcrafted, weight = views(seed=2)
    forward = symmetric_infonce(critic_scores(soft, handcrafted, 0.07))
    torch.testing.assert_close(forward, symmetric_infonce(critic_scores(handcrafted, soft, 0.07)))
    bilinear = symmetric_infonce(critic_scores(soft, handcrafted, 0.07, weight))
    torch.testing.assert_close(bilinear, symmetric_infonce(critic_scores(handcrafted, soft, 0.07, weight.t())))
    one_way = F.cross_entropy(critic_scores(soft, handcrafted, 0.07, weight), torch.arange(6))
    assert not torch.allclose(bilinear, one_way)  # both directions count


def test_critic_gradient():
    soft, handcrafted, weight = views(seed=3)
    temperature, n = 0.2, soft.shape[0]
    weight = weight.clone().requires_grad_(True)
    loss = symmetric_infonce(critic_scores(soft, handcrafted, temperature, weight))
    (grad,) = torch.autograd.grad(loss, weight)
    # dL/dS = (softmax_rows(S) - I + softmax_columns(S) - I) / 2C, S = t W h^T / tau  =>  dL/dW = t^T (dL/dS) h / tau
    scores = soft @ weight.detach() @ handcrafted.t() / temperature
    eye = torch.eye(n, dtype=scores.dtype)
    d_scores = (scores.softmax(1) - eye + scores.softmax(0) - eye) / (2 * n)
    torch.testing.assert_close(grad, soft.t() @ d_scores @ handcrafted / temperature)
    assert torch.autograd.gradcheck(
        lambda w: symmetric_infonce(critic_scores(soft, handcrafted, temperature, w)), (weight.detach().clone()
                                                                                       .requires_grad_(True),))


def test_infonce_refuses_non_square_scores():
    with pytest.raises(ValueError, match="square"):
        symmetric_infonce(torch.zeros(3, 4))


# --- class-wise Mixup --------------------------------------------------------------------------------------------
def test_batch_partners_stay_within_the_class_and_skip_singletons():
    labels = torch.tensor([3, 1, 3, 0, 3, 1, 2, 3])  # classes 0 and 2 have one row each: skipped
    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(8, 8)
    for _ in range(3000):
        rows, partners = same_class_partners(labels, generator)
        assert rows.tolist() == [0, 1, 2, 4, 5, 7]
        assert torch.equal(labels[partners], labels[rows]) and bool((partners != rows).all())
        counts[rows, partners] += 1
    # each row of class 3 picks each of its 3 class mates with probability 1/3; class 1 rows pick each other
    share = counts[[0, 2, 4, 7]][:, [0, 2, 4, 7]] / 3000
    off_diagonal = share[~torch.eye(4, dtype=torch.bool)]
    assert (off_diagonal - 1 / 3).abs().max() < 0.04
    assert counts[1, 5] == counts[5, 1] == 3000
    rows, partners = same_class_partners(torch.arange(5))
    assert rows.numel() == partners.numel() == 0  # no pair in the batch: no mixed rows


def test_bank_pairs_are_two_distinct_images_of_the_asked_class():
    labels = torch.tensor([2, 0, 1, 2, 0, 2, 1, 0, 2])
    features = torch.eye(9)  # feature k identifies image k
    bank = ClassFeatureBank(features, labels, num_classes=3)
    asked = torch.tensor([2, 0, 1]).repeat(4000)
    generator = torch.Generator().manual_seed(0)
    first, second = bank.pairs(asked, generator)
    a, b = first.argmax(-1), second.argmax(-1)
    assert torch.equal(labels[a], asked) and torch.equal(labels[b], asked) and bool((a != b).all())
    class_two = asked == 2  # 4 images: 12 ordered pairs, each 1/12
    pair_ids = a[class_two] * 9 + b[class_two]
    frequencies = torch.bincount(pair_ids, minlength=81).float() / class_two.sum()
    assert (frequencies > 0).sum() == 12 and (frequencies[frequencies > 0] - 1 / 12).abs().max() < 0.02


@pytest.mark.parametrize("labels,message", [(torch.tensor([0, 0, 1, 2, 2]), r"classes 1 \(1 image\)"),
                                            (torch.tensor([0, 0, 2, 2]), r"classes 1 \(0 images\)")])
def test_bank_refuses_a_class_without_a_pair(labels, message):
    with pytest.raises(ValueError, match=message) as error:
        ClassFeatureBank(torch.randn(labels.numel(), 4), labels, num_classes=3)
    assert "DATASET.NUM_SHOTS" in str(error.value) and "MIXUP" in str(error.value)


def test_bank_refuses_bad_shapes_and_labels():
    with pytest.raises(ValueError, match="features"):
        ClassFeatureBank(torch.randn(4, 3), torch.zeros(5, dtype=torch.long), num_classes=1)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        ClassFeatureBank(torch.randn(4, 3), torch.tensor([0, 0, 2, 2]), num_classes=2)


@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_lambda_follows_the_configured_beta(alpha):
    from scipy import stats

    torch.manual_seed(0)
    lam = beta_lambdas(20000, alpha).double().numpy()
    assert stats.kstest(lam, stats.beta(alpha, alpha).cdf).pvalue > 0.01
    assert stats.kstest(lam, stats.beta(2 * alpha, 2 * alpha).cdf).pvalue < 1e-6  # the check can tell a wrong a
    assert abs(lam.var() - 1 / (4 * (2 * alpha + 1))) < 0.005


def test_mixed_features_are_unit_norm_convex_combinations():
    generator = torch.Generator().manual_seed(0)
    first = F.normalize(torch.randn(5, 8, generator=generator), dim=-1)
    second = F.normalize(torch.randn(5, 8, generator=generator), dim=-1)
    lam = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    mixed = mix_features(first, second, lam)
    torch.testing.assert_close(mixed.norm(dim=-1), torch.ones(5))
    torch.testing.assert_close(mixed[0], second[0])
    torch.testing.assert_close(mixed[-1], first[-1])
    direction = lam[:, None] * first + (1 - lam[:, None]) * second
    torch.testing.assert_close(mixed, direction / direction.norm(dim=-1, keepdim=True))
