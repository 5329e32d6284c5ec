"""The shared text pieces: EOT truncation is exact, prompts are built as CoOp builds them."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clipbayes.modeling.prompt_clip import PromptCLIP, initial_context
from clipbayes.modeling.text import ClassPrompts, TextEncoder, count_tokens, eot_positions, tokenize

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
    torch.testing.assert_close(grad_chunked, grad_ref, rtol=1e-5, atol=1e-6)


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
