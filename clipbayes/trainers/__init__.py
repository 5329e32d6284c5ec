"""Trainers registered in Dassl's TRAINER_REGISTRY; importing this package registers them all."""
from clipbayes.trainers.zeroshot import ZeroshotCLIP
from clipbayes.trainers.coop import CoOp
from clipbayes.trainers.cocoop import CoCoOp
from clipbayes.trainers.bayesian_prompt import BayesianPrompt
from clipbayes.trainers.logit_prior import LogitPrior

__all__ = ["ZeroshotCLIP", "CoOp", "CoCoOp", "BayesianPrompt", "LogitPrior"]
