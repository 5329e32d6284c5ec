"""Deep prompts: learnable tokens inside the layers of CLIP's text and image transformers.

MaPLe, IVLP, deep visual prompt tuning and APEX place prompt tokens at fixed positions of a transformer and
replace them, before each of the first J residual blocks, by fresh learnable tokens (Jia et al., ECCV 2022;
Khattak et al., CVPR 2023). With x^i the tokens entering block i:

    text    x^0 = [SOS, c_1 .. c_n, words .., EOT] + positional embedding       c: the context slots (ClassPrompts)
            x^i[1 .. n] <- P^i                                 blocks i = 1 .. J_t - 1
    vision  x^0 = ln_pre([CLS, patches] + positional embedding ++ V^0)        V^0 appended, no positional embedding
            x^i[last n_v] <- V^i                               blocks i = 1 .. J_v - 1
    blocks i >= J carry the previous block's outputs at the prompt positions (nothing is removed)
    f = ln_post(x^L[CLS]) @ proj,   g_c = ln_final(x^L)[EOT_c] @ text_projection

J (PROMPT_DEPTH) counts the input layer, as the official code does: text J_t = 1 is CoOp's shallow context, vision
J_v = 1 is V^0 alone and J_v = 0 no vision prompt; tokens for blocks beyond the last are not created. The towers
are CLIP's own, unmodified modules run block by block (``TextEncoder``; :func:`clipbayes.modeling.visual.vit_blocks`);
with no prompts each equals CLIP's forward, and the text side keeps its EOT truncation and length buckets.

A learner returns :class:`TowerPrompts` from one call per step (the context, P^1.., V^0..); :class:`DeepPromptCLIP`
is the model every deep-prompt method shares: both towers from one TowerPrompts, class features encoded once per
evaluation (they do not depend on the image), image features with the learned vision prompts (so the trainer
does not reuse cached image features, and ``encode_frozen_images`` gives the prompt-free CLIP's).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from clipbayes.config import ConfigError
from clipbayes.modeling.contract import TrainOutput
from clipbayes.modeling.prompt_clip import PromptCLIP, handcrafted_text_features, initial_context
from clipbayes.modeling.text import count_tokens
from clipbayes.modeling.visual import is_vit, vit_features

VIT_BACKBONES = "ViT-B/32, ViT-B/16, ViT-L/14, ViT-L/14@336px, toyclip-vit or tiny-vit"


class TowerPrompts(NamedTuple):
    """One step's prompt tokens: ``ctx`` (n_t, D_t) the input-layer context (None: hand-crafted text prompts),
    ``text`` P^1 .. P^{J_t - 1}, each (n_t, D_t), ``vision`` V^0 .. V^{J_v - 1}, each (n_v, D_v)."""

    ctx: Tensor | None
    text: tuple = ()
    vision: tuple = ()


def require_vit(clip_model, method: str, backbone: str) -> None:
    """Vision prompts need CLIP's VisionTransformer: a one-line error otherwise."""
    if not is_vit(clip_model.visual):
        raise ConfigError(f"{method} puts prompt tokens into the image transformer, which "
                          f"{type(clip_model.visual).__name__} ({backbone}) does not have: use a ViT backbone "
                          f"({VIT_BACKBONES})")


def prompt_tokens(count: int, n: int, width: int, dtype: torch.dtype, device=None, std: float = 0.02):
    """``count`` learnable token sets (n, width), each N(0, std^2) from the global RNG (the official init)."""
    return nn.ParameterList([nn.Parameter(torch.empty(n, width, dtype=dtype, device=device).normal_(std=std))
                             for _ in range(count)])


def vision_width(clip_model) -> int:
    """D_v, the width of the ViT's tokens."""
    return clip_model.visual.conv1.out_channels


def deep_token_count(depth: int, layers: int) -> int:
    """Deep token sets for blocks 1 .. J-1 of a tower of ``layers`` blocks (none beyond its last block)."""
    return max(0, min(depth, layers) - 1)


def deep_context(text_encoder, n: int, ctx_init: str) -> Tensor:
    """The input-layer context (n, D): the embeddings of the first n tokens of ``ctx_init`` (a "#" in it stands for
    the class name), or N(0, 0.02^2) draws when it is empty."""
    if not ctx_init:
        return initial_context(text_encoder, n, "")
    words = ctx_init.replace("_", " ").split("#")[0]
    available = count_tokens(words)
    if n > available:
        raise ConfigError(f"the context has {n} tokens but CTX_INIT {ctx_init!r} has {available} before the class "
                          f"name: set N_CTX <= {available}, or CTX_INIT \"\" for a random context of N_CTX tokens")
    return initial_context(text_encoder, available, words)[:n].clone()


class IndependentPrompts(nn.Module):
    """Independent text and vision prompts (IVLP and APEX; deep visual prompts when there is no text context).

    ``ctx`` (n_t, D_t) or None, ``text_tokens`` sets P^1 .. of shape (n_t, D_t), ``vision_tokens`` sets V^0 ..
    of shape (n_v, D_v); the deep tokens are N(0, 0.02^2) draws (the official init).
    """

    def __init__(self, ctx: Tensor | None, text_tokens: int, vision_tokens: int, n_vision: int, width: int,
                 dtype: torch.dtype, device=None):
        super().__init__()
        self.ctx = None if ctx is None else nn.Parameter(ctx)
        n_text, text_width = (0, 0) if ctx is None else ctx.shape
        self.vision = prompt_tokens(vision_tokens, n_vision, width, dtype, device)  # drawn first, as officially
        self.text = prompt_tokens(text_tokens if ctx is not None else 0, n_text, text_width, dtype, device)

    def forward(self) -> TowerPrompts:
        return TowerPrompts(self.ctx, tuple(self.text), tuple(self.vision))


def vision_depth(node) -> int:
    """J_v of the keys of ``clipbayes.config.independent_prompt_keys`` (0 when N_CTX_VISION is 0)."""
    return node.PROMPT_DEPTH_VISION if node.N_CTX_VISION else 0


def independent_prompts(cfg, node, clip_model, model, method: str) -> IndependentPrompts:
    """The learner of the keys of ``clipbayes.config.independent_prompt_keys`` (N_CTX_TEXT, N_CTX_VISION,
    CTX_INIT, PROMPT_DEPTH_TEXT, PROMPT_DEPTH_VISION) for ``model``'s towers."""
    depth = vision_depth(node)
    if depth:
        require_vit(clip_model, method, cfg.MODEL.BACKBONE.NAME)
    ctx = deep_context(model.text_encoder, node.N_CTX_TEXT, node.CTX_INIT)
    vision_layers = len(clip_model.visual.transformer.resblocks) if depth else 0
    return IndependentPrompts(ctx, deep_token_count(node.PROMPT_DEPTH_TEXT, len(clip_model.transformer.resblocks)),
                              min(depth, vision_layers), node.N_CTX_VISION,
                              vision_width(clip_model) if depth else 0, ctx.dtype, ctx.device)


class DeepPromptCLIP(PromptCLIP):
    """The shared model of the deep-prompt methods: its learner returns :class:`TowerPrompts`.

    Text: the context in the slots of ClassPrompts plus P^i in the text blocks, or, without a context, frozen
    hand-crafted prompts (``templates``) encoded once. Image: V^i in the ViT's blocks. logits = exp(logit_scale)
    f . g, cross-entropy (the shared likelihood).
    """

    def __init__(self, clip_model, classnames, vision_prompts: bool, n_ctx: int = 0, ctx_init: str = "",
                 round_to_half: bool = False, templates: list[str] | None = None, **prompt_kwargs):
        super().__init__(clip_model, classnames, n_ctx=n_ctx, ctx_init=ctx_init, ctx_slots=n_ctx or None,
                         **prompt_kwargs)
        self.learned_image_features = vision_prompts
        self.round_to_half = round_to_half
        self.text_encoder.round_prompts_to_half = round_to_half
        if templates is not None:
            self.register_buffer("handcrafted_features",
                                 handcrafted_text_features(self.text_encoder, classnames, templates))

    def tower_prompts(self) -> TowerPrompts:
        return self.learner()

    def text_features(self, prompts: TowerPrompts, normalize: bool = True) -> Tensor:
        """(C, E) class features: the prompted text tower, or the hand-crafted features without a context."""
        if prompts.ctx is None:
            return self.handcrafted_features.type(self.dtype)
        return self.encode_prompts(prompts.ctx.unsqueeze(0), deep=prompts.text, normalize=normalize)

    def image_features(self, images: Tensor, prompts: TowerPrompts, normalize: bool = True) -> Tensor:
        """(B, E) image features with the vision prompts of ``prompts`` (the frozen tower's when it has none)."""
        images = images.type(self.dtype)
        features = (vit_features(self.image_encoder, images, prompts.vision, self.round_to_half)
                    if self.learned_image_features else self.image_encoder(images))
        return F.normalize(features, dim=-1) if normalize else features

    def encode_images(self, images: Tensor) -> Tensor:
        if not self.learned_image_features:
            return self.encode_frozen_images(images)
        return self.image_features(images, self.tower_prompts())

    def training_text_features(self, prompts: TowerPrompts) -> Tensor:
        """(C, E) unit-norm class features of a training step (APEX adapts them)."""
        return self.text_features(prompts)

    def class_features(self) -> Tensor:
        """(C, E) unit-norm class features of a prediction (encoded once per evaluation)."""
        return self.text_features(self.tower_prompts())

    def train_logits(self, images, labels=None) -> TrainOutput:
        prompts = self.tower_prompts()
        image_features = self.image_features(images, prompts)
        return TrainOutput(self.scale() * image_features @ self.training_text_features(prompts).t(),
                           image_features, {})

    def predict_logits(self, image_features: Tensor) -> Tensor:
        return self.scale() * image_features @ self.cached_text_features(self.class_features).t()
