"""Learning-rate schedules from Dassl's OPTIM keys, on torch's own ``LambdaLR``.

Dassl's warm-up schedulers crash on torch >= 2.2 (``verbose`` passed positionally). This module gives the same
learning rate for every epoch e (the scheduler steps once per epoch, at its last batch):

  warm-up (e < W):   constant: WARMUP_CONS_LR;   linear: WARMUP_MIN_LR at e = 0, else lr * e / W
  after:             t = e - W if WARMUP_RECOUNT else e
                     cosine       lr * (1 + cos(pi * t / MAX_EPOCH)) / 2
                     single_step  lr * GAMMA ** (t // STEPSIZE)
                     multi_step   lr * GAMMA ** (number of milestones <= t)

The multiplier is a picklable object holding only numbers, so the scheduler state loads with weights_only=True.
"""
from __future__ import annotations

import bisect
import math

from torch.optim.lr_scheduler import LambdaLR

SCHEDULERS = ("cosine", "single_step", "multi_step")


class EpochMultiplier:
    """lr(e) / base_lr for Dassl's schedule; see the module docstring."""

    def __init__(self, base_lr, scheduler, max_epoch, stepsize, gamma, warmup_epoch, warmup_type,
                 warmup_cons_lr, warmup_min_lr, warmup_recount):
        if scheduler not in SCHEDULERS:
            raise ValueError(f"OPTIM.LR_SCHEDULER must be one of {SCHEDULERS}, got '{scheduler}'")
        if warmup_epoch > 0 and warmup_type not in ("constant", "linear"):
            raise ValueError(f"OPTIM.WARMUP_TYPE must be 'constant' or 'linear', got '{warmup_type}'")
        self.base_lr = float(base_lr)
        self.scheduler = scheduler
        self.max_epoch = int(max_epoch)
        steps = list(stepsize) if isinstance(stepsize, (list, tuple)) else [stepsize]
        self.milestones = sorted(int(s) for s in steps)
        self.gamma = float(gamma)
        self.warmup_epoch = int(warmup_epoch)
        self.warmup_type = warmup_type
        self.warmup_cons_lr = float(warmup_cons_lr)
        self.warmup_min_lr = float(warmup_min_lr)
        self.warmup_recount = bool(warmup_recount)

    def _decay(self, t: int) -> float:
        if self.scheduler == "cosine":
            return (1 + math.cos(math.pi * t / self.max_epoch)) / 2
        if self.scheduler == "single_step":
            step = self.milestones[-1] if self.milestones[-1] > 0 else self.max_epoch
            return self.gamma ** (t // step)
        return self.gamma ** bisect.bisect_right(self.milestones, t)

    def __call__(self, epoch: int) -> float:
        if epoch < self.warmup_epoch:
            if self.warmup_type == "constant":
                return self.warmup_cons_lr / self.base_lr
            if epoch == 0:
                return self.warmup_min_lr / self.base_lr
            return epoch / self.warmup_epoch
        t = epoch - self.warmup_epoch if (self.warmup_epoch > 0 and self.warmup_recount) else epoch
        return self._decay(t)


def build_lr_scheduler(optimizer, optim_cfg) -> LambdaLR:
    multiplier = EpochMultiplier(
        optim_cfg.LR, optim_cfg.LR_SCHEDULER, optim_cfg.MAX_EPOCH, optim_cfg.STEPSIZE, optim_cfg.GAMMA,
        optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_TYPE, optim_cfg.WARMUP_CONS_LR, optim_cfg.WARMUP_MIN_LR,
        optim_cfg.WARMUP_RECOUNT)
    return LambdaLR(optimizer, multiplier)
