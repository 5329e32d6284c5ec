"""CLIP's image tower run block by block: the global image feature and the patch (spatial) features together,
and a ViT carrying deep prompt tokens.

    encode_image_tokens(visual, images (B, 3, H, W)) -> (global (B, E), patches (B, N, E)), neither normalised
    vit_features(visual, images, prompts) -> (B, E), with the prompt tokens of clipbayes/modeling/deep_prompts.py

ViT (``VisionTransformer``): the transformer's output tokens after ``ln_post`` and ``proj``; token 0 (the class
token) is the global feature CLIP returns, tokens 1..N are the N = (H / patch)^2 patch features.

ResNet (``ModifiedResNet``): the attention pool over the final (H/32 x W/32) feature map x, with its positional
embedding added. The global feature is CLIP's: the pooled query token (the spatial mean) attending to all tokens,
then ``c_proj``. The N = (H/32)^2 spatial features are the value projections of the spatial tokens through the
output projection, c_proj(v_proj(x_i)) (what the pool returns for a token attending only to itself; as in
MaskCLIP's dense CLIP features).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from clipbayes.modeling.text import prompt_copies, replace_prompt_tokens


def has_patch_features(visual) -> bool:
    """Whether ``encode_image_tokens`` knows this image tower (CLIP's ViT or ModifiedResNet)."""
    return is_vit(visual) or hasattr(visual, "attnpool")


def encode_image_tokens(visual, images: Tensor) -> tuple[Tensor, Tensor]:
    """One pass through ``visual``: (global feature (B, E), patch features (B, N, E)), as computed by CLIP."""
    if is_vit(visual):
        return _vit_tokens(visual, images)
    if hasattr(visual, "attnpool"):
        return _resnet_tokens(visual, images)
    raise TypeError(f"No patch features for an image encoder of type {type(visual).__name__}: CLIP's "
                    f"VisionTransformer and ModifiedResNet are supported.")


def is_vit(visual) -> bool:
    """Whether the image tower is CLIP's VisionTransformer (the only one that takes prompt tokens)."""
    return hasattr(visual, "class_embedding")


def vit_blocks(visual, images: Tensor, prompts: tuple | list = (), round_to_half: bool = False) -> Tensor:
    """CLIP's ViT run block by block: the tokens (B, 1 + N + n, width) after the last block, before ln_post.

    ``prompts`` V^0 .. V^K, each (n, width) (clipbayes/modeling/deep_prompts.py): V^0 is appended after the
    positional embedding, before ln_pre; V^i replaces the last n tokens before block i. With no prompts the
    operations are those of ``VisionTransformer.forward``, in its order.
    """
    x = visual.conv1(images.type(visual.conv1.weight.dtype))  # (B, width, grid, grid)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # (B, N, width)
    cls = visual.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype,
                                                           device=x.device)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    if prompts:  # V^0 appended after the positional embedding
        x = torch.cat([x, prompt_copies(prompts[0], x.shape[0], x.dtype, round_to_half).permute(1, 0, 2)], dim=1)
    x = visual.ln_pre(x).permute(1, 0, 2)  # (T, B, width): CLIP's sequence-first layout
    for i, block in enumerate(visual.transformer.resblocks):
        if 1 <= i < len(prompts):
            x = replace_prompt_tokens(x, None, prompts[i], round_to_half)
        x = block(x)
    return x.permute(1, 0, 2)


def vit_features(visual, images: Tensor, prompts: tuple | list = (), round_to_half: bool = False) -> Tensor:
    """(B, E) image features (not normalised): ln_post of the class token, projected; ``prompts`` as
    :func:`vit_blocks`. Without prompts, CLIP's ``visual(images)``."""
    x = visual.ln_post(vit_blocks(visual, images, prompts, round_to_half)[:, 0, :])
    return x @ visual.proj if visual.proj is not None else x


def _vit_tokens(visual, images: Tensor) -> tuple[Tensor, Tensor]:
    x = visual.ln_post(vit_blocks(visual, images))  # per token: identical to CLIP's ln_post(x[:, 0]) on token 0
    if visual.proj is not None:
        x = x @ visual.proj
    return x[:, 0], x[:, 1:]


def _resnet_tokens(visual, images: Tensor) -> tuple[Tensor, Tensor]:
    x = images.type(visual.conv1.weight.dtype)
    for conv, bn, relu in ((visual.conv1, visual.bn1, visual.relu1), (visual.conv2, visual.bn2, visual.relu2),
                           (visual.conv3, visual.bn3, visual.relu3)):
        x = relu(bn(conv(x)))
    x = visual.avgpool(x)
    x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(x))))
    pool = visual.attnpool
    x = x.flatten(2).transpose(1, 2)  # (B, HW, C)
    x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1) + pool.positional_embedding.to(x.dtype)
    batch, length, width = x.shape
    heads = pool.num_heads
    query = pool.q_proj(x[:, :1]).view(batch, 1, heads, -1).transpose(1, 2)  # only the pooled token is read
    key = pool.k_proj(x).view(batch, length, heads, -1).transpose(1, 2)
    value = pool.v_proj(x)
    pooled = F.scaled_dot_product_attention(query, key, value.view(batch, length, heads, -1).transpose(1, 2))
    pooled = pool.c_proj(pooled.transpose(1, 2).reshape(batch, width))
    return pooled, pool.c_proj(value[:, 1:])
