"""SGHMC with ReBaPL's parameterisation (rcSGHMC; Bendou et al., arXiv 2511.17339, github.com/SigmaNova/ReBaPL).

One step on each parameter theta with gradient g of the training loss, learning rate eta, momentum beta (friction
1 - beta), weight decay lambda, noise temperature T and dataset size N; b is the momentum buffer:

    d     = g + lambda theta
    b     = d                                      (first step)        b = beta b + d      (later steps)
    b     = b + sigma eps,   sigma = T sqrt(2 eta beta) / N,   eps ~ N(0, I)       only while the noise is on
    theta = theta - eta b

The noise stays in b. Without noise this is exactly torch.optim.SGD(lr=eta, momentum=beta, dampening=0,
weight_decay=lambda, nesterov=False). With v = -eta b it is SGHMC (Chen et al., 2014) with friction alpha = 1 - beta:

    v = (1 - alpha) v - eta d - eta sigma eps,      theta = theta + v

whose small-step stationary density is exp(-Lbar(theta) / tau), Lbar the differentiated loss plus lambda/2 |theta|^2:

    tau = eta^2 T^2 beta / ((1 - beta) N^2)

(for Lbar a mean over N examples: the posterior of the summed loss at temperature N tau).

The official schedule, per 0-based epoch e, cycle length L epochs, noise in the last S epochs of each cycle:

    sequential (official main config): eta_0 = warm-up lr,  eta_e = eta_max (1 + cos(pi ((e - 1) mod L) / L)) / 2
    parallel (fresh optimizer per cycle): j = e mod L,  eta = warm-up lr (j = 0),  eta_max (1 + cos(pi (j - 1) / L)) / 2
    noise on:  e mod L >= L - S  (and at e = 0 when S >= L - 1);  sample: after the last step of each cycle (K = 1)
"""
from __future__ import annotations

import math

import torch
from torch.optim import Optimizer

GENERATOR_STATE_KEY = "noise_generator_state"
RESTARTS = ("sequential", "parallel")


class SGHMC(Optimizer):
    """The update above; ``set_noise`` turns the noise on (sampling phase) or off (exploration phase).

    Each param group keeps its own hyperparameters (the official step reads group 0's for every group; the same with
    one group). The noise comes from ``generator`` (on the parameters' device) when given, else from torch's global
    generator. A given generator's state is saved in ``state_dict()`` and restored by ``load_state_dict``, so a
    resumed run draws the same noise; without one, the caller checkpoints torch's global RNG.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, temperature: float = 1.0,
                 dataset_size: float = 1.0, noise: bool = False, generator: torch.Generator | None = None):
        if not lr >= 0:
            raise ValueError(f"SGHMC: lr must be >= 0, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"SGHMC: momentum (1 - friction) must be in [0, 1), got {momentum}")
        if not weight_decay >= 0:
            raise ValueError(f"SGHMC: weight_decay must be >= 0, got {weight_decay}")
        if not temperature >= 0:
            raise ValueError(f"SGHMC: temperature (noise scale T) must be >= 0, got {temperature}")
        if not dataset_size > 0:
            raise ValueError(f"SGHMC: dataset_size (N, training examples) must be > 0, got {dataset_size}")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, temperature=temperature,
                        dataset_size=dataset_size, noise=bool(noise))
        super().__init__(params, defaults)
        self.generator = generator

    def set_noise(self, on: bool) -> None:
        """Noise on (sampling phase) or off (exploration phase) in every param group."""
        for group in self.param_groups:
            group["noise"] = bool(on)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
            noise_std = (2.0 * lr * momentum) ** 0.5 / group["dataset_size"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                direction = param.grad if weight_decay == 0 else param.grad.add(param, alpha=weight_decay)
                state = self.state[param]
                if "momentum_buffer" not in state:
                    buffer = state["momentum_buffer"] = torch.clone(direction).detach()
                else:
                    buffer = state["momentum_buffer"].mul_(momentum).add_(direction)
                if group["noise"]:
                    eps = torch.randn(param.shape, generator=self.generator, dtype=param.dtype, device=param.device)
                    buffer.add_(eps * noise_std * group["temperature"])
                param.add_(buffer, alpha=-lr)
        return loss

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self.generator is not None:
            state[GENERATOR_STATE_KEY] = self.generator.get_state()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        generator_state = state_dict.pop(GENERATOR_STATE_KEY, None)
        if (generator_state is None) != (self.generator is None):
            raise ValueError("SGHMC.load_state_dict: the saved state and this optimizer disagree on having a noise "
                             "generator; build the optimizer with generator= exactly when the saved one had one")
        if generator_state is not None:
            self.generator.set_state(generator_state)
        super().load_state_dict(state_dict)


def cyclical_step_size(epoch: int, max_lr: float, cycle_length: int, warmup_lr: float = 1e-5,
                       restart: str = "sequential", warmup: bool = True) -> float:
    """The official learning rate of 0-based ``epoch`` (formulas in the module docstring; one warm-up epoch, or
    with ``warmup=False`` none: the cosine then starts at epoch 0, in step with the cycle).

    sequential: torch's CosineAnnealingWarmRestarts(T_0=L) behind Dassl's constant warm-up, whose epoch shifts the
    cosine one epoch behind the noise/sample cycle. parallel: a new CosineAnnealingLR(T_max=L) and warm-up each cycle
    (the official first cycle instead runs at the warm-up scale, a scheduler bug: see the ReBaPL notes).
    """
    if restart not in RESTARTS:
        raise ValueError(f"restart must be one of {RESTARTS}, got {restart!r}")
    if cycle_length < 1 or epoch < 0:
        raise ValueError(f"need cycle_length >= 1 and epoch >= 0, got {cycle_length} and {epoch}")
    position = epoch if restart == "sequential" else epoch % cycle_length
    if not warmup:
        return max_lr * (1 + math.cos(math.pi * (position % cycle_length) / cycle_length)) / 2
    if position == 0:
        return warmup_lr
    phase = (position - 1) % cycle_length
    return max_lr * (1 + math.cos(math.pi * phase / cycle_length)) / 2


def in_sampling_phase(epoch: int, cycle_length: int, noise_epochs: int) -> bool:
    """Whether the noise is on in 0-based ``epoch``: the official rule.

    The official optimizer tests ((k + 1) mod L) >= L - S on a counter k that the trainer sets after each epoch, so
    k = max(epoch - 1, 0). L = 0 or S = 0 means no noise at all (an official config comment says "always": it is not).
    """
    if cycle_length <= 0 or noise_epochs <= 0:
        return False
    counter = max(epoch - 1, 0)
    return (counter + 1) % cycle_length >= cycle_length - noise_epochs


def is_sample_step(epoch: int, batch_idx: int, num_batches: int, cycle_length: int, noise_epochs: int = 0,
                   samples_per_cycle: int = 1, collected_in_cycle: int = 0) -> bool:
    """Whether the parameters after this step are kept as a sample: the official rule.

    One sample per cycle (or no noise): after the last step of the cycle's last epoch. K > 1 samples per cycle:
    with c = (epoch + 1) mod L, in the steps s = c * B + batch_idx + 1 of epochs with c >= L - S, whenever
    s - (L - S) B is a multiple of (S B) // K, until K are kept. (c is 0 in a cycle's last epoch, so these are the
    epochs L - S - 1 .. L - 2 of the cycle, one before the noise epochs: the official offset.)
    """
    if samples_per_cycle < 1:
        return False
    position = (epoch + 1) % cycle_length
    if noise_epochs == 0 or samples_per_cycle == 1:
        return position == 0 and batch_idx + 1 == num_batches
    if position < cycle_length - noise_epochs or collected_in_cycle >= samples_per_cycle:
        return False
    interval = noise_epochs * num_batches // samples_per_cycle
    if interval == 0:
        raise ValueError(f"{samples_per_cycle} samples per cycle need at least as many steps in the {noise_epochs} "
                         f"noise epochs ({noise_epochs * num_batches})")
    step = position * num_batches + batch_idx + 1
    return (step - (cycle_length - noise_epochs) * num_batches) % interval == 0


class CyclicalMultiplier:
    """lr(e) / OPTIM.LR for LambdaLR: ``cyclical_step_size`` with max_lr 1 (numbers only: loads with weights_only)."""

    def __init__(self, max_lr: float, cycle_length: int, warmup_lr: float, restart: str, warmup: bool = True):
        self.max_lr, self.cycle_length, self.warmup_lr, self.restart = float(max_lr), int(cycle_length), \
            float(warmup_lr), restart
        self.warmup = bool(warmup)

    def __call__(self, epoch: int) -> float:
        return cyclical_step_size(epoch, self.max_lr, self.cycle_length, self.warmup_lr, self.restart,
                                  self.warmup) / self.max_lr
