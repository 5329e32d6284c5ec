"""CLIP's text side, written once: tokenisation, the frozen text encoder with EOT truncation, prompt assembly.

Prompt of class c with M context slots, CoOp's layout (class token at the end):

    [SOS] [v_1 ... v_M] [name_c tokens] [.] [EOT] [pad ...]

CLIP's text attention is causal and the feature is read at the EOT token, so tokens after the last EOT of a batch
never influence any feature: every sequence is cut to T = max(EOT index) + 1 tokens, which gives identical
features for a fraction of the compute.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from clipbayes.compat import import_clip

CLASS_TOKEN_POSITIONS = ("end", "middle", "front")


def tokenize(texts: list[str]) -> torch.Tensor:
    """(N, 77) int64 token ids, as ``clip.tokenize``."""
    return import_clip().tokenize(texts)


def count_tokens(text: str) -> int:
    """Number of BPE tokens of ``text`` (no SOS/EOT)."""
    clip = import_clip()
    return len(clip.clip._tokenizer.encode(text))


def eot_positions(tokens: torch.Tensor) -> torch.Tensor:
    """Index of the EOT token (the largest id in CLIP's vocabulary) in each row of (N, 77) ids."""
    return tokens.argmax(dim=-1)


class TextEncoder(nn.Module):
    """The frozen CLIP text transformer applied to token embeddings.

    forward(embeddings (N, T, D), eot (N,)) -> features (N, E) = ln_final(x)[eot] @ text_projection,
    with T <= 77 tokens (positional embedding and causal mask cut to T). Sequences are processed in chunks of at
    most ``chunk_size`` (0: all at once); with ``checkpointing`` the activations of each chunk are recomputed in
    the backward pass instead of stored.
    """

    def __init__(self, clip_model, chunk_size: int = 0, checkpointing: bool = False):
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.token_embedding = clip_model.token_embedding
        self.chunk_size = chunk_size
        self.checkpointing = checkpointing

    @property
    def dtype(self) -> torch.dtype:
        return self.text_projection.dtype

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, T) ids -> (N, T, D) token embeddings."""
        return self.token_embedding(tokens).type(self.dtype)

    def _encode(self, embeddings: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        length = embeddings.shape[1]
        x = embeddings + self.positional_embedding[:length].type(embeddings.dtype)
        mask = torch.full((length, length), float("-inf"), device=x.device, dtype=x.dtype).triu_(1)
        x = x.permute(1, 0, 2)  # (T, N, D): CLIP's sequence-first layout
        for block in self.transformer.resblocks:
            h = block.ln_1(x)
            x = x + block.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
            x = x + block.mlp(block.ln_2(x))
        x = self.ln_final(x.permute(1, 0, 2)).type(self.dtype)
        rows = torch.arange(x.shape[0], device=x.device).view(-1, *[1] * (eot.dim() - 1))
        return x[rows, eot] @ self.text_projection

    def forward(self, embeddings: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        length = int(eot.max()) + 1
        embeddings = embeddings[:, :length]
        size = self.chunk_size if self.chunk_size > 0 else embeddings.shape[0]
        outputs = []
        for start in range(0, embeddings.shape[0], size):
            chunk, chunk_eot = embeddings[start:start + size], eot[start:start + size]
            if self.checkpointing and torch.is_grad_enabled() and chunk.requires_grad:
                outputs.append(checkpoint(self._encode, chunk, chunk_eot, use_reentrant=False))
            else:
                outputs.append(self._encode(chunk, chunk_eot))
        return torch.cat(outputs)

    def encode_with_tokens(self, embeddings: torch.Tensor, eot: torch.Tensor,
                           positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass: features (N, E) at the EOT tokens and token features (N, P, E) at ``positions`` (P,), both
        after ln_final and text_projection, not normalised (``forward`` reads any (N, P) index the same way)."""
        index = torch.cat([eot.unsqueeze(1), positions.to(eot).expand(eot.shape[0], -1)], dim=1)
        features = self(embeddings, index)
        return features[:, 0], features[:, 1:]

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Hand-crafted prompts -> (N, E) features (not normalised)."""
        device = self.text_projection.device
        tokens = tokenize(texts).to(device)
        return self(self.embed(tokens), eot_positions(tokens))


class ClassPrompts(nn.Module):
    """Frozen token embeddings of the class prompts, with M slots for learnable context vectors.

    forward(ctx) with ctx of shape (..., K, M, D), K in {1, C} (shared or class-specific context, any leading
    sample/image dims) -> prompt embeddings (..., C, T, D) with T = max EOT index + 1, and ``self.eot`` (C,).
    Class token position: ``end``  [SOS][ctx][name][.][EOT];  ``front``  [SOS][name][ctx][.][EOT];
    ``middle``  [SOS][ctx[:M//2]][name][ctx[M//2:]][.][EOT]  (CoOp's three layouts).
    """

    def __init__(self, text_encoder: TextEncoder, classnames: list[str], n_ctx: int,
                 ctx_init: str = "", position: str = "end"):
        super().__init__()
        if position not in CLASS_TOKEN_POSITIONS:
            raise ValueError(f"CLASS_TOKEN_POSITION must be one of {CLASS_TOKEN_POSITIONS}, got '{position}'")
        names = [name.replace("_", " ") for name in classnames]
        prefix = ctx_init.replace("_", " ") if ctx_init else " ".join(["X"] * n_ctx)
        tokens = tokenize([f"{prefix} {name}." for name in names]).to(text_encoder.text_projection.device)
        eot = eot_positions(tokens)
        length = int(eot.max()) + 1
        with torch.no_grad():
            embedding = text_encoder.embed(tokens[:, :length])
        self.n_ctx = n_ctx
        self.position = position
        self.register_buffer("eot", eot, persistent=False)
        self.register_buffer("token_prefix", embedding[:, :1].clone(), persistent=False)
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx:].clone(), persistent=False)
        name_lengths = [count_tokens(name) for name in names]
        self.register_buffer("order", self._token_order(name_lengths, n_ctx, length, position), persistent=False)

    @staticmethod
    def _token_order(name_lengths: list[int], n_ctx: int, length: int, position: str) -> torch.Tensor | None:
        """(C, T) source index of each output token in [SOS | ctx | name | rest]; None for ``end``."""
        if position == "end":
            return None
        rows = []
        for n_name in name_lengths:
            ctx = list(range(1, 1 + n_ctx))
            name = list(range(1 + n_ctx, 1 + n_ctx + n_name))
            rest = list(range(1 + n_ctx + n_name, length))
            if position == "front":
                rows.append([0] + name + ctx + rest)
            else:
                half = n_ctx // 2
                rows.append([0] + ctx[:half] + name + ctx[half:] + rest)
        return torch.tensor(rows, dtype=torch.long)

    @property
    def num_classes(self) -> int:
        return self.token_prefix.shape[0]

    def forward(self, ctx: torch.Tensor) -> torch.Tensor:
        n_classes = self.num_classes
        lead = ctx.shape[:-3]
        ctx = ctx.expand(*lead, n_classes, *ctx.shape[-2:])
        prefix = self.token_prefix.expand(*lead, *self.token_prefix.shape)
        suffix = self.token_suffix.expand(*lead, *self.token_suffix.shape)
        prompts = torch.cat([prefix, ctx.to(prefix.dtype), suffix], dim=-2)
        if self.order is not None:
            index = self.order.view(*([1] * len(lead)), *self.order.shape, 1).expand_as(prompts)
            prompts = prompts.gather(-2, index)
        return prompts
