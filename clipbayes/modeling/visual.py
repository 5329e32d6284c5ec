"""CLIP's image tower run once for the global image feature and the patch (spatial) features together.

    encode_image_tokens(visual, images (B, 3, H, W)) -> (global (B, E), patches (B, N, E)), neither normalised

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


def has_patch_features(visual) -> bool:
    """Whether ``encode_image_tokens`` knows this image tower (CLIP's ViT or ModifiedResNet)."""
    return hasattr(visual, "class_embedding") or hasattr(visual, "attnpool")


def encode_image_tokens(visual, images: Tensor) -> tuple[Tensor, Tensor]:
    """One pass through ``visual``: (global feature (B, E), patch features (B, N, E)), as computed by CLIP."""
    if hasattr(visual, "class_embedding"):
        return _vit_tokens(visual, images)
    if hasattr(visual, "attnpool"):
        return _resnet_tokens(visual, images)
    raise TypeError(f"No patch features for an image encoder of type {type(visual).__name__}: CLIP's "
                    f"VisionTransformer and ModifiedResNet are supported.")


def _vit_tokens(visual, images: Tensor) -> tuple[Tensor, Tensor]:
    x = visual.conv1(images.type(visual.conv1.weight.dtype))  # (B, width, grid, grid)
    x = x.flatten(2).transpose(1, 2)  # (B, N, width)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    x = visual.ln_pre(x)
    x = visual.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
    x = visual.ln_post(x)  # per token: identical to CLIP's ln_post(x[:, 0]) on token 0
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
