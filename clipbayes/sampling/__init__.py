"""Samplers of prompt posteriors: ReBaPL's SGHMC and its schedule, the repulsion distances, the sample store."""
from clipbayes.sampling.distances import REPULSION_DISTANCES, representation_distance
from clipbayes.sampling.samples import SampleChain
from clipbayes.sampling.sghmc import (SGHMC, CyclicalMultiplier, cyclical_step_size, in_sampling_phase,
                                      is_sample_step)

__all__ = ["REPULSION_DISTANCES", "SGHMC", "CyclicalMultiplier", "SampleChain", "cyclical_step_size",
           "in_sampling_phase", "is_sample_step", "representation_distance"]
