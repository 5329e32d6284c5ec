"""DualViewPrompt (Zhang, arXiv 2410.03189, "E2MIM"): soft and hand-crafted prompts as two views of each class.

    t_c = g([SOS][v_1 ... v_M][name_c][.][EOT])       soft view: CoOp's learnable context; g unit-norm text feature
    h_c = g(template(name_c))                         hand-crafted view, frozen, encoded once per class set
                                                      (the dataset's template, or the template ensemble's mean)
    S[c, c'] = t_c . h_c' / tau,  or  t_c^T W h_c' / tau         W: learnable bilinear critic, starts at I
    L_MI = (1/2C) sum_c (-log softmax(S[c, :])[c] - log softmax(S[:, c])[c]),       I(t; h) >= log C - L_MI
    z~ = normalise(lambda z_a + (1 - lambda) z_b),  lambda ~ Beta(a, a)
         z_a, z_b: image features of two images of ONE class (from the batch, or from the training set's bank)
    logits[i, c] = exp(logit_scale) * z_i . t_c          over the B real rows and the mixed rows (label y_a)
    loss = CE(logits, y) + gamma * L_MI
    predict = exp(logit_scale) z . t_c,   or  (1 - w) exp(logit_scale) z . t_c + w exp(logit_scale) z . h_c

One text pass of the C soft prompts per step (shared by the CE and the MI term); the MI term is O(C^2 E)
(+ O(C E^2) with the critic); Mixup reuses the batch's image features or the bank, never the image encoder.
With gamma = 0 and MIXUP "none" the model is CoOp.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from clipbayes.config import ConfigError, Key, above, at_least, between, context_keys, precision_key, template_keys
from clipbayes.datasets.templates import zeroshot_templates
from clipbayes.engine.trainer import PromptTrainer
from clipbayes.modeling.contract import TrainOutput
from clipbayes.modeling.mixup import ClassFeatureBank, beta_lambdas, mix_features, same_class_partners
from clipbayes.modeling.prompt_clip import (ContextVectors, PromptCLIP, handcrafted_text_features, initial_context,
                                            prompt_model_kwargs)
from clipbayes.objectives import critic_scores, symmetric_infonce
from clipbayes.registry import register_method

KEYS = {
    **context_keys(n_ctx=4, ctx_init="a photo of a"),
    **precision_key("fp16"),
    **template_keys(),
    "GAMMA": Key(1.0, "gamma, weight of the MI term L_MI (0: no MI term)", check=at_least(0, integer=False)),
    "MI_TEMPERATURE": Key(0.07, "tau, temperature of the InfoNCE critic scores", check=above(0)),
    "CRITIC": Key("cosine", "InfoNCE critic: cosine t.h, or bilinear t^T W h with W learned with the prompts",
                  choices=("cosine", "bilinear")),
    "MIXUP": Key("batch", "class-wise Mixup pairs: from the batch, from the training set's feature bank, or none",
                 choices=("batch", "bank", "none")),
    "MIXUP_ALPHA": Key(1.0, "a, Mixup weights lambda ~ Beta(a, a)", check=above(0)),
    "PREDICTION": Key("soft", "soft-prompt logits, or an ensemble with the hand-crafted logits",
                      choices=("soft", "ensemble")),
    "HANDCRAFTED_WEIGHT": Key(0.5, "w, weight of the hand-crafted logits in PREDICTION ensemble", check=between(0, 1)),
}


class DualViewContext(ContextVectors):
    """CoOp's context ``ctx``, plus the bilinear critic ``critic`` W (E, E) (float32, starts at I) when asked."""

    def __init__(self, ctx: torch.Tensor, critic_dim: int | None = None):
        super().__init__(ctx)
        critic = None if critic_dim is None else nn.Parameter(torch.eye(critic_dim, device=ctx.device))
        self.register_parameter("critic", critic)


class DualViewModel(PromptCLIP):
    """CoOp's prompts + the frozen hand-crafted views ``handcrafted_features`` (C, E) + the Mixup source."""

    def __init__(self, clip_model, classnames, templates: list[str], gamma: float, temperature: float,
                 mixup: str, mixup_alpha: float, prediction: str, handcrafted_weight: float, **prompt_kwargs):
        super().__init__(clip_model, classnames, **prompt_kwargs)
        self.register_buffer("handcrafted_features", handcrafted_text_features(self.text_encoder, classnames,
                                                                               templates))
        self.gamma, self.temperature = gamma, temperature
        self.mixup, self.mixup_alpha = mixup, mixup_alpha
        self.prediction, self.handcrafted_weight = prediction, handcrafted_weight
        self.bank: ClassFeatureBank | None = None

    @property
    def wants_train_features(self) -> bool:
        return self.mixup == "bank"

    def attach_train_features(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """The training set's image features (N, E) and labels (N,), once before training (MIXUP 'bank')."""
        self.bank = ClassFeatureBank(features, labels, self.num_classes).to(self.handcrafted_features.device)

    def class_features(self) -> torch.Tensor:
        """t: (C, E) unit-norm soft views, one text pass."""
        return self.encode_prompts(self.learner())

    def mi_loss(self, soft: torch.Tensor) -> torch.Tensor:
        """L_MI of the soft views (C, E) against the hand-crafted ones."""
        scores = critic_scores(soft, self.handcrafted_features, self.temperature, self.learner.critic)
        return symmetric_infonce(scores)

    def mixed_features(self, image_features: torch.Tensor, labels: torch.Tensor):
        """Mixed rows (n, E) and their labels (n,): one per batch row with a same-class partner ('batch'; the
        others are skipped), or one per batch row from two distinct bank images of its class ('bank')."""
        if self.mixup == "batch":
            rows, partners = same_class_partners(labels)
            first, second, labels = image_features[rows], image_features[partners], labels[rows]
        else:
            if self.bank is None:
                raise RuntimeError("MIXUP 'bank' needs the training set's features: call "
                                   "attach_train_features(features, labels) before training")
            first, second = (z.to(image_features.dtype) for z in self.bank.pairs(labels))
        lam = beta_lambdas(labels.numel(), self.mixup_alpha, device=image_features.device)
        return mix_features(first, second, lam), labels

    def train_logits(self, images, labels=None):
        image_features = self.encode_images(images)
        soft = self.class_features()
        row_labels = None
        if self.mixup != "none":
            if labels is None:
                raise ValueError("class-wise Mixup needs the batch's labels: train_logits(images, labels)")
            mixed, mixed_labels = self.mixed_features(image_features, labels)
            image_features = torch.cat([image_features, mixed])
            row_labels = torch.cat([labels, mixed_labels])
        regularisers = {"mi": self.gamma * self.mi_loss(soft)} if self.gamma else {}
        return TrainOutput(self.scale() * image_features @ soft.t(), image_features, regularisers, row_labels)

    def predict_logits(self, image_features):
        soft = self.scale() * image_features @ self.cached_text_features(self.class_features).t()
        if self.prediction == "soft":
            return soft
        handcrafted = self.scale() * image_features @ self.handcrafted_features.to(image_features.dtype).t()
        return (1 - self.handcrafted_weight) * soft + self.handcrafted_weight * handcrafted


def build_dual_view_model(cfg, node, clip_model, classnames) -> DualViewModel:
    templates = zeroshot_templates(cfg, node.TEMPLATE, node.ENSEMBLE)
    print(f"DualViewPrompt hand-crafted view, template(s): {templates}")
    model = DualViewModel(clip_model, classnames, templates, node.GAMMA, node.MI_TEMPERATURE, node.MIXUP,
                          node.MIXUP_ALPHA, node.PREDICTION, node.HANDCRAFTED_WEIGHT, **prompt_model_kwargs(cfg, node))
    ctx = initial_context(model.text_encoder, node.N_CTX, node.CTX_INIT)
    critic_dim = model.handcrafted_features.shape[-1] if node.CRITIC == "bilinear" else None
    model.learner = DualViewContext(ctx, critic_dim)
    return model


def check_dual_view(cfg, node):
    if node.CRITIC == "bilinear" and node.GAMMA == 0:
        raise ConfigError("TRAINER.DUAL_VIEW.CRITIC 'bilinear' is trained only through the MI term, which "
                          "GAMMA 0 switches off: set GAMMA > 0 or CRITIC 'cosine'")


@register_method(node="DUAL_VIEW", keys=KEYS, build=build_dual_view_model, check=check_dual_view)
class DualViewPrompt(PromptTrainer):
    """Soft and hand-crafted prompts as two views: CE + gamma x InfoNCE MI bound, with class-wise visual Mixup."""
