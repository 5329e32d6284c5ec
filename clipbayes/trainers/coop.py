"""CoOp (Zhou et al., IJCV 2022): learnable context, cross-entropy.

    t_c = [SOS][v_1 ... v_M][name_c][.][EOT],  v shared (M, D) or class-specific (C, M, D)
    logits = exp(logit_scale) * f(x) . g(t_c),   loss = CE(logits, y)
"""
from __future__ import annotations

import torch
import torch.nn as nn

from clipbayes.config import method_config
from clipbayes.engine.trainer import PromptTrainer
from clipbayes.modeling.prompt_clip import PromptCLIP, initial_context

from dassl.engine import TRAINER_REGISTRY


@method_config("COOP")
def _defaults(node):
    node.N_CTX = 16
    node.CSC = False  # class-specific context
    node.CTX_INIT = ""  # e.g. "a photo of a"; "" = random N(0, 0.02^2)
    node.PREC = "fp16"
    node.CLASS_TOKEN_POSITION = "end"  # end | middle | front


class ContextVectors(nn.Module):
    """Learnable context ``ctx``: (M, D) shared or (C, M, D) class-specific. forward() -> (K, M, D)."""

    def __init__(self, ctx: torch.Tensor):
        super().__init__()
        self.ctx = nn.Parameter(ctx)

    def forward(self) -> torch.Tensor:
        return self.ctx if self.ctx.dim() == 3 else self.ctx.unsqueeze(0)


def prompt_model_kwargs(cfg, node) -> dict:
    """Keyword arguments of PromptCLIP shared by the CoOp-style learners."""
    return dict(n_ctx=node.N_CTX, ctx_init=node.CTX_INIT,
                position=node.get("CLASS_TOKEN_POSITION", "end"),
                text_chunk_size=cfg.MODEL.CLIP.TEXT_CHUNK_SIZE,
                text_checkpointing=cfg.MODEL.CLIP.TEXT_CHECKPOINTING)


class CoOpModel(PromptCLIP):
    def class_features(self) -> torch.Tensor:
        """(C, E) unit-norm text features of the learned prompts."""
        return self.encode_prompts(self.learner())

    def train_logits(self, images):
        image_features = self.encode_images(images)
        return self.scale() * image_features @ self.class_features().t(), image_features, {}

    def predict_features(self, image_features):
        return self.scale() * image_features @ self.cached_text_features(self.class_features).t()


def build_coop_model(cfg, node, clip_model, classnames) -> CoOpModel:
    model = CoOpModel(clip_model, classnames, **prompt_model_kwargs(cfg, node))
    n_classes = len(classnames) if node.CSC else None
    model.learner = ContextVectors(initial_context(model.text_encoder, node.N_CTX, node.CTX_INIT, n_classes))
    return model


@TRAINER_REGISTRY.register()
class CoOp(PromptTrainer):
    METHOD_KEY = "COOP"
    build_model_from_cfg = staticmethod(build_coop_model)
