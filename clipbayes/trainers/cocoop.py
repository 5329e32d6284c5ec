"""CoCoOp (Zhou et al., CVPR 2022): CoOp's context shifted per image by a meta-net.

    pi(x) = W2 ReLU(W1 f(x))   (hidden width vis_dim // 16),   v_m(x) = v_m + pi(x)
    logits[b, c] = exp(logit_scale) * f(x_b) . g(t_c(x_b)),   loss = CE(logits, y)
All B x C prompts of a batch go through the text encoder in one (optionally chunked) pass.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from clipbayes.config import context_keys, precision_key
from clipbayes.engine.trainer import PromptTrainer
from clipbayes.modeling.contract import TrainOutput
from clipbayes.modeling.prompt_clip import PromptCLIP, initial_context, prompt_model_kwargs
from clipbayes.registry import register_method

KEYS = {**context_keys(n_ctx=16, ctx_init="", position=False), **precision_key("fp16")}


class MetaNetContext(nn.Module):
    """``ctx`` (M, D) and ``meta_net``; forward(f (B, E)) -> per-image context (B, 1, M, D)."""

    def __init__(self, ctx: torch.Tensor, vis_dim: int):
        super().__init__()
        self.ctx = nn.Parameter(ctx)
        hidden = vis_dim // 16
        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(vis_dim, hidden)),
            ("relu", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(hidden, ctx.shape[-1])),
        ])).to(ctx.dtype)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        shift = self.meta_net(image_features.to(self.ctx.dtype))  # (B, D)
        return (self.ctx.unsqueeze(0) + shift.unsqueeze(1)).unsqueeze(1)


class CoCoOpModel(PromptCLIP):
    def train_logits(self, images, labels=None):
        image_features = self.encode_images(images)
        return TrainOutput(self.predict_logits(image_features), image_features, {})

    def predict_logits(self, image_features):
        text = self.encode_prompts(self.learner(image_features))  # (B, C, E)
        return self.scale() * torch.einsum("be,bce->bc", image_features, text)

    def reference_text_features(self, image_features):
        """(B, C, E): each image's conditioned class features."""
        return self.encode_prompts(self.learner(image_features))


def build_cocoop_model(cfg, node, clip_model, classnames) -> CoCoOpModel:
    model = CoCoOpModel(clip_model, classnames, **prompt_model_kwargs(cfg, node))
    ctx = initial_context(model.text_encoder, node.N_CTX, node.CTX_INIT)
    model.learner = MetaNetContext(ctx, vis_dim=clip_model.visual.output_dim)
    return model


@register_method(node="COCOOP", keys=KEYS, build=build_cocoop_model, baseline=True,
                 doc="docs/baselines.md")
class CoCoOp(PromptTrainer):
    """CoCoOp: CoOp's context shifted per image by a small meta-net."""
