"""ReBaPL's SGHMC (clipbayes/sampling/sghmc.py): SGD without noise, the right stationary law with it, the official
schedule, bit-identical resumption, argument checks."""
from __future__ import annotations

import copy
import math
from statistics import NormalDist

import pytest
import torch

from clipbayes.sampling import SGHMC, cyclical_step_size, in_sampling_phase, is_sample_step


def quadratic_loss(params: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    return sum(((p - t) ** 2 * (1 + t.abs())).sum() for p, t in zip(params, targets))


def test_noise_off_is_torch_sgd_with_momentum_bit_for_bit():
    """SGHMC(lr, momentum, weight_decay, noise off) == SGD(lr, momentum, dampening=0, weight_decay, nesterov=False)."""
    torch.manual_seed(0)
    init = [torch.randn(3, 4), torch.randn(5)]
    targets = [torch.randn(3, 4), torch.randn(5)]
    ours = [torch.nn.Parameter(p.clone()) for p in init]
    theirs = [torch.nn.Parameter(p.clone()) for p in init]
    sghmc = SGHMC(ours, lr=0.05, momentum=0.9, weight_decay=5e-4, temperature=100.0, dataset_size=80)
    sgd = torch.optim.SGD(theirs, lr=0.05, momentum=0.9, dampening=0, weight_decay=5e-4, nesterov=False)
    for step in range(8):
        for optimizer, params in ((sghmc, ours), (sgd, theirs)):
            optimizer.zero_grad()
            quadratic_loss(params, targets).backward()
            optimizer.step()
        if step == 4:  # a scheduler's change of lr is followed too
            for optimizer in (sghmc, sgd):
                optimizer.param_groups[0]["lr"] = 0.01
        for a, b in zip(ours, theirs):
            assert torch.equal(a, b), f"step {step}: max difference {(a - b).abs().max().item()}"


def test_noise_is_added_to_the_momentum_with_the_official_scale():
    """First step, zero gradient: b = sigma eps, theta_1 = theta_0 - lr b, sigma = T sqrt(2 lr beta) / N; eps from the
    generator, and the noise persists in the momentum buffer."""
    lr, momentum, temperature, dataset_size = 0.002, 0.9, 100.0, 80
    theta = torch.nn.Parameter(torch.zeros(1000))
    optimizer = SGHMC([theta], lr=lr, momentum=momentum, temperature=temperature, dataset_size=dataset_size,
                      noise=True, generator=torch.Generator().manual_seed(3))
    theta.grad = torch.zeros(1000)
    optimizer.step()
    eps = torch.randn(1000, generator=torch.Generator().manual_seed(3))
    buffer = eps * ((2.0 * lr * momentum) ** 0.5 / dataset_size) * temperature
    assert torch.equal(optimizer.state[theta]["momentum_buffer"], buffer)
    assert torch.equal(theta.detach(), torch.zeros(1000).add_(buffer, alpha=-lr))
    optimizer.set_noise(False)
    optimizer.step()
    assert torch.equal(optimizer.state[theta]["momentum_buffer"], buffer * momentum)


def run_chains(neg_log_density, init: torch.Tensor, steps: int, burn_in: int, thin: int, lr: float = 0.02,
               momentum: float = 0.9, seed: int = 0) -> torch.Tensor:
    """Independent chains (init's rows) targeting exp(-U) -> kept states (n_kept, *init.shape).

    tau = lr^2 T^2 beta / ((1 - beta) N^2) = 1 with N = 1 and T = sqrt((1 - beta) / beta) / lr.
    """
    theta = torch.nn.Parameter(init.clone())
    temperature = math.sqrt((1 - momentum) / momentum) / lr
    optimizer = SGHMC([theta], lr=lr, momentum=momentum, temperature=temperature, dataset_size=1.0, noise=True,
                      generator=torch.Generator().manual_seed(seed))
    kept = []
    for step in range(steps):
        optimizer.zero_grad()
        neg_log_density(theta).backward()
        optimizer.step()
        if step >= burn_in and (step - burn_in) % thin == 0:
            kept.append(theta.detach().clone())
    return torch.stack(kept)


def test_samples_a_2d_gaussian():
    """N(m, S), 500 chains from 0, lr 0.02, momentum 0.9, burn-in 300 steps, every 50th of 1500 (12,000 draws).
    Tolerances: mean within 0.1 std per coordinate; variances and covariance within 15% (seed 0: 0.003 std and 2%;
    seeds 0-5: at most 0.014 std and 2.4%; the step's own bias is about 2% at the largest precision eigenvalue, 10)."""
    mean = torch.tensor([1.0, -2.0])
    covariance = torch.tensor([[1.0, 0.6], [0.6, 0.5]])
    precision = torch.linalg.inv(covariance)

    def neg_log_density(theta):
        centred = theta - mean
        return 0.5 * torch.einsum("ci,ij,cj->", centred, precision, centred)

    draws = run_chains(neg_log_density, torch.zeros(500, 2), steps=1500, burn_in=300, thin=50).reshape(-1, 2)
    std = covariance.diagonal().sqrt()
    assert ((draws.mean(0) - mean).abs() / std).max() < 0.1
    ratio = torch.cov(draws.T) / covariance
    assert (ratio - 1).abs().max() < 0.15, ratio


def test_samples_both_modes_of_a_1d_mixture():
    """0.3 N(-1.5, 0.6^2) + 0.7 N(1.5, 0.6^2), 500 chains all started in the lighter mode, burn-in 500 of 3000 steps,
    every 25th kept. Tolerances: >= 90% of chains visit both modes (within one sd of each centre; seeds 0-5: >= 99%);
    the mass right of 0 within 0.05 of the exact 0.6975 (seeds 0-5: 0.685-0.691); mean within 0.1 and variance
    within 15% of the mixture's 0.6 and 2.25 (seeds 0-5: 0.56-0.58, 2.27-2.30)."""
    weights, centres, sd = torch.tensor([0.3, 0.7]), torch.tensor([-1.5, 1.5]), 0.6

    def neg_log_density(theta):
        z = (theta[:, None] - centres) / sd
        return -torch.logsumexp(torch.log(weights) - 0.5 * z ** 2, dim=1).sum()

    draws = run_chains(neg_log_density, torch.full((500,), -1.5), steps=3000, burn_in=500, thin=25)
    visited_both = ((draws < -1.5 + sd).any(0) & (draws > 1.5 - sd).any(0)).float().mean()
    assert visited_both >= 0.9
    exact_right = sum(w * (1 - NormalDist(c, sd).cdf(0.0)) for w, c in zip(weights.tolist(), centres.tolist()))
    assert abs((draws > 0).float().mean().item() - exact_right) < 0.05
    exact_mean = (weights * centres).sum()
    exact_var = (weights * (centres ** 2 + sd ** 2)).sum() - exact_mean ** 2
    assert abs(draws.mean() - exact_mean) < 0.1
    assert abs(draws.var() / exact_var - 1) < 0.15


def official_lrs(max_lr: float, cycle_length: int, epochs: int, warmup_lr: float, restart: str) -> list[float]:
    """The official scheduling re-stated with torch's schedulers, epoch by epoch: Dassl's constant warm-up epoch,
    then CosineAnnealingWarmRestarts(T_0=L) (sequential) or a fresh CosineAnnealingLR(T_max=L) per cycle (parallel,
    as the official code does from its second cycle on)."""
    lrs = []
    for epoch in range(epochs):
        if epoch == 0 or (restart == "parallel" and epoch % cycle_length == 0):
            optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=max_lr)
            if restart == "sequential":
                cosine = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=cycle_length)
            else:
                cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cycle_length)
            lrs.append(warmup_lr)
            continue
        lrs.append(cosine.get_last_lr()[0])
        optimizer.step()
        cosine.step()
    return lrs


@pytest.mark.parametrize("restart", ["sequential", "parallel"])
@pytest.mark.parametrize("cycle_length", [1, 3, 5])
def test_cyclical_step_size_matches_the_official_schedulers(restart, cycle_length):
    expected = official_lrs(0.002, cycle_length, 16, 1e-5, restart)
    ours = [cyclical_step_size(e, 0.002, cycle_length, 1e-5, restart) for e in range(16)]
    assert ours == pytest.approx(expected, rel=1e-12, abs=0)


def test_cyclical_step_size_spot_values_of_the_official_main_config():
    """Printed by the official code (L = 5, lr 0.002, sequential): 1e-5, 0.002, 0.00180902, ... 0.000190983, 0.002."""
    values = [cyclical_step_size(e, 0.002, 5) for e in range(15)]
    assert values[0] == 1e-5 and values[1] == values[6] == values[11] == 0.002
    assert values[5] == pytest.approx(0.000190983, rel=1e-5) and values[14] == pytest.approx(0.000690983, rel=1e-5)
    with pytest.raises(ValueError, match="restart"):
        cyclical_step_size(0, 0.002, 5, restart="warm")


@pytest.mark.parametrize("cycle_length, noise_epochs", [(5, 3), (5, 1), (5, 4), (5, 5), (10, 5), (5, 0), (0, 3)])
def test_sampling_phase_matches_the_official_epoch_counter(cycle_length, noise_epochs):
    """The official optimizer's counter starts at 0 and is set to the finished epoch after each epoch."""
    counter, expected = 0, []
    for epoch in range(20):
        expected.append(cycle_length > 0 and noise_epochs > 0
                        and (counter + 1) % cycle_length >= cycle_length - noise_epochs)
        counter = epoch
    assert [in_sampling_phase(e, cycle_length, noise_epochs) for e in range(20)] == expected
    if (cycle_length, noise_epochs) == (5, 3):
        assert [e for e in range(15) if expected[e]] == [2, 3, 4, 7, 8, 9, 12, 13, 14]


def test_samples_are_the_last_step_of_each_cycle():
    steps = [(e, b) for e in range(15) for b in range(4) if is_sample_step(e, b, 4, 5)]
    assert steps == [(4, 3), (9, 3), (14, 3)]


def test_state_dict_round_trip_continues_bit_identically():
    """Save after 5 noisy steps, go on 5 steps; a new optimizer (its generator seeded differently) loaded from the
    save, on parameters restored from it, makes the same 5 steps bit for bit."""
    torch.manual_seed(1)
    targets = [torch.randn(4, 3), torch.randn(6)]

    def make(params, seed):
        return SGHMC(params, lr=0.01, momentum=0.9, weight_decay=5e-4, temperature=50.0, dataset_size=16,
                     noise=True, generator=torch.Generator().manual_seed(seed))

    def steps(optimizer, params, n):
        for _ in range(n):
            optimizer.zero_grad()
            quadratic_loss(params, targets).backward()
            optimizer.step()

    params = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(6))]
    optimizer = make(params, seed=7)
    steps(optimizer, params, 5)
    saved_params, saved_state = [p.detach().clone() for p in params], copy.deepcopy(optimizer.state_dict())
    steps(optimizer, params, 5)

    resumed = [torch.nn.Parameter(p.clone()) for p in saved_params]
    resumed_optimizer = make(resumed, seed=12345)
    resumed_optimizer.load_state_dict(saved_state)
    steps(resumed_optimizer, resumed, 5)
    for a, b in zip(params, resumed):
        assert torch.equal(a, b)
    for a, b in zip(params, resumed):
        assert torch.equal(optimizer.state[a]["momentum_buffer"], resumed_optimizer.state[b]["momentum_buffer"])
    with pytest.raises(ValueError, match="generator"):
        SGHMC([torch.nn.Parameter(torch.zeros(1))], lr=0.01).load_state_dict(saved_state)


@pytest.mark.parametrize("kwargs, name", [
    (dict(lr=-0.1), "lr"),
    (dict(lr=float("nan")), "lr"),
    (dict(lr=0.1, momentum=1.0), "momentum"),
    (dict(lr=0.1, momentum=-0.1), "momentum"),
    (dict(lr=0.1, weight_decay=-1e-4), "weight_decay"),
    (dict(lr=0.1, temperature=-1.0), "temperature"),
    (dict(lr=0.1, dataset_size=0), "dataset_size"),
])
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SGHMC([torch.nn.Parameter(torch.zeros(2))], **kwargs)


def test_without_warm_up_the_cosine_starts_at_epoch_0_in_step_with_the_cycle():
    values = [cyclical_step_size(e, 0.002, 5, warmup=False) for e in range(10)]
    assert values[0] == values[5] == 0.002
    assert values[:5] == values[5:] and all(a > b for a, b in zip(values[:4], values[1:5]))
