"""Each shared prompt prefix through the text tower once: the class suffixes attend to its cached keys and values.

CLIP's text attention is causal: token t of a sequence attends to tokens 1..t only. When the C prompts of a set
begin with the same p tokens (the prefix [SOS][ctx_1 .. ctx_M] of a shared context with the class name at the end:
one set for CoOp, one per Monte Carlo sample for BayesianPrompt, one per image for CoCoOp), the prefix's hidden
states are the same in every layer for all C prompts. So per set and per block, with h = ln_1(x):

    prefix (p tokens, once):    q_P, K_P, V_P = h_P W_q, h_P W_k, h_P W_v
                                x_P <- x_P + A(q_P; K_P, V_P; causal) W_o,   x_P <- x_P + MLP(ln_2(x_P))
    suffix of class c (s_c):    q_S, K_S, V_S = h_S W_q, h_S W_k, h_S W_v
                                a_t = softmax([q_t K_P^T, q_t K_{S, <=t}^T] / sqrt(d)) [V_P; V_{S, <=t}]
                                x_S <- x_S + a W_o,   x_S <- x_S + MLP(ln_2(x_S))

(per head; the same projections and MLP as CLIP's block). Prefix tokens never see a suffix, so the prefix is a
sequence of its own; each suffix sees the whole prefix and its own earlier tokens, exactly as in the full
sequence. The feature of class c is ln_final(x_S)[EOT_c - p] @ text_projection. Work per set: p + sum_c s_c
token passes instead of sum_c (p + s_c); deep prompt tokens (positions 1..n) live inside the prefix.

:func:`encode_shared` runs it over the length buckets of the text encoder, applied to the suffixes (each bucket's
suffixes padded to its own longest), in chunks of at most the encoder's chunk size, each chunk recomputed in the
backward pass with text checkpointing. The prefix is computed once per call; its keys and values are shared by
every bucket and chunk (gradients from all of them flow back into it).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint


def project(attn, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """q (scaled by 1/sqrt(d)), k, v of ``nn.MultiheadAttention`` ``attn`` for tokens x (..., T, D): each
    (..., H, T, d)."""
    heads = attn.num_heads
    q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.unflatten(-1, (heads, t.shape[-1] // heads)).transpose(-3, -2) for t in (q, k, v))
    return q / math.sqrt(q.shape[-1]), k, v


def causal_mask(length: int, like: Tensor) -> Tensor:
    """(length, length) additive causal mask in the dtype and on the device of ``like``: -inf above the diagonal."""
    return torch.full((length, length), float("-inf"), device=like.device, dtype=like.dtype).triu_(1)


def merge(attn, heads_out: Tensor) -> Tensor:
    """(..., H, T, d) head outputs -> (..., T, D) through the output projection."""
    return F.linear(heads_out.transpose(-3, -2).flatten(-2), attn.out_proj.weight, attn.out_proj.bias)


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """softmax(q k^T + mask) v with the softmax in at least float32."""
    weights = torch.softmax((q @ k.transpose(-1, -2) + mask).float(), dim=-1).to(v.dtype)
    return weights @ v


def prefix_pass(blocks, prefix: Tensor, deep: tuple, replace) -> list[tuple[Tensor, Tensor]]:
    """The prefixes (S, p, D) through every block; the keys and values (S, H, p, d) of each block."""
    cached = []
    mask = causal_mask(prefix.shape[1], prefix)
    x = prefix
    for i, block in enumerate(blocks):
        if 1 <= i <= len(deep):
            x = replace(x, deep[i - 1])
        q, k, v = project(block.attn, block.ln_1(x))
        x = x + merge(block.attn, attend(q, k, v, mask))
        x = x + block.mlp(block.ln_2(x))
        cached.append((k, v))
    return cached


def attend_after_prefix(q: Tensor, k: Tensor, v: Tensor, k_prefix: Tensor, v_prefix: Tensor, mask: Tensor) -> Tensor:
    """Suffix queries q (S, n, H, s, d) over the set's prefix k_prefix, v_prefix (S, 1, H, p, d) and their own
    causal k, v: one softmax over the p + s scores, the prefix never copied per suffix (broadcast matmuls)."""
    p = k_prefix.shape[-2]
    scores = torch.cat([q @ k_prefix.transpose(-1, -2), q @ k.transpose(-1, -2) + mask], dim=-1)
    weights = torch.softmax(scores.float(), dim=-1).to(v.dtype)
    return weights[..., :p] @ v_prefix + weights[..., p:] @ v


def suffix_pass(blocks, suffix: Tensor, cached: list) -> Tensor:
    """Suffixes (S, n, s, D) of the S sets through every block, attending to their set's prefix; -> (S, n, s, D)."""
    mask = causal_mask(suffix.shape[2], suffix)
    x = suffix
    for block, (k_prefix, v_prefix) in zip(blocks, cached):
        q, k, v = project(block.attn, block.ln_1(x))  # (S, n, H, s, d)
        x = x + merge(block.attn, attend_after_prefix(q, k, v, k_prefix.unsqueeze(1), v_prefix.unsqueeze(1), mask))
        x = x + block.mlp(block.ln_2(x))
    return x


def _features(encoder, suffix: Tensor, eot: Tensor, *flat_cache: Tensor) -> Tensor:
    """Suffix tokens (S, n, s, D) -> features (S, n, E) read at ``eot`` (n,) positions within the suffix."""
    cached = list(zip(flat_cache[0::2], flat_cache[1::2]))
    x = encoder.ln_final(suffix_pass(encoder.transformer.resblocks, suffix, cached)).type(encoder.dtype)
    return x[:, torch.arange(x.shape[1], device=x.device), eot] @ encoder.text_projection


def encode_shared(encoder, embeddings: Tensor, buckets, length: int, deep: tuple = ()) -> Tensor:
    """Features (S x C, E) of S sets of C sequences (row s * C + c: class c of set s) whose first ``length`` tokens
    are the same within each set, from token embeddings (S x C, T, D): the encoder's positional embedding, deep
    prompts, length buckets, chunking and checkpointing, and the prefix encoded once per set."""
    n_seq = buckets.num_sequences
    sets = embeddings.reshape(-1, n_seq, *embeddings.shape[1:])  # (S, C, T, D)
    position = encoder.positional_embedding.type(embeddings.dtype)
    prefix = sets[:, 0, :length] + position[:length]

    def replace(x, prompt):
        return encoder.replace_deep(x.permute(1, 0, 2), prompt).permute(1, 0, 2)

    cached = prefix_pass(encoder.transformer.resblocks, prefix, deep, replace)
    flat_cache = [t for pair in cached for t in pair]
    outputs = []
    for index, padded in buckets:
        suffix = sets[:, :, length:padded].index_select(1, index) + position[length:padded]
        eot = buckets.eot[index] - length
        size = max(1, encoder.chunk_size // sets.shape[0]) if encoder.chunk_size > 0 else index.shape[0]
        for start in range(0, index.shape[0], size):
            chunk, chunk_eot = suffix[:, start:start + size], eot[start:start + size]
            if encoder.checkpointing and torch.is_grad_enabled() and (
                    chunk.requires_grad or any(t.requires_grad for t in flat_cache)):
                outputs.append(checkpoint(_features, encoder, chunk, chunk_eot, *flat_cache, use_reentrant=False))
            else:
                outputs.append(_features(encoder, chunk, chunk_eot, *flat_cache))
    features = torch.cat(outputs, dim=1)  # (S, C, E) in bucket order
    return features.index_select(1, buckets.inverse).reshape(-1, features.shape[-1])
