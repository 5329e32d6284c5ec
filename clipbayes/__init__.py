"""clipbayes: Bayesian prompt-learning trainers for CLIP, as a Dassl.pytorch plugin."""
__version__ = "0.1.0"
