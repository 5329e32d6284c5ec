"""CLIP's text side, written once: tokenisation, the frozen text encoder with EOT truncation, prompt assembly.

Prompt of class c with M context slots, CoOp's layout (class token at the end):

    [SOS] [v_1 ... v_M] [name_c tokens] [.] [EOT] [pad ...]

CLIP's text attention is causal and the feature is read at the EOT token, so the tokens after a sequence's EOT never
influence its feature: a sequence needs only its first EOT index + 1 tokens. The encoder groups the sequences by
that length into a few buckets (:class:`LengthBuckets`) and pads each bucket only to its own longest member, which
gives identical features for a fraction of the 77-token compute.
"""
from __future__ import annotations

from collections import Counter

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from clipbayes.compat import import_clip
from clipbayes.modeling.shared_prefix import causal_mask, encode_shared

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


MAX_BUCKETS = 8  # at most this many length buckets per text pass
BUCKET_TOLERANCE = 0.05  # fewest buckets whose padded tokens are within 5% of the tokens needed


def bucket_lengths(lengths: list[int], max_buckets: int = MAX_BUCKETS,
                   tolerance: float = BUCKET_TOLERANCE) -> list[int]:
    """Padded lengths l_1 < ... < l_K of the buckets: a sequence of length n goes to the first l_k >= n.

    For each K the partition of the sorted lengths into K contiguous groups that minimises the padded tokens
    sum_k n_k l_k (n_k sequences padded to the longest of group k) is found by dynamic programming over the
    distinct lengths; the smallest K (<= ``max_buckets``) within ``tolerance`` of the tokens needed, sum of the
    lengths, is kept (more buckets mean more, smaller passes).
    """
    histogram = Counter(lengths)
    values = sorted(histogram)
    counts = [histogram[v] for v in values]
    needed = sum(lengths)
    prefix = [0]
    for c in counts:
        prefix.append(prefix[-1] + c)
    # best[j] = (padded tokens, tops) covering values[:j + 1] with the current number of groups
    best = [(prefix[j + 1] * values[j], [values[j]]) for j in range(len(values))]
    for _ in range(1, max_buckets):
        if best[-1][0] <= (1 + tolerance) * needed:
            break
        best = [min([best[j]] + [(best[i][0] + (prefix[j + 1] - prefix[i + 1]) * values[j], best[i][1] + [values[j]])
                                 for i in range(j)]) for j in range(len(values))]
    return best[-1][1]


class LengthBuckets(nn.Module):
    """The sequences of one set (C EOT positions, or (C, P) positions read per sequence) grouped by the length they
    need (the last position read + 1), computed once per set.

    Iterating gives, per bucket k, the indices of its sequences (a slice of the permutation ``order`` sorting them
    by bucket) and its padded length ``lengths[k]``; ``inverse`` puts bucket-ordered outputs back in the original
    order.
    Token counts for a pass over the set: ``needed_tokens`` (each sequence at its own length),
    ``padded_tokens`` (bucketed), ``longest_tokens`` (every sequence at the longest length).
    """

    def __init__(self, eot: torch.Tensor, max_buckets: int = MAX_BUCKETS, tolerance: float = BUCKET_TOLERANCE):
        super().__init__()
        read = eot.detach().cpu().long()
        lengths = (read.amax(dim=-1) if read.dim() == 2 else read) + 1
        tops = bucket_lengths(lengths.tolist(), max_buckets, tolerance)
        bucket_of = torch.bucketize(lengths, torch.tensor(tops))
        order = torch.argsort(bucket_of, stable=True)
        self.lengths = tops
        self.sizes = torch.bincount(bucket_of, minlength=len(tops)).tolist()
        self.needed_tokens = int(lengths.sum())
        self.padded_tokens = sum(n * length for n, length in zip(self.sizes, tops))
        self.longest_tokens = len(lengths) * tops[-1]
        self.register_buffer("eot", eot.detach().clone(), persistent=False)
        self.register_buffer("order", order.to(eot.device), persistent=False)
        self.register_buffer("inverse", torch.argsort(order).to(eot.device), persistent=False)

    @property
    def num_sequences(self) -> int:
        return self.eot.shape[0]

    def __iter__(self):
        """(index (n_k,), padded length l_k) of each non-empty bucket."""
        start = 0
        for size, length in zip(self.sizes, self.lengths):
            if size:
                yield self.order[start:start + size], length
            start += size


def token_read_buckets(eot: torch.Tensor, positions: torch.Tensor) -> LengthBuckets:
    """The length buckets of reading, in each of C sequences, its EOT token (C,) and then ``positions`` (P,) or
    (C, P): positions (C, 1 + P), for :meth:`TextEncoder.encode_with_tokens`."""
    return LengthBuckets(torch.cat([eot.unsqueeze(1), positions.to(eot).expand(eot.shape[0], -1)], dim=1))


TOKEN_SETS = ("prompt", "with_name")


def prompt_token_positions(eot: torch.Tensor, n_ctx: int, token_set: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (C, K) of a token set in each prompt [SOS][ctx_1 .. ctx_M][name_c][.][EOT] and its mask (C, K).

    ``prompt``: the M context positions 1 .. M (K = M, nothing masked). ``with_name``: positions 0 .. EOT_c - 2,
    i.e. [SOS], the context and the class name's tokens (not "." and EOT), K = max_c(EOT_c - 1); a shorter set is
    padded with position 0, masked out.
    """
    if token_set == "prompt":
        positions = torch.arange(1, 1 + n_ctx).expand(eot.shape[0], -1)
        return positions, torch.ones_like(positions, dtype=torch.bool)
    if token_set == "with_name":
        sizes = eot.detach().cpu().long() - 1
        positions = torch.arange(int(sizes.max())).expand(eot.shape[0], -1)
        mask = positions < sizes.unsqueeze(1)
        return positions.masked_fill(~mask, 0), mask
    raise ValueError(f"unknown token set '{token_set}'; expected one of {TOKEN_SETS}")


def sharable_prefix(buckets: LengthBuckets, prefix: int) -> int:
    """``prefix`` when the sequences of ``buckets`` can share it (one EOT read per sequence, every EOT at or after
    it), else 0."""
    return prefix if prefix and buckets.eot.dim() == 1 and prefix <= int(buckets.eot.min()) else 0


class TextEncoder(nn.Module):
    """The frozen CLIP text transformer applied to token embeddings.

    forward(embeddings (N, T, D), eot) -> features (N, E) = ln_final(x)[eot] @ text_projection, where ``eot`` is
    the (N,) EOT positions, or (N, P) positions to read (features (N, P, E); ``encode_with_tokens``), or the
    :class:`LengthBuckets` of a set of C sequences when the N = S x C rows are S copies of that set (row s * C + c
    holds sequence c). Each length bucket is one pass over its sequences cut to the bucket's length l <= T
    (positional embedding and causal mask cut to l): the same features as one pass at length T. Within a bucket
    sequences are processed in chunks of at most ``chunk_size`` (0: all at once); with ``checkpointing`` the
    activations of each chunk are recomputed in the backward pass instead of stored.

    Deep prompts (``deep``, clipbayes/modeling/deep_prompts.py): P^1 .. P^K, each (n, D), replace the tokens at
    positions 1 .. n (after [SOS], where ClassPrompts puts the context) before blocks 1 .. K of every sequence;
    ``round_prompts_to_half`` rounds each inserted copy to fp16 first, as the official MaPLe / IVLP code does.

    ``shared_prefix`` p > 0 says that the S copies of the set share their first p tokens within each copy (the
    [SOS][ctx] of a shared context): each prefix then goes through the tower once and the class suffixes attend
    to its keys and values (clipbayes/modeling/shared_prefix.py; ``share_prefixes`` False switches it off). Deep
    prompts with ``round_prompts_to_half`` take the whole-sequence path: the official rounding is per inserted
    copy (one per sequence), and so is the rounding of each copy's gradient, which one shared copy cannot repeat.
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
        self.round_prompts_to_half = False
        self.share_prefixes = True

    @property
    def dtype(self) -> torch.dtype:
        return self.text_projection.dtype

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, T) ids -> (N, T, D) token embeddings."""
        return self.token_embedding(tokens).type(self.dtype)

    def _encode(self, embeddings: torch.Tensor, eot: torch.Tensor, *deep: torch.Tensor) -> torch.Tensor:
        length = embeddings.shape[1]
        x = embeddings + self.positional_embedding[:length].type(embeddings.dtype)
        mask = causal_mask(length, x)
        x = x.permute(1, 0, 2)  # (T, N, D): CLIP's sequence-first layout
        for i, block in enumerate(self.transformer.resblocks):
            if 1 <= i <= len(deep):
                x = self.replace_deep(x, deep[i - 1])
            h = block.ln_1(x)
            x = x + block.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
            x = x + block.mlp(block.ln_2(x))
        x = self.ln_final(x.permute(1, 0, 2)).type(self.dtype)
        rows = torch.arange(x.shape[0], device=x.device).view(-1, *[1] * (eot.dim() - 1))
        return x[rows, eot] @ self.text_projection

    def replace_deep(self, x: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        """Sequence-first tokens x (T, N, D) with the deep prompt (n, D) at positions 1 .. n."""
        return replace_prompt_tokens(x, 1, prompt, self.round_prompts_to_half)

    def _encode_chunks(self, embeddings: torch.Tensor, eot: torch.Tensor, deep: tuple) -> torch.Tensor:
        size = self.chunk_size if self.chunk_size > 0 else embeddings.shape[0]
        outputs = []
        for start in range(0, embeddings.shape[0], size):
            chunk, chunk_eot = embeddings[start:start + size], eot[start:start + size]
            if self.checkpointing and torch.is_grad_enabled() and (chunk.requires_grad or
                                                                   any(p.requires_grad for p in deep)):
                outputs.append(checkpoint(self._encode, chunk, chunk_eot, *deep, use_reentrant=False))
            else:
                outputs.append(self._encode(chunk, chunk_eot, *deep))
        return torch.cat(outputs)

    def forward(self, embeddings: torch.Tensor, eot: torch.Tensor | LengthBuckets,
                deep: tuple | list = (), shared_prefix: int = 0) -> torch.Tensor:
        buckets = eot if isinstance(eot, LengthBuckets) else LengthBuckets(eot)
        deep = tuple(deep)
        n_rows, n_seq = embeddings.shape[0], buckets.num_sequences
        if n_rows % n_seq:
            raise ValueError(f"{n_rows} text sequences are not copies of a set of {n_seq} (LengthBuckets)")
        if (self.share_prefixes and sharable_prefix(buckets, shared_prefix)
                and not (deep and self.round_prompts_to_half)):
            return encode_shared(self, embeddings, buckets, shared_prefix, deep)
        copies = n_rows // n_seq
        repeat = (copies,) + (1,) * (buckets.eot.dim() - 1)
        if len(buckets.lengths) == 1:  # one length: no regrouping
            return self._encode_chunks(embeddings[:, :buckets.lengths[0]], buckets.eot.repeat(*repeat), deep)
        sets = embeddings.reshape(copies, n_seq, *embeddings.shape[1:])
        outputs = []
        for index, length in buckets:  # a few buckets: (S, n_k, l_k, D) -> (S, n_k, E)
            group = sets[:, :, :length].index_select(1, index)
            features = self._encode_chunks(group.reshape(-1, length, group.shape[-1]),
                                           buckets.eot[index].repeat(*repeat), deep)
            outputs.append(features.reshape(copies, index.shape[0], *features.shape[1:]))
        return torch.cat(outputs, dim=1).index_select(1, buckets.inverse).reshape(n_rows, *outputs[0].shape[2:])

    def encode_with_tokens(self, embeddings: torch.Tensor,
                           read: LengthBuckets) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass: features (N, E) at the EOT tokens and token features (N, P, E) at the positions of ``read``
        (:func:`token_read_buckets` of the set of C sequences, computed once; N = S x C rows as in ``forward``),
        both after ln_final and text_projection, not normalised."""
        features = self(embeddings, read)
        return features[:, 0], features[:, 1:]

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Hand-crafted prompts -> (N, E) features (not normalised)."""
        device = self.text_projection.device
        tokens = tokenize(texts).to(device)
        return self(self.embed(tokens), eot_positions(tokens))


def prompt_copies(prompt: torch.Tensor, count: int, dtype: torch.dtype, round_to_half: bool = False) -> torch.Tensor:
    """Sequence-first copies (n, count, D) of prompt tokens (n, D) for ``count`` sequences, in ``dtype``; rounded to
    fp16 first with ``round_to_half`` (as the official MaPLe / IVLP code casts every inserted copy)."""
    copies = prompt.unsqueeze(1).expand(prompt.shape[0], count, prompt.shape[-1])
    return (copies.half() if round_to_half else copies).to(dtype)


def replace_prompt_tokens(x: torch.Tensor, start: int | None, prompt: torch.Tensor,
                          round_to_half: bool = False) -> torch.Tensor:
    """Sequence-first tokens x (T, N, D) with the n rows from ``start`` (``None``: the last n rows) replaced by
    :func:`prompt_copies` of ``prompt`` (n, D)."""
    n, tokens = prompt.shape[0], prompt_copies(prompt, x.shape[1], x.dtype, round_to_half)
    if start is None:
        return torch.cat([x[:x.shape[0] - n], tokens])
    return torch.cat([x[:start], tokens, x[start + n:]])


class ClassPrompts(nn.Module):
    """Frozen token embeddings of the class prompts, with M slots for learnable context vectors.

    forward(ctx) with ctx of shape (..., K, M, D), K in {1, C} (shared or class-specific context, any leading
    sample/image dims) -> prompt embeddings (..., C, T, D) with T = max EOT index + 1, and ``self.eot`` (C,) with
    its length buckets ``self.buckets`` (computed once for the class set; pass them to the text encoder).
    Class token position: ``end``  [SOS][ctx][name][.][EOT];  ``front``  [SOS][name][ctx][.][EOT];
    ``middle``  [SOS][ctx[:M//2]][name][ctx[M//2:]][.][EOT]  (CoOp's three layouts).
    The context slots are the first M tokens of the prompt text "ctx_init name." (or "X X .. X name."); words of
    ``ctx_init`` beyond its first M tokens stay fixed tokens (MaPLe's "a photo of a" with M = 2 learns "a photo"
    and keeps "of a"). A ``ctx_init`` holding "#" is a whole template, "#" standing for the name (APEX's
    "a photo of a #.").
    """

    def __init__(self, text_encoder: TextEncoder, classnames: list[str], n_ctx: int,
                 ctx_init: str = "", position: str = "end"):
        super().__init__()
        if position not in CLASS_TOKEN_POSITIONS:
            raise ValueError(f"CLASS_TOKEN_POSITION must be one of {CLASS_TOKEN_POSITIONS}, got '{position}'")
        names = [name.replace("_", " ") for name in classnames]
        prefix = ctx_init.replace("_", " ") if ctx_init else " ".join(["X"] * n_ctx)
        if "#" in prefix and position != "end":
            raise ValueError(f"a CTX_INIT template with '#' ({ctx_init!r}) places the class name itself; "
                             f"CLASS_TOKEN_POSITION must be 'end', got '{position}'")
        self.texts = [prefix.replace("#", name) if "#" in prefix else f"{prefix} {name}." for name in names]
        tokens = tokenize(self.texts).to(text_encoder.text_projection.device)
        eot = eot_positions(tokens)
        length = int(eot.max()) + 1
        with torch.no_grad():
            embedding = text_encoder.embed(tokens[:, :length])
        self.n_ctx = n_ctx
        self.position = position
        self.register_buffer("eot", eot, persistent=False)
        self.buckets = LengthBuckets(eot)
        self.register_buffer("token_prefix", embedding[:, :1].clone(), persistent=False)
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx:].clone(), persistent=False)
        name_lengths = [count_tokens(name) for name in names]
        self.register_buffer("order", self._token_order(name_lengths, n_ctx, length, position), persistent=False)
        # [SOS][ctx] and the fixed tokens after it that every class has (MaPLe's "of a"): shared by the C prompts
        # of one context (clipbayes/modeling/shared_prefix.py); 0 for the other class-token positions
        same = (tokens[:, 1 + n_ctx:length] == tokens[:1, 1 + n_ctx:length]).all(dim=0).long()
        self.common_prefix = 1 + n_ctx + int(same.cumprod(0).sum()) if position == "end" else 0
        if position != "end":
            print(f"Class token at the {position}: every class prompt goes through the text tower whole (a prefix "
                  f"is shared only with the class token at the end)")

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

    def shared_prefix(self, ctx: torch.Tensor) -> int:
        """Leading tokens the C prompts of each context in ``ctx`` (..., K, M, D) have in common: the common prefix
        for a context shared by the classes (K = 1), 0 for class-specific contexts (K = C)."""
        return self.common_prefix if ctx.shape[-3] == 1 else 0

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
