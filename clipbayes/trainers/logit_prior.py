"""LogitPrior (Kim, Ko, Park, AISTATS 2025): a Bayesian objective in logit space around any prompt learner.

With f the base learner's training logits ((B, C), or (L, B, C) Monte Carlo samples for BayesianPrompt) and
z = exp(logit_scale) * f(x) . h_c the zero-shot logits of the same image features with hand-crafted prompts,

    loss = OVE-PG(f, z, y; alpha, M, omega) + lambda_1 * mean((z - f)^2) + the base's regularisers (e.g. its KL)

(the one-vs-each Polya-Gamma likelihood is ``clipbayes.objectives.ove_pg_loss``). Prediction is the base
learner's own. The objective wraps the base model; it copies none of it, and its checkpoints are the base's.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from clipbayes.config import method_config
from clipbayes.engine.trainer import PromptTrainer
from clipbayes.modeling.prompt_clip import PromptCLIP, handcrafted_text_features, training_scores
from clipbayes.objectives import OMEGA_FORMULAS, ove_pg_loss
from clipbayes.trainers.zeroshot import zeroshot_templates

from dassl.engine import TRAINER_REGISTRY

BASE_LEARNERS = ("CoOp", "CoCoOp", "BayesianPrompt")


@method_config("LOGIT_PRIOR")
def _defaults(node):
    node.BASE = "CoOp"  # the prompt learner whose logits are regularised: CoOp | CoCoOp | BayesianPrompt
    node.LAMBDA_1 = 0.2  # weight of the Gaussian logit prior centred at zero-shot CLIP
    node.ALPHA = 1.0  # precision of the OVE-PG conditional posterior
    node.M = 1  # Gibbs samples of the Polya-Gamma augmentation
    node.OMEGA = "official"  # official | exact  (see clipbayes.objectives.polya_gamma_mean)
    node.TEMPLATE = ""  # zero-shot prompt; "" = the dataset's template
    node.ENSEMBLE = False  # zero-shot text features from the template ensemble instead
    node.PREC = "fp32"


class LogitPriorModel(nn.Module):
    """A base PromptCLIP plus the fixed zero-shot class features (C, E) that centre the logit prior."""

    def __init__(self, base: PromptCLIP, zeroshot_features: torch.Tensor, alpha: float, lambda_1: float,
                 gibbs_samples: int, omega: str):
        super().__init__()
        self.base = base
        self.register_buffer("zeroshot_features", zeroshot_features)
        self.alpha, self.lambda_1, self.gibbs_samples, self.omega = alpha, lambda_1, gibbs_samples, omega

    @property
    def learner(self) -> nn.Module:
        return self.base.learner

    @property
    def dtype(self) -> torch.dtype:
        return self.base.dtype

    def encode_images(self, images):
        return self.base.encode_images(images)

    def evaluation_cache(self):
        return self.base.evaluation_cache()

    def zeroshot_logits(self, image_features: torch.Tensor) -> torch.Tensor:
        """(B, C) logits of frozen zero-shot CLIP on the same image features; no gradient."""
        with torch.no_grad():
            return self.base.scale() * image_features.float() @ self.zeroshot_features.float().t()

    def train_loss(self, images, labels, noise=None):
        logits, image_features, regularisers = self.base.train_logits(images)
        objective, parts = ove_pg_loss(logits.float(), self.zeroshot_logits(image_features), labels,
                                       alpha=self.alpha, lambda_1=self.lambda_1, omega_formula=self.omega,
                                       num_samples=self.gibbs_samples, noise=noise)
        return objective + sum(regularisers.values()), training_scores(logits), {**parts, **regularisers}

    def predict(self, images):
        return self.base.predict(images)

    def predict_features(self, image_features):
        return self.base.predict_features(image_features)


def build_logit_prior_model(cfg, node, clip_model, classnames) -> LogitPriorModel:
    if node.BASE not in BASE_LEARNERS:
        raise ValueError(f"TRAINER.LOGIT_PRIOR.BASE must be one of {BASE_LEARNERS}, got '{node.BASE}'")
    if node.OMEGA not in OMEGA_FORMULAS:
        raise ValueError(f"TRAINER.LOGIT_PRIOR.OMEGA must be one of {OMEGA_FORMULAS}, got '{node.OMEGA}'")
    base = TRAINER_REGISTRY.get(node.BASE).make_prompt_model(cfg, clip_model, classnames)
    templates = zeroshot_templates(cfg, node.TEMPLATE, node.ENSEMBLE)
    print(f"LogitPrior around {node.BASE}; zero-shot template(s): {templates}")
    zeroshot = handcrafted_text_features(base.text_encoder, classnames, templates)
    return LogitPriorModel(base, zeroshot, node.ALPHA, node.LAMBDA_1, node.M, node.OMEGA)


@TRAINER_REGISTRY.register()
class LogitPrior(PromptTrainer):
    METHOD_KEY = "LOGIT_PRIOR"
    build_model_from_cfg = staticmethod(build_logit_prior_model)
