"""PBPrompt's transport conventions (docs/methods/pbprompt.md, "Transport conventions"): the token set read from the
text pass against CLIP's own full forward, the causal-mask fact behind the prompt-token set, the learned navigator
temperature, and switching conventions leaving the likelihood and the KL unchanged.

The navigators and the masked token sets themselves are tested in tests/test_transport.py.
"""
from __future__ import annotations

import itertools

import pytest
import torch

from support import requires_dassl
from test_pbprompt import assert_close, build, noise_for, official_prompt_features, perturb

pytestmark = requires_dassl

CONVENTIONS = [dict(TRANSPORT_TOKENS=tokens, CT_NAVIGATOR=navigator, CT_LEARN_TEMPERATURE=learned)
               for tokens, navigator, learned in itertools.product(("prompt", "with_name"), ("nearest", "farthest"),
                                                                  (False, True))]


@pytest.mark.parametrize("chunk_size", [0, 3])
def test_the_token_set_with_names_is_clips_full_forward_at_those_positions(golden_clip, golden_inputs, chunk_size):
    classnames = golden_inputs["classnames"]
    model = build(golden_clip, classnames, chunk_size=chunk_size, TRANSPORT_TOKENS="with_name")
    ctx = 0.02 * torch.randn(2, len(classnames), 4, model.name_embeddings.shape[1])
    _, tokens = model.encode_prompt_tokens(ctx)
    sizes = model.token_mask.sum(-1)
    assert tokens.shape[2] == int(sizes.max()) and len(set(sizes.tolist())) > 1  # names of different lengths
    for l in range(2):
        for c, expected in enumerate(official_prompt_features(golden_clip, classnames, ctx[l], "with_name")[1]):
            assert int(sizes[c]) == len(expected) > 1 + 4  # [SOS] + b prompt tokens + the name's tokens
            assert_close(tokens[l, c, :len(expected)], expected)


def test_prompt_positions_never_see_the_class_name(golden_clip, golden_inputs):
    """CLIP's causal text mask: with the same prompt tokens for every class, the prompt-token features of all
    classes are equal while their class features differ; the names' positions differ."""
    classnames = golden_inputs["classnames"]
    ctx = (0.02 * torch.randn(1, 1, 4, golden_clip.ln_final.weight.shape[0])).expand(
        1, len(classnames), -1, -1)
    prompt_model = build(golden_clip, classnames, TRANSPORT_TOKENS="prompt")
    features, tokens = prompt_model.encode_prompt_tokens(ctx)
    assert (tokens[0] - tokens[0, :1]).abs().max() < 1e-6
    assert (features[0] - features[0, :1]).abs().max() > 1e-2
    _, with_names = build(golden_clip, classnames, TRANSPORT_TOKENS="with_name").encode_prompt_tokens(ctx)
    assert (with_names[0, :, :5] - with_names[0, :1, :5]).abs().max() < 1e-6  # [SOS] + prompt: still shared
    assert (with_names[0, 0, 5] - with_names[0, 1, 5]).abs().max() > 1e-2  # first name token


def test_switching_conventions_leaves_the_likelihood_and_the_kl_unchanged(golden_clip, golden_inputs):
    images, classnames = golden_inputs["images"], golden_inputs["classnames"]
    outputs = []
    for convention in CONVENTIONS:
        model = build(golden_clip, classnames, TRANSPORT_WEIGHT=0.5, **convention)
        perturb(model)
        outputs.append(model.train_logits(images, noise=noise_for(model)))
    reference = outputs[0]
    for output in outputs[1:]:
        assert torch.equal(output.logits, reference.logits)
        assert torch.equal(output.regularisers["kl"], reference.regularisers["kl"])
    fixed = [float(o.regularisers["transport"].detach()) for o, c in zip(outputs, CONVENTIONS)
             if not c["CT_LEARN_TEMPERATURE"]]
    assert len({round(value, 6) for value in fixed}) == 4  # each token set x navigator transports differently


def test_the_learned_temperature_is_a_learner_parameter_that_trains(golden_clip, golden_inputs):
    images, labels = golden_inputs["images"], golden_inputs["labels"]
    from clipbayes.objectives import likelihood_loss
    model = build(golden_clip, golden_inputs["classnames"], CT_NAVIGATOR="farthest", CT_LEARN_TEMPERATURE=True,
                  CT_TEMPERATURE=0.2)
    assert "navigator_temperature.log_temperature" in dict(model.learner.named_parameters())
    assert "navigator_temperature.log_temperature" in model.learner.state_dict()
    assert float(model.learner.navigator_temperature().detach()) == pytest.approx(0.2)
    output = model.train_logits(images, noise=noise_for(model))
    loss = likelihood_loss(output.logits, labels, output.regularisers).loss
    grad, = torch.autograd.grad(loss, model.learner.navigator_temperature.log_temperature)
    assert grad.abs() > 0
    for transport in ("sinkhorn", "none"):  # no unused parameter where there are no CT navigators
        other = build(golden_clip, golden_inputs["classnames"], CT_LEARN_TEMPERATURE=True, TRANSPORT=transport)
        assert "navigator_temperature.log_temperature" not in dict(other.learner.named_parameters())
