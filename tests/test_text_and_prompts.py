"""The shared text pieces: EOT truncation is exact, prompts are built as CoOp builds them."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clipbayes.modeling.prompt_clip import PromptCLIP, initial_context
from clipbayes.modeling.text import (ClassPrompts, LengthBuckets, TextEncoder, bucket_lengths, count_tokens,
                                     eot_positions, token_read_buckets, tokenize)

CLASSNAMES = ["abyssinian", "american_bulldog", "Boeing 737-800", "2012 BMW M3 coupe", "banded"]


def test_truncated_encoder_equals_clip_encode_text(golden_clip):
    tokens = tokenize(["a photo of a cat.", "X X X X Boeing 737-800.", "banded texture."])
    expected = golden_clip.encode_text(tokens)
    encoder = TextEncoder(golden_clip)
    full = encoder(encoder.embed(tokens), eot_positions(tokens))  # cut to max EOT + 1 inside
    torch.testing.assert_close(full, expected, rtol=1e-5, atol=1e-6)
    assert int(eot_positions(tokens).max()) + 1 < tokens.shape[1]  # the cut really removed tokens


def test_chunked_and_checkpointed_encoder_are_exact(golden_clip):
    tokens = tokenize([f"a photo of a {n}." for n in CLASSNAMES])
    embeddings = TextEncoder(golden_clip).embed(tokens).detach().requires_grad_(True)
    reference = TextEncoder(golden_clip)(embeddings, eot_positions(tokens))
    (grad_ref,) = torch.autograd.grad(reference.sum(), embeddings)
    chunked = TextEncoder(golden_clip, chunk_size=2, checkpointing=True)(embeddings, eot_positions(tokens))
    (grad_chunked,) = torch.autograd.grad(chunked.sum(), embeddings)
    torch.testing.assert_close(chunked, reference, rtol=1e-5, atol=1e-6)
    # float32 rounding relative to the gradient's scale (~150 here): chunks of 2 and one pass of 5 sequences may
    # use different BLAS kernels and threaded reduction orders
    torch.testing.assert_close(grad_chunked, grad_ref, rtol=1e-5, atol=1e-6 * grad_ref.abs().max().item())


def _coop_prompts_full(encoder, classnames, ctx, position):
    """Direct re-statement of CoOp's PromptLearner.forward on full-length (77) prompts, one class at a time."""
    names = [n.replace("_", " ") for n in classnames]
    n_ctx = ctx.shape[-2]
    tokens = tokenize([" ".join(["X"] * n_ctx) + f" {n}." for n in names])
    emb = encoder.embed(tokens)
    rows = []
    for i, name in enumerate(names):
        n_name = count_tokens(name)
        prefix, ctx_i = emb[i, :1], ctx[i] if ctx.dim() == 3 else ctx
        name_tok = emb[i, 1 + n_ctx:1 + n_ctx + n_name]
        rest = emb[i, 1 + n_ctx + n_name:]
        if position == "end":
            rows.append(torch.cat([prefix, ctx_i, name_tok, rest]))
        elif position == "front":
            rows.append(torch.cat([prefix, name_tok, ctx_i, rest]))
        else:
            half = n_ctx // 2
            rows.append(torch.cat([prefix, ctx_i[:half], name_tok, ctx_i[half:], rest]))
    return torch.stack(rows), eot_positions(tokens)


@pytest.mark.parametrize("position", ["end", "middle", "front"])
@pytest.mark.parametrize("class_specific", [False, True])
def test_prompt_assembly_matches_coop(golden_clip, position, class_specific):
    torch.manual_seed(0)
    encoder = TextEncoder(golden_clip)
    n_ctx = 4
    ctx = torch.randn(len(CLASSNAMES), n_ctx, 64) if class_specific else torch.randn(n_ctx, 64)
    prompts = ClassPrompts(encoder, CLASSNAMES, n_ctx, position=position)
    ours = prompts(ctx if class_specific else ctx.unsqueeze(0))
    full, eot = _coop_prompts_full(encoder, CLASSNAMES, ctx, position)
    length = ours.shape[1]
    assert length == int(eot.max()) + 1
    torch.testing.assert_close(ours, full[:, :length])
    torch.testing.assert_close(encoder(ours, prompts.eot), encoder(full, eot))


def test_prompt_assembly_broadcasts_leading_dims(golden_clip):
    encoder = TextEncoder(golden_clip)
    prompts = ClassPrompts(encoder, CLASSNAMES, 4, position="middle")
    ctx = torch.randn(3, 2, 1, 4, 64)  # (L, B, K=1, M, D)
    out = prompts(ctx)
    assert out.shape == (3, 2, len(CLASSNAMES), out.shape[-2], 64)
    torch.testing.assert_close(out[2, 1], prompts(ctx[2, 1]))


def test_context_from_words_reproduces_the_handcrafted_prompt(golden_clip):
    model = PromptCLIP(golden_clip, CLASSNAMES, n_ctx=4, ctx_init="a_photo of a")
    ctx = initial_context(model.text_encoder, 4, "a_photo of a")
    assert ctx.shape == (4, 64)
    ours = model.encode_prompts(ctx.unsqueeze(0))
    expected = F.normalize(golden_clip.encode_text(tokenize([f"a photo of a {n.replace('_', ' ')}." for n in CLASSNAMES])),
                           dim=-1)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)


def test_random_context_init_shapes_and_scale(golden_clip):
    encoder = TextEncoder(golden_clip)
    torch.manual_seed(0)
    shared = initial_context(encoder, 16, "")
    specific = initial_context(encoder, 16, "", n_classes=5)
    assert shared.shape == (16, 64) and specific.shape == (5, 16, 64)
    assert abs(float(specific.std()) - 0.02) < 0.003
    from_words = initial_context(encoder, 16, "a photo of a", n_classes=3)
    assert from_words.shape == (3, 4, 64)
    torch.testing.assert_close(from_words[0], from_words[2])


def test_unknown_class_token_position_is_rejected(golden_clip):
    with pytest.raises(ValueError, match="CLASS_TOKEN_POSITION"):
        ClassPrompts(TextEncoder(golden_clip), CLASSNAMES, 4, position="left")


# --- length buckets ----------------------------------------------------------------------------------------------
LONG_NAMES = CLASSNAMES + ["cat", "dog", "a very long and winding class name with many words in it", "ox", "eel"]


def assert_float32_equal(actual, expected):
    """Equal up to float32 rounding: 1e-6 of the tensor's largest entry (another pass shape sums in another order)."""
    scale = max(1.0, float(expected.detach().abs().max()))
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6 * scale)


def test_bucket_lengths_minimise_padding():
    lengths = [7] * 2 + [8] * 50 + [12] * 10 + [30]  # sorted
    assert bucket_lengths(lengths, max_buckets=1) == [30]
    assert bucket_lengths(lengths, max_buckets=4, tolerance=0.0) == [7, 8, 12, 30]  # exact: one per length
    tops = bucket_lengths(lengths)  # padding the two 7s to 8 costs 2 tokens of 564: within 5%
    assert tops == [8, 12, 30]
    # two buckets: the best split of the sorted lengths, found by trying every split
    padded = {cut: cut * lengths[cut - 1] + (len(lengths) - cut) * 30 for cut in range(1, len(lengths))}
    best_cut = min(padded, key=padded.get)
    assert bucket_lengths(lengths, max_buckets=2, tolerance=0.0) == [lengths[best_cut - 1], 30]


def test_length_buckets_partition_the_set():
    eot = torch.tensor([5, 9, 5, 20, 6, 9, 5, 13])
    buckets = LengthBuckets(eot, max_buckets=3, tolerance=0.0)
    seen = []
    for index, length in buckets:
        assert (eot[index] + 1 <= length).all()
        seen += index.tolist()
    assert sorted(seen) == list(range(len(eot)))
    torch.testing.assert_close(buckets.order[buckets.inverse], torch.arange(len(eot)))
    assert buckets.needed_tokens == int((eot + 1).sum()) and buckets.longest_tokens == 8 * 21
    assert buckets.needed_tokens <= buckets.padded_tokens < buckets.longest_tokens
    assert LengthBuckets(eot, max_buckets=1).lengths == [21]


@pytest.mark.parametrize("chunk_size, checkpointing", [(0, False), (3, True)])
def test_bucketed_encoder_equals_one_length_pass(golden_clip, chunk_size, checkpointing):
    """Features and gradients of S copies of a class set, bucketed vs padded to the longest, to 1e-6 in fp32."""
    encoder = TextEncoder(golden_clip, chunk_size=chunk_size, checkpointing=checkpointing)
    tokens = tokenize([f"a photo of a {n}." for n in LONG_NAMES])
    eot = eot_positions(tokens)
    buckets, single = LengthBuckets(eot), LengthBuckets(eot, max_buckets=1)
    assert len(buckets.lengths) >= 3 and buckets.padded_tokens < single.padded_tokens
    copies = 3
    embeddings = (encoder.embed(tokens).repeat(copies, 1, 1) + 0.01 * torch.randn(copies * len(LONG_NAMES), 77, 64,
                  generator=torch.Generator().manual_seed(0))).requires_grad_(True)
    weights = torch.randn(copies * len(LONG_NAMES), golden_clip.text_projection.shape[1])

    bucketed = encoder(embeddings, buckets)
    (grad_bucketed,) = torch.autograd.grad((bucketed * weights).sum(), embeddings)
    reference = encoder(embeddings, single)
    (grad_reference,) = torch.autograd.grad((reference * weights).sum(), embeddings)
    assert_float32_equal(bucketed, reference)
    assert_float32_equal(grad_bucketed, grad_reference)
    # the plain (N,) EOT positions give the same result, and each row is its own prompt's feature
    assert_float32_equal(encoder(embeddings, eot.repeat(copies)), reference)
    one = encoder(embeddings[len(LONG_NAMES) + 7:len(LONG_NAMES) + 8], eot[7:8])
    assert_float32_equal(one[0], reference[len(LONG_NAMES) + 7])


def test_bucketed_prompts_equal_full_length_clip(golden_clip):
    model = PromptCLIP(golden_clip, LONG_NAMES, n_ctx=4, ctx_init="a photo of a")
    assert len(model.prompts.buckets.lengths) >= 3
    ctx = initial_context(model.text_encoder, 4, "a photo of a")
    texts = [f"a photo of a {n.replace('_', ' ')}." for n in LONG_NAMES]
    expected = F.normalize(golden_clip.encode_text(tokenize(texts)), dim=-1)
    assert_float32_equal(model.encode_prompts(ctx.expand(2, 1, 4, 64))[1], expected)


def test_rows_that_are_not_copies_of_the_set_are_refused(golden_clip):
    encoder = TextEncoder(golden_clip)
    buckets = LengthBuckets(torch.tensor([3, 5, 9]))
    with pytest.raises(ValueError, match="not copies of a set of 3"):
        encoder(torch.zeros(4, 10, 64), buckets)


def test_token_features_are_bucketed_exactly(golden_clip):
    """(N, P) positions read per sequence: features and token features equal the one-length pass's."""
    encoder = TextEncoder(golden_clip)
    tokens = tokenize([f"a photo of a {n}." for n in LONG_NAMES])
    eot = eot_positions(tokens)
    embeddings = (encoder.embed(tokens) + 0.01 * torch.randn(len(LONG_NAMES), 77, 64,
                  generator=torch.Generator().manual_seed(1))).requires_grad_(True)
    positions = torch.arange(1, 5)
    read = token_read_buckets(eot, positions)
    features, token_features = encoder.encode_with_tokens(embeddings, read)
    index = torch.cat([eot.unsqueeze(1), positions.expand(len(LONG_NAMES), -1)], dim=1)
    assert torch.equal(read.eot, index)
    one = encoder(embeddings, LengthBuckets(index, max_buckets=1))
    assert len(read.lengths) >= 3 and one.shape == (len(LONG_NAMES), 5, 64)
    assert_float32_equal(features, one[:, 0])
    assert_float32_equal(token_features, one[:, 1:])
    # S copies of the set (rows s * C + c), as the L prompt samples of PBPrompt: the buckets of one set serve all
    copies_features, copies_tokens = encoder.encode_with_tokens(torch.cat([embeddings, embeddings]), read)
    assert_float32_equal(copies_features, torch.cat([features, features]))
    assert_float32_equal(copies_tokens, torch.cat([token_features, token_features]))
    (grad,) = torch.autograd.grad(token_features.sum() + features.sum(), embeddings)
    (grad_one,) = torch.autograd.grad(one.sum(), embeddings)
    assert_float32_equal(grad, grad_one)
