"""MaPLe (Khattak et al., CVPR 2023): text prompts in the first J layers, coupled to vision prompts.

    c (n, D_t)                      the input-layer context: the first n tokens of CTX_INIT, the rest kept as words
    P^i (n, D_t), i = 1 .. J-1      the text tokens of blocks 1 .. J-1, N(0, 0.02^2)
    V^0 = F_0(c),  V^i = F_i(P^i)   the vision tokens: linear couplings F_i: D_t -> D_v (vision from language)
    logits = exp(logit_scale) f(x; V) . g_c(c, P),   loss = CE(logits, y)

F_0 is a Linear with PyTorch's default init; F_1 .. F_{J-1} start as copies of one such Linear (the official
init). Towers, token positions and the depth convention: clipbayes/modeling/deep_prompts.py; the class features do
not depend on the image and are encoded once per evaluation.
"""
from __future__ import annotations

import copy

import torch.nn as nn

from clipbayes.config import Key, at_least, depth_key, half_cast_key, precision_key
from clipbayes.engine.trainer import PromptTrainer
from clipbayes.modeling.deep_prompts import (DeepPromptCLIP, TowerPrompts, deep_context, deep_token_count,
                                             prompt_tokens, require_vit, vision_width)
from clipbayes.registry import register_method

KEYS = {
    "N_CTX": Key(2, "n, context tokens (the first n tokens of CTX_INIT are learned, the rest stay words)",
                 check=at_least(1)),
    "CTX_INIT": Key("a photo of a", 'words initialising the context; "" = random N(0, 0.02^2) context of N_CTX '
                                    'tokens'),
    **depth_key("PROMPT_DEPTH", 9, "text and vision", minimum=1),
    **half_cast_key(),
    **precision_key("fp16"),
}


class CoupledPrompts(nn.Module):
    """MaPLe's learner: ``ctx`` (n, D_t), ``text`` P^1 .. P^K, ``couplings`` F_0 .. F_K (D_t -> D_v)."""

    def __init__(self, ctx, deep_tokens: int, vision_dim: int):
        super().__init__()
        n, width = ctx.shape
        self.ctx = nn.Parameter(ctx)
        first = nn.Linear(width, vision_dim).to(ctx)
        self.text = prompt_tokens(deep_tokens, n, width, ctx.dtype, ctx.device)
        deep = nn.Linear(width, vision_dim).to(ctx)
        self.couplings = nn.ModuleList([first] + [copy.deepcopy(deep) for _ in range(deep_tokens)])

    def forward(self) -> TowerPrompts:
        vision = tuple(coupling(tokens) for coupling, tokens in zip(self.couplings, (self.ctx, *self.text)))
        return TowerPrompts(self.ctx, tuple(self.text), vision)


def build_maple_model(cfg, node, clip_model, classnames) -> DeepPromptCLIP:
    require_vit(clip_model, "MaPLe", cfg.MODEL.BACKBONE.NAME)
    model = DeepPromptCLIP(clip_model, classnames, vision_prompts=True, n_ctx=node.N_CTX, ctx_init=node.CTX_INIT,
                           round_to_half=node.HALF_CAST, text_chunk_size=cfg.MODEL.CLIP.TEXT_CHUNK_SIZE,
                           text_checkpointing=cfg.MODEL.CLIP.TEXT_CHECKPOINTING)
    layers = min(len(clip_model.transformer.resblocks), len(clip_model.visual.transformer.resblocks))
    model.learner = CoupledPrompts(deep_context(model.text_encoder, node.N_CTX, node.CTX_INIT),
                                   deep_token_count(node.PROMPT_DEPTH, layers), vision_width(clip_model))
    return model


@register_method(node="MAPLE", keys=KEYS, build=build_maple_model, vision_prompts=True,
                 doc="docs/methods/deep_prompts.md")
class MaPLe(PromptTrainer):
    """MaPLe: deep text prompts, each coupled to the vision prompt of its layer by a linear map."""
