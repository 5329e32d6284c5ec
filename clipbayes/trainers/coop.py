"""CoOp (Zhou et al., IJCV 2022): learnable context, cross-entropy.

    t_c = [SOS][v_1 ... v_M][name_c][.][EOT],  v shared (M, D) or class-specific (C, M, D)
    logits = exp(logit_scale) * f(x) . g(t_c),   loss = CE(logits, y)
"""
from __future__ import annotations

import torch

from clipbayes.config import Key, context_keys, precision_key
from clipbayes.engine.trainer import PromptTrainer
from clipbayes.modeling.contract import TrainOutput
from clipbayes.modeling.prompt_clip import ContextVectors, PromptCLIP, initial_context, prompt_model_kwargs
from clipbayes.registry import register_method

KEYS = {
    **context_keys(n_ctx=16, ctx_init=""),
    "CSC": Key(False, "class-specific context: one (M, D) context per class", choices=(False, True)),
    **precision_key("fp16"),
}


class CoOpModel(PromptCLIP):
    def class_features(self) -> torch.Tensor:
        """(C, E) unit-norm text features of the learned prompts."""
        return self.encode_prompts(self.learner())

    def train_logits(self, images, labels=None):
        image_features = self.encode_images(images)
        return TrainOutput(self.scale() * image_features @ self.class_features().t(), image_features, {})

    def predict_logits(self, image_features):
        return self.scale() * image_features @ self.cached_text_features(self.class_features).t()


def build_coop_model(cfg, node, clip_model, classnames) -> CoOpModel:
    model = CoOpModel(clip_model, classnames, **prompt_model_kwargs(cfg, node))
    n_classes = len(classnames) if node.CSC else None
    model.learner = ContextVectors(initial_context(model.text_encoder, node.N_CTX, node.CTX_INIT, n_classes))
    return model


@register_method(node="COOP", keys=KEYS, build=build_coop_model, baseline=True, doc="docs/baselines.md")
class CoOp(PromptTrainer):
    """CoOp: a learned context shared by the classes (or one per class), cross-entropy."""
