"""IVLP (independent vision-language prompting; Khattak et al., CVPR 2023, the MaPLe repository's baseline):
learnable tokens in the first layers of both towers, with no coupling between them.

    c (n_t, D_t)                        the input-layer text context (the first n_t tokens of CTX_INIT learned)
    P^i (n_t, D_t), i = 1 .. J_t - 1    text tokens of blocks 1 .. J_t - 1, N(0, 0.02^2)
    V^i (n_v, D_v), i = 0 .. J_v - 1    vision tokens: V^0 appended at the input, V^i in blocks 1 .. J_v - 1
    logits = exp(logit_scale) f(x; V) . g_c(c, P),   loss = CE(logits, y)

J_v = 0 (or N_CTX_VISION 0) is deep language prompting; J_t = 1 and J_v = 0 is CoOp. Towers, positions and the
depth convention: clipbayes/modeling/deep_prompts.py.
"""
from __future__ import annotations

from clipbayes.config import independent_prompt_keys, precision_key
from clipbayes.engine.trainer import PromptTrainer
from clipbayes.modeling.deep_prompts import DeepPromptCLIP, independent_prompts, vision_depth
from clipbayes.registry import register_method

KEYS = {**independent_prompt_keys(), **precision_key("fp16")}


def build_ivlp_model(cfg, node, clip_model, classnames) -> DeepPromptCLIP:
    model = DeepPromptCLIP(clip_model, classnames, vision_prompts=vision_depth(node) > 0, n_ctx=node.N_CTX_TEXT, ctx_init=node.CTX_INIT,
                           round_to_half=node.HALF_CAST, text_chunk_size=cfg.MODEL.CLIP.TEXT_CHUNK_SIZE,
                           text_checkpointing=cfg.MODEL.CLIP.TEXT_CHECKPOINTING)
    model.learner = independent_prompts(cfg, node, clip_model, model, "IVLP")
    return model


@register_method(node="IVLP", keys=KEYS, build=build_ivlp_model, vision_prompts=True,
                 doc="docs/methods/deep_prompts.md")
class IVLP(PromptTrainer):
    """IVLP: independent deep prompts in the text and the image transformer."""
