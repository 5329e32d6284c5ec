"""DeepVPT: deep visual prompt tuning (Jia et al., ECCV 2022) on CLIP's image tower, as in the MaPLe repository's
``VPT`` trainer (not the Bayesian-Prompt-Learning code's ``VPT``, which is our ``BayesianPrompt``).

    V^i (n_v, D_v), i = 0 .. J_v - 1    vision tokens: V^0 appended at the input, V^i in blocks 1 .. J_v - 1
    h_c = g(template(name_c))           frozen hand-crafted class features, encoded once ("a photo of a {}.")
    logits = exp(logit_scale) f(x; V) . h_c,   loss = CE(logits, y)

Nothing text-side is learned; towers, positions and the depth convention: clipbayes/modeling/deep_prompts.py.
"""
from __future__ import annotations

from clipbayes.config import Key, at_least, depth_key, half_cast_key, precision_key, template_keys
from clipbayes.datasets.templates import zeroshot_templates
from clipbayes.engine.trainer import PromptTrainer
from clipbayes.modeling.deep_prompts import DeepPromptCLIP, IndependentPrompts, require_vit, vision_width
from clipbayes.registry import register_method

KEYS = {
    "N_CTX_VISION": Key(2, "n_v, vision prompt tokens", check=at_least(1)),
    **depth_key("PROMPT_DEPTH_VISION", 1, "vision", minimum=1),
    **template_keys(default="a photo of a {}."),
    **half_cast_key(),
    **precision_key("fp32"),
}


def build_deep_vpt_model(cfg, node, clip_model, classnames) -> DeepPromptCLIP:
    require_vit(clip_model, "DeepVPT", cfg.MODEL.BACKBONE.NAME)
    templates = zeroshot_templates(cfg, node.TEMPLATE, node.ENSEMBLE)
    print(f"DeepVPT's frozen text prompt template(s): {templates}")
    model = DeepPromptCLIP(clip_model, classnames, vision_prompts=True, round_to_half=node.HALF_CAST,
                           templates=templates)
    layers = len(clip_model.visual.transformer.resblocks)
    model.learner = IndependentPrompts(None, 0, min(node.PROMPT_DEPTH_VISION, layers), node.N_CTX_VISION,
                                       vision_width(clip_model), model.dtype, model.handcrafted_features.device)
    return model


@register_method(node="DEEP_VPT", keys=KEYS, build=build_deep_vpt_model, vision_prompts=True,
                 doc="docs/methods/deep_prompts.md")
class DeepVPT(PromptTrainer):
    """DeepVPT: deep visual prompt tuning of the image tower, frozen hand-crafted text prompts."""
