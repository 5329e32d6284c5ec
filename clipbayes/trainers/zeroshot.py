"""ZeroshotCLIP: hand-crafted prompts, no training.

    logits = exp(logit_scale) * f(x) . h_c,   h_c = unit-norm text feature of template.format(name_c)
(template ensemble: h_c = normalise(mean_t normalise(g(template_t(name_c))))). Text features are computed once.
"""
from __future__ import annotations

import torch

from clipbayes.config import method_config
from clipbayes.engine.trainer import PromptTrainer
from clipbayes.modeling.prompt_clip import PromptCLIP, handcrafted_text_features

from dassl.engine import TRAINER_REGISTRY


@method_config("ZEROSHOT_CLIP")
def _defaults(node):
    node.TEMPLATE = ""  # "" = DATASET.PROMPT_TEMPLATE, else the dataset's template, else "a photo of a {}."
    node.ENSEMBLE = False  # average the ensemble templates instead
    node.PREC = "fp16"


def zeroshot_templates(cfg, template: str = "", ensemble: bool = False) -> list[str]:
    """The hand-crafted prompt template(s): ``template``, else the dataset's (see template_from_cfg); or the ensemble."""
    from clipbayes.datasets.templates import ENSEMBLE_TEMPLATES, template_from_cfg

    if ensemble:
        return list(ENSEMBLE_TEMPLATES)
    return [template or template_from_cfg(cfg)]


def build_zeroshot_model(cfg, node, clip_model, classnames) -> "ZeroshotModel":
    templates = zeroshot_templates(cfg, node.TEMPLATE, node.ENSEMBLE)
    print(f"Zero-shot prompt template(s): {templates}")
    return ZeroshotModel(clip_model, classnames, templates)


class ZeroshotModel(PromptCLIP):
    def __init__(self, clip_model, classnames, templates):
        super().__init__(clip_model, classnames)
        self.register_buffer("class_features", handcrafted_text_features(self.text_encoder, classnames, templates))

    def predict_features(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.scale() * image_features @ self.class_features.type(self.dtype).t()


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(PromptTrainer):
    METHOD_KEY = "ZEROSHOT_CLIP"
    build_model_from_cfg = staticmethod(build_zeroshot_model)
