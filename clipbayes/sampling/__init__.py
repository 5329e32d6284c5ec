"""Samplers of prompt posteriors: ReBaPL's SGHMC and its cyclical schedule."""
from clipbayes.sampling.sghmc import SGHMC, cyclical_step_size, in_sampling_phase, is_sample_step

__all__ = ["SGHMC", "cyclical_step_size", "in_sampling_phase", "is_sample_step"]
