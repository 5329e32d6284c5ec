"""LogitPrior (Kim, Ko, Park, AISTATS 2025): a Bayesian objective in logit space around any prompt learner.

With f the base learner's training logits ((B, C), or (L, B, C) Monte Carlo samples for BayesianPrompt) and
z = exp(logit_scale) * u(x) . h_c the zero-shot logits, u(x) the frozen CLIP's image feature (the base's own
image features, or for a base with vision prompts the prompt-free tower's) and h_c the hand-crafted prompts,

    loss = OVE-PG(f, z, y; alpha, M, omega) + lambda_1 * mean((z - f)^2) + the base's regularisers (e.g. its KL)

(the one-vs-each Polya-Gamma likelihood is ``clipbayes.objectives.ove_pg_loss``). Prediction is the base
learner's own. The objective wraps the base model (any registered method with a learner); it copies none of it,
and its checkpoints are the base's.
"""
from __future__ import annotations

import torch

from clipbayes import registry
from clipbayes.config import Key, at_least, check_base_learner, precision_key, template_keys
from clipbayes.datasets.templates import zeroshot_templates
from clipbayes.engine.trainer import PromptTrainer
from clipbayes.modeling.contract import LossOutput, WrappedModel
from clipbayes.modeling.prompt_clip import handcrafted_text_features
from clipbayes.objectives import OMEGA_FORMULAS, loggable, ove_pg_loss, predictive_scores

# LAMBDA_1 and M are the official configs' names (BP_CLIP); M is the number of Gibbs samples, not context slots.
KEYS = {
    "BASE": Key("CoOp", "the prompt learner whose logits are regularised: any registered method with a learner "
                        "(see clipbayes.registry.base_learners())"),
    "LAMBDA_1": Key(0.2, "weight of the Gaussian logit prior centred at zero-shot CLIP; 0 drops it (the zero-shot "
                         "logits still give omega)", check=at_least(0, integer=False)),
    "ALPHA": Key(1.0, "precision alpha of the OVE-PG conditional posterior (official train.py default 1000; every "
                      "official config sets 1.0)", check=at_least(0, integer=False)),
    "M": Key(1, "Gibbs samples of the Polya-Gamma augmentation", check=at_least(1), monte_carlo=True),
    "OMEGA": Key("official", "Polya-Gamma mean: the official formula (reproduces the paper's numbers) or the exact "
                             "one (clipbayes.objectives.polya_gamma_mean)", choices=OMEGA_FORMULAS),
    **template_keys(),
    **precision_key("fp32"),
}


class LogitPriorModel(WrappedModel):
    """A base method's model plus the fixed zero-shot class features (C, E) that centre the logit prior."""

    def __init__(self, base, zeroshot_features: torch.Tensor, alpha: float, lambda_1: float,
                 gibbs_samples: int, omega: str):
        super().__init__(base)
        self.register_buffer("zeroshot_features", zeroshot_features)
        self.alpha, self.lambda_1, self.gibbs_samples, self.omega = alpha, lambda_1, gibbs_samples, omega

    def zeroshot_logits(self, image_features: torch.Tensor) -> torch.Tensor:
        """(B, C) logits of frozen zero-shot CLIP on the same image features; no gradient."""
        with torch.no_grad():
            return self.base.scale() * image_features.float() @ self.zeroshot_features.float().t()

    def train_loss(self, images, labels, noise=None) -> LossOutput:
        out = self.base.train_logits(images, labels)
        labels = labels if out.labels is None else out.labels
        frozen = out.image_features  # the frozen CLIP's, unless the base prompts the image tower
        if self.base.learned_image_features:
            with torch.no_grad():
                frozen = self.base.encode_frozen_images(images)
        objective, parts = ove_pg_loss(out.logits.float(), self.zeroshot_logits(frozen), labels,
                                       alpha=self.alpha, lambda_1=self.lambda_1, omega_formula=self.omega,
                                       num_samples=self.gibbs_samples, noise=noise)
        return LossOutput(objective + sum(out.regularisers.values()), predictive_scores(out.logits),
                          loggable({**parts, **out.regularisers}))


def check_base(cfg, node) -> None:
    check_base_learner("LOGIT_PRIOR", node.BASE)


def build_logit_prior_model(cfg, node, clip_model, classnames) -> LogitPriorModel:
    base = registry.get_method(node.BASE).trainer.make_prompt_model(cfg, clip_model, classnames)
    templates = zeroshot_templates(cfg, node.TEMPLATE, node.ENSEMBLE)
    print(f"LogitPrior around {node.BASE}; zero-shot template(s): {templates}")
    zeroshot = handcrafted_text_features(base.text_encoder, classnames, templates)
    return LogitPriorModel(base, zeroshot, node.ALPHA, node.LAMBDA_1, node.M, node.OMEGA)


@registry.register_method(node="LOGIT_PRIOR", keys=KEYS, build=build_logit_prior_model, wraps_base=True,
                          check=check_base)
class LogitPrior(PromptTrainer):
    """LogitPrior: the OVE-PG likelihood and a Gaussian logit prior at zero-shot CLIP, around a base method."""
