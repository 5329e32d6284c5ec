"""ZeroshotCLIP: hand-crafted prompts, no training.

    logits = exp(logit_scale) * f(x) . h_c,   h_c = unit-norm text feature of template.format(name_c)
(template ensemble: h_c = normalise(mean_t normalise(g(template_t(name_c))))). Text features are computed once.
"""
from __future__ import annotations

import torch

from clipbayes.config import precision_key, template_keys
from clipbayes.datasets.templates import zeroshot_templates
from clipbayes.engine.trainer import PromptTrainer
from clipbayes.modeling.prompt_clip import PromptCLIP, handcrafted_text_features
from clipbayes.registry import register_method

KEYS = {**template_keys(), **precision_key("fp16", learner=False)}


class ZeroshotModel(PromptCLIP):
    def __init__(self, clip_model, classnames, templates):
        super().__init__(clip_model, classnames)
        self.register_buffer("class_features", handcrafted_text_features(self.text_encoder, classnames, templates))

    def predict_logits(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.scale() * image_features @ self.class_features.type(self.dtype).t()


def build_zeroshot_model(cfg, node, clip_model, classnames) -> ZeroshotModel:
    templates = zeroshot_templates(cfg, node.TEMPLATE, node.ENSEMBLE)
    print(f"Zero-shot prompt template(s): {templates}")
    return ZeroshotModel(clip_model, classnames, templates)


@register_method(node="ZEROSHOT_CLIP", keys=KEYS, build=build_zeroshot_model, trainable=False, slug="zsclip",
                 baseline=True, doc="docs/baselines.md")
class ZeroshotCLIP(PromptTrainer):
    """Zero-shot CLIP with the dataset's hand-crafted prompt (or the template ensemble); nothing is trained."""
