"""APEX (Yang, Ko, Yun, arXiv 2311.15569; code: BP_CLIP's trainers/apex.py): IVLP's deep prompts, a text adapter,
and at prediction an ensemble with the frozen CLIP weighted by how far the test classes are from the training ones.

    t_c = g_c(c, P),  f = f(x; V)                 the prompted text and image features (IVLP, not normalised)
    a(t) = t W + b                                the text adapter, W (E, E) = I and b = 0 at the start
    training:    logits = s <f / |f|, a(t_c) / |a(t_c)|>,   loss = CE(logits, y)
    prediction:  u_c = frozen text feature of "a photo of a {name_c}." (the towers with the prompts off), for the
                 training classes u_k and the test classes u_c;  S[k, c] = cos(u_k, u_c)
                 d_nn = max(0, 1 - max_k S[k, c]),  d_avg = 1 - mean_k S[k, c]
                 alpha_c = exp(-beta d_avg [d_nn > tau])                       (beta = 4, tau = 0.05)
                 t~_c = alpha_c a(t_c) + (1 - alpha_c) t_c,   alpha = mean_c alpha_c
                 f~ = alpha f(x; V) + (1 - alpha) f_0(x)                        f_0: the prompt-free image tower
                 logits = s <f~ / |f~|, t~_c / |t~_c|>

On the training classes alpha_c = 1: the prediction is the training model's. The training classes are kept as
their prompts' token ids in the learner (``trained_class_tokens``, resized on loading), so a model trained on the
base classes predicts the new ones with the distances to the base classes. No second CLIP is held: f_0 and u are
the same frozen towers without prompts.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from clipbayes.config import Key, above, at_least, independent_prompt_keys, precision_key
from clipbayes.engine.trainer import PromptTrainer
from clipbayes.modeling.deep_prompts import DeepPromptCLIP, independent_prompts, vision_depth
from clipbayes.modeling.text import eot_positions, tokenize
from clipbayes.registry import register_method

KEYS = {
    **independent_prompt_keys(ctx_init="a photo of a #.", text_depth=1, vision_depth=12),
    "ENSEMBLE_BETA": Key(4.0, "beta of alpha_c = exp(-beta d_avg) (official: 4)", check=at_least(0, integer=False)),
    "ENSEMBLE_THRESHOLD": Key(0.05, "tau: a test class within this cosine distance of a training class keeps "
                                    "alpha_c = 1 (official: 0.05)", check=above(-1)),
    **precision_key("fp16"),
}


class AdaptedPrompts(nn.Module):
    """APEX's learner: IVLP's ``prompts``, the text adapter ``adapter_weight`` (E, E) = I and ``adapter_bias``
    (1, E) = 0, and the training classes' prompt tokens ``trained_class_tokens`` (C_train, T), loaded whatever
    C_train is (a model built for the new classes takes the base classes from the checkpoint)."""

    resizable_state = ("trained_class_tokens",)

    def __init__(self, prompts: nn.Module, embed_dim: int, class_tokens: torch.Tensor):
        super().__init__()
        self.prompts = prompts
        like = prompts.ctx
        self.adapter_weight = nn.Parameter(torch.eye(embed_dim, dtype=like.dtype, device=like.device))
        self.adapter_bias = nn.Parameter(torch.zeros(1, embed_dim, dtype=like.dtype, device=like.device))
        self.register_buffer("trained_class_tokens", class_tokens.clone())

    def forward(self):
        return self.prompts()

    def adapt(self, text: torch.Tensor) -> torch.Tensor:
        """a(t) = t W + b on (..., E) features."""
        return text @ self.adapter_weight.to(text.dtype) + self.adapter_bias.to(text.dtype)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "trained_class_tokens")
        if saved is not None and saved.shape != self.trained_class_tokens.shape:
            self.trained_class_tokens = torch.empty_like(saved, device=self.trained_class_tokens.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class APEXModel(DeepPromptCLIP):
    def __init__(self, clip_model, classnames, beta: float, threshold: float, **kwargs):
        super().__init__(clip_model, classnames, **kwargs)
        self.beta, self.threshold = beta, threshold
        # the hand-written prompts of the classes (CTX_INIT with "#" replaced by the name), whose frozen features u_c
        # give the ensemble weights
        self.register_buffer("class_tokens", tokenize(self.prompts.texts), persistent=False)

    @torch.no_grad()
    def frozen_text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """u (C, E): the text tower without prompts on these prompt tokens (not normalised)."""
        encoder = self.text_encoder
        return encoder(encoder.embed(tokens.to(self.logit_scale.device)), eot_positions(tokens).to(
            self.logit_scale.device)).float()

    def ensemble_weights(self) -> torch.Tensor:
        """alpha_c (C,) of the current classes against the training classes (once per evaluation)."""
        def compute():
            trained = F.normalize(self.frozen_text_features(self.learner.trained_class_tokens), dim=-1)
            test = F.normalize(self.frozen_text_features(self.class_tokens), dim=-1)
            similarity = trained @ test.t()  # (C_train, C)
            nearest = (1 - similarity.max(dim=0).values).clamp(min=0)
            average = 1 - similarity.mean(dim=0)
            return torch.exp(-self.beta * average * (nearest > self.threshold))
        return self._cached("ensemble_weights", compute)

    def training_text_features(self, prompts) -> torch.Tensor:
        """a(t_c) / |a(t_c)| (C, E)."""
        return F.normalize(self.learner.adapt(self.text_features(prompts, normalize=False)), dim=-1)

    def class_features(self) -> torch.Tensor:
        """t~_c / |t~_c| (C, E)."""
        text = self.text_features(self.tower_prompts(), normalize=False)
        alpha = self.ensemble_weights().to(text.dtype).unsqueeze(-1)
        return F.normalize(alpha * self.learner.adapt(text) + (1 - alpha) * text, dim=-1)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """f~ / |f~| with alpha, the mean ensemble weight of the current classes (f / |f| when alpha = 1)."""
        weight = self.ensemble_weights().mean().item()
        prompted = self.image_features(images, self.tower_prompts(), normalize=False)
        if weight == 1.0:
            return F.normalize(prompted, dim=-1)
        frozen = self.image_encoder(images.type(self.dtype))
        return F.normalize(weight * prompted + (1 - weight) * frozen.to(prompted.dtype), dim=-1)


def build_apex_model(cfg, node, clip_model, classnames) -> APEXModel:
    model = APEXModel(clip_model, classnames, node.ENSEMBLE_BETA, node.ENSEMBLE_THRESHOLD,
                      vision_prompts=vision_depth(node) > 0, n_ctx=node.N_CTX_TEXT, ctx_init=node.CTX_INIT,
                      round_to_half=node.HALF_CAST, text_chunk_size=cfg.MODEL.CLIP.TEXT_CHUNK_SIZE,
                      text_checkpointing=cfg.MODEL.CLIP.TEXT_CHECKPOINTING)
    prompts = independent_prompts(cfg, node, clip_model, model, "APEX")
    model.learner = AdaptedPrompts(prompts, clip_model.text_projection.shape[1], model.class_tokens)
    return model


@register_method(node="APEX", keys=KEYS, build=build_apex_model, vision_prompts=True)
class APEX(PromptTrainer):
    """APEX: IVLP's prompts, a text adapter, and an ensemble with the frozen CLIP by class distance."""
