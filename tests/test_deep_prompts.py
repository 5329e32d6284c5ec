"""Deep prompts (clipbayes/modeling/deep_prompts.py) and the methods built on them: MaPLe, IVLP, DeepVPT, APEX.

* The towers with prompts off are CLIP's own forward, bit for bit; with prompts they equal a slow re-statement that
  runs CLIP's blocks one sequence at a time at full length and swaps the prompt tokens by hand.
* Depth conventions: depth 1 is shallow prompting, IVLP with text depth 1 and no vision tokens is CoOp exactly,
  tokens are not created beyond a tower's last block.
* Golden outputs of the official code (tests/golden/README.md: MaPLe, IVLP, deep language prompting, deep VPT of
  muzairkhattak/multimodal-prompt-learning, APEX of BP_CLIP) on a 3-layer tiny CLIP: logits, loss, the gradient of
  every learnable tensor and the evaluation logits, in pure fp32 and with the official fp16 rounding
  (``HALF_CAST True``); APEX's ensemble on new classes after a checkpoint round trip.
* Gradients reach exactly the learnable tensors; the class features are encoded once per evaluation; a ResNet
  backbone with vision prompts is a one-line error; LogitPrior's zero-shot logits come from the prompt-free tower.
"""
from __future__ import annotations

import os.path as osp

import pytest
import torch

from clipbayes.compat import dassl_available, import_clip
from clipbayes.config import ConfigError
from clipbayes.modeling.deep_prompts import TowerPrompts
from clipbayes.modeling.text import TextEncoder, eot_positions, tokenize
from clipbayes.modeling.visual import vit_features
from support import (GOLDEN, assert_gradients_reach_exactly_the_learner, load_golden, method_node, model_cfg,
                     requires_dassl)

pytestmark = requires_dassl

if dassl_available():
    from clipbayes.registry import get_method


def deep_clip():
    """The 3-layer tiny CLIP of the deep-prompt golden outputs: tiny_clip_vit.pt plus a third block per tower."""
    state = torch.load(osp.join(GOLDEN, "tiny_clip_vit.pt"), map_location="cpu", weights_only=True)
    extra = torch.load(osp.join(GOLDEN, "tiny_clip_deep_extra.pt"), map_location="cpu", weights_only=True)
    model = import_clip().model.build_model({**state, **extra}).float().eval()
    return model.requires_grad_(False)


@pytest.fixture(scope="module")
def inputs():
    return load_golden("inputs.pt")


def build(name: str, classnames, **keys):
    """The method's model on the deep tiny CLIP, frozen but its learner, at fp32 (LEARNER_PREC applied)."""
    method = get_method(name)
    from clipbayes.config import default_cfg
    cfg = default_cfg()
    cfg.TRAINER[method.node].update({"PREC": "fp32", **keys})
    cfg.MODEL.BACKBONE.NAME = "tiny-deep"
    model = method.trainer.make_prompt_model(cfg, deep_clip(), classnames)
    model.requires_grad_(False)
    model.learner.requires_grad_(True)
    return model


def rel(actual, expected) -> float:
    return ((actual - expected).abs().max() / expected.abs().max()).item()


# --- the towers ------------------------------------------------------------------------------------------------------
def slow_text_features(clip_model, embeddings, eot, deep):
    """Each sequence alone, at full length, through CLIP's own blocks; P^i written over positions 1..n by hand."""
    features = []
    for c in range(embeddings.shape[0]):
        x = (embeddings[c:c + 1] + clip_model.positional_embedding).permute(1, 0, 2)  # (77, 1, D)
        for i, block in enumerate(clip_model.transformer.resblocks):
            if 1 <= i <= len(deep):
                x = torch.cat([x[:1], deep[i - 1].unsqueeze(1), x[1 + deep[i - 1].shape[0]:]])
            x = block(x)
        features.append(clip_model.ln_final(x[eot[c], 0]) @ clip_model.text_projection)
    return torch.stack(features)


def slow_image_features(visual, images, prompts):
    """Each image alone through CLIP's ViT blocks; V^0 appended after the positional embedding, V^i over the last
    tokens before block i."""
    features = []
    for b in range(images.shape[0]):
        x = visual.conv1(images[b:b + 1]).flatten(2).transpose(1, 2)[0]  # (N, width)
        x = torch.cat([visual.class_embedding[None], x]) + visual.positional_embedding
        x = visual.ln_pre(torch.cat([x, prompts[0]]))[:, None]  # (T, 1, width)
        for i, block in enumerate(visual.transformer.resblocks):
            if 1 <= i < len(prompts):
                x = torch.cat([x[:-prompts[i].shape[0]], prompts[i][:, None]])
            x = block(x)
        features.append(visual.ln_post(x[0, 0]) @ visual.proj)
    return torch.stack(features)


def test_prompt_free_towers_are_clip_bit_for_bit(inputs):
    clip_model = deep_clip()
    with torch.no_grad():
        assert torch.equal(vit_features(clip_model.visual, inputs["images"]), clip_model.visual(inputs["images"]))
        tokens = tokenize(["a photo of a cat.", "X X Boeing 737-800."])
        encoder = TextEncoder(clip_model)
        torch.testing.assert_close(encoder(encoder.embed(tokens), eot_positions(tokens), deep=()),
                                   clip_model.encode_text(tokens), rtol=1e-5, atol=1e-6)


def test_deep_tokens_equal_a_slow_restatement(inputs):
    clip_model, gen = deep_clip(), torch.Generator().manual_seed(0)
    width = clip_model.ln_final.weight.shape[0]
    deep = [torch.randn(3, width, generator=gen) * 0.5]  # P^1 (block 2 carries block 1's outputs)
    tokens = tokenize([f"X X X {name}." for name in inputs["classnames"]])
    encoder = TextEncoder(clip_model)
    embeddings = encoder.embed(tokens)
    eot = eot_positions(tokens)
    with torch.no_grad():
        fast = encoder(embeddings, eot, deep=deep)  # length buckets, one pass per bucket
        torch.testing.assert_close(fast, slow_text_features(clip_model, embeddings, eot, deep), rtol=1e-5,
                                   atol=1e-5)
        prompts = [torch.randn(2, 64, generator=gen) * 0.5 for _ in range(2)]
        torch.testing.assert_close(vit_features(clip_model.visual, inputs["images"], prompts),
                                   slow_image_features(clip_model.visual, inputs["images"], prompts),
                                   rtol=1e-5, atol=1e-5)


def test_depth_counts_the_input_layer_and_stops_at_the_last_block(inputs):
    names = inputs["classnames"]
    assert len(build("IVLP", names, PROMPT_DEPTH_TEXT=1, PROMPT_DEPTH_VISION=1).learner.text) == 0  # shallow
    deep = build("IVLP", names, PROMPT_DEPTH_TEXT=12, PROMPT_DEPTH_VISION=12).learner  # 3 blocks: 2 deep + input
    assert (len(deep.text), len(deep.vision)) == (2, 3)
    maple = build("MaPLe", names, PROMPT_DEPTH=9).learner
    assert len(maple.text) == 2 and len(maple.couplings) == 3
    assert torch.equal(maple.couplings[1].weight, maple.couplings[2].weight)  # copies of one Linear (official)


def test_text_depth_one_without_vision_tokens_is_coop(inputs):
    names, images = inputs["classnames"], inputs["images"]
    ivlp = build("IVLP", names, N_CTX_TEXT=4, N_CTX_VISION=0, PROMPT_DEPTH_TEXT=1, PROMPT_DEPTH_VISION=0)
    coop = build("CoOp", names, N_CTX=4, CTX_INIT="a photo of a")
    assert not ivlp.learned_image_features and torch.equal(ivlp.learner.ctx, coop.learner.ctx)
    with torch.no_grad():
        assert torch.equal(ivlp.train_logits(images).logits, coop.train_logits(images).logits)


# --- parity with the official code ---------------------------------------------------------------------------------
def our_name(method: str, official: str) -> str:
    """The learner's parameter name of an official parameter name (docs/methods/deep_prompts.md, apex.md)."""
    name = official.replace("prompt_learner.", "")
    if method == "MaPLe":
        name = name.replace("proj.", "couplings.0.")
        for k in range(8):
            name = name.replace(f"compound_prompts_text.{k}", f"text.{k}")
            name = name.replace(f"compound_prompt_projections.{k}.", f"couplings.{k + 1}.")
        return name
    if name.startswith("VPT_adapter_text_"):  # APEX's adapter
        return name.replace("VPT_adapter_text_matrix", "adapter_weight").replace("VPT_adapter_text_bias", "adapter_bias")
    name = "vision.0" if name == "image_encoder.VPT" else name
    for i in range(1, 12):
        name = name.replace(f"image_encoder.transformer.resblocks.{i}.VPT_shallow", f"vision.{i}")
        name = name.replace(f"text_encoder.transformer.resblocks.{i}.VPT_shallow", f"text.{i - 1}")
    return f"prompts.{name}" if method == "APEX" else name  # APEX's learner holds IVLP's prompts


CASES = {  # golden file -> (our method, its keys in the official case)
    "maple": ("MaPLe", dict(N_CTX=2, CTX_INIT="a photo of a", PROMPT_DEPTH=2)),
    "ivlp": ("IVLP", dict(N_CTX_TEXT=2, N_CTX_VISION=2, PROMPT_DEPTH_TEXT=2, PROMPT_DEPTH_VISION=2)),
    "ivlp_lang_only": ("IVLP", dict(N_CTX_TEXT=4, N_CTX_VISION=0, PROMPT_DEPTH_TEXT=2, PROMPT_DEPTH_VISION=0)),
    "vpt": ("DeepVPT", dict(N_CTX_VISION=4, PROMPT_DEPTH_VISION=2)),
    "apex": ("APEX", dict(N_CTX_TEXT=2, N_CTX_VISION=2, PROMPT_DEPTH_TEXT=2, PROMPT_DEPTH_VISION=2)),
}
# (expectation set, HALF_CAST, tolerance). Pure fp32: 1e-5 relative to each tensor's largest entry. With the
# official fp16 rounding of every inserted copy, the gradient of each copy is rounded to fp16 before the copies are
# summed, and float32 noise moves a value across a rounding boundary: a gradient may differ by one fp16 rounding
# step of a copy, 2^-11 = 4.9e-4 of its size (measured: up to 1.2e-4).
HALF_STEP = 2.0 ** -11
VARIANTS = {"maple": [("expected_no_half_cast", False, 1e-5), ("expected", True, HALF_STEP)],
            "ivlp": [("expected_no_half_cast", False, 1e-5), ("expected", True, HALF_STEP)],
            "ivlp_lang_only": [("expected_no_half_cast", False, 1e-5), ("expected", True, HALF_STEP)],
            "vpt": [("expected_no_half_cast", False, 1e-5), ("expected", True, HALF_STEP)],
            "apex": [("expected_clean_frozen", False, 1e-5)]}


def golden_model(case: str, half_cast: bool, classnames=None):
    golden = load_golden(f"{case}.pt")
    method, keys = CASES[case]
    model = build(method, classnames or golden["config"]["inputs"]["classnames"], HALF_CAST=half_cast, **keys)
    learned = dict(model.learner.named_parameters())
    with torch.no_grad():
        for official, value in golden["params"].items():
            if not official.startswith("clip_model_temp"):  # APEX's second CLIP: not held (docs/methods/apex.md)
                learned[our_name(method, official)].copy_(value)
    assert {our_name(method, n) for n in golden["params"] if not n.startswith("clip_model_temp")} == set(learned)
    return golden, model


@pytest.mark.parametrize("case,variant,half_cast,tolerance",
                         [(case, *v) for case, variants in VARIANTS.items() for v in variants])
def test_logits_loss_and_gradients_match_the_official_code(inputs, case, variant, half_cast, tolerance):
    golden, model = golden_model(case, half_cast)
    expected = golden[variant]
    out = model.train_loss(inputs["images"], inputs["labels"])
    names = [n for n in golden["params"] if n in expected["grads"]]
    learned = dict(model.learner.named_parameters())
    grads = torch.autograd.grad(out.loss, [learned[our_name(CASES[case][0], n)] for n in names])
    assert rel(out.scores.detach(), expected["logits"]) < 1e-5  # the training logits (a single prediction)
    assert abs(out.loss.item() - expected["loss"].item()) <= 1e-5 * max(1.0, abs(expected["loss"].item()))
    for name, grad in zip(names, grads):
        assert rel(grad, expected["grads"][name]) <= tolerance, (name, rel(grad, expected["grads"][name]))
    with torch.no_grad(), model.evaluation_cache():
        eval_key = "eval_logits_base" if case == "apex" else "eval_logits"
        assert rel(model.predict_logits(model.encode_images(inputs["images"])), expected[eval_key]) < 1e-5


def test_apex_ensemble_on_new_classes_after_a_checkpoint(inputs):
    golden, trained = golden_model("apex", False)
    expected = golden["expected_clean_frozen"]
    new = build("APEX", golden["config"]["inputs"]["new_classnames"], **CASES["apex"][1])
    assert new.learner.trained_class_tokens.shape[0] != trained.learner.trained_class_tokens.shape[0] or \
        not torch.equal(new.learner.trained_class_tokens, trained.learner.trained_class_tokens)
    new.learner.load_state_dict(trained.learner.state_dict())  # the training classes come with the checkpoint
    with torch.no_grad(), new.evaluation_cache():
        torch.testing.assert_close(new.ensemble_weights(), expected["alpha"].view(-1), rtol=1e-5, atol=1e-6)
        logits = new.predict_logits(new.encode_images(inputs["images"]))
    assert rel(logits, expected["eval_logits_new"]) < 1e-5
    with torch.no_grad(), trained.evaluation_cache():
        assert torch.equal(trained.ensemble_weights(), torch.ones(5))  # the training classes: the training model


# --- the methods -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["MaPLe", "IVLP", "DeepVPT", "APEX"])
def test_gradients_reach_exactly_the_learnable_tensors(inputs, name):
    model = build(name, inputs["classnames"], **CASES[{"MaPLe": "maple", "IVLP": "ivlp", "DeepVPT": "vpt",
                                                        "APEX": "apex"}[name]][1])
    with torch.no_grad():  # the adapter starts at the identity, the couplings' deep copies equal: move them
        for p in model.learner.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.train_loss(inputs["images"], inputs["labels"]).loss.backward()
    assert_gradients_reach_exactly_the_learner(model)


def test_class_prompts_are_encoded_once_per_evaluation(inputs, monkeypatch):
    model = build("MaPLe", inputs["classnames"], PROMPT_DEPTH=2)
    calls = []
    encode = type(model.text_encoder).forward
    monkeypatch.setattr(type(model.text_encoder), "forward",
                        lambda self, *a, **k: calls.append(a[0].shape[0]) or encode(self, *a, **k))
    with torch.no_grad(), model.evaluation_cache():
        model.predict(inputs["images"])
        model.predict(inputs["images"][:1])
    assert calls == [len(inputs["classnames"])]


@pytest.mark.parametrize("name", ["MaPLe", "DeepVPT", "APEX", "IVLP"])
def test_vision_prompts_on_a_resnet_are_a_one_line_error(name):
    from clipbayes.modeling.clip_loader import build_tiny_clip
    method = get_method(name)
    node = method_node(method.keys, PREC="fp32")
    with pytest.raises(ConfigError, match=r"does not have: use a ViT backbone \(ViT-B/32, ViT-B/16") as err:
        method.build(model_cfg(backbone="RN50"), node, build_tiny_clip("tiny-rn"), ["a", "b"])
    assert "\n" not in str(err.value) and "ModifiedResNet" in str(err.value)


def test_logit_prior_over_maple_takes_zero_shot_logits_from_the_prompt_free_tower(inputs, monkeypatch):
    from clipbayes.objectives import ove_pg_loss
    model = build("LogitPrior", inputs["classnames"], BASE="MaPLe", LAMBDA_1=0.2)
    base = model.base
    with torch.no_grad():
        frozen = base.encode_frozen_images(inputs["images"])
        zeroshot = base.scale() * frozen @ model.zeroshot_features.t()
        assert not torch.allclose(frozen, base.encode_images(inputs["images"]))  # the vision prompts matter
    noise = torch.randn(1, 3, 4)
    loss = model.train_loss(inputs["images"], inputs["labels"], noise=noise).loss
    logits = base.train_logits(inputs["images"]).logits
    expected, _ = ove_pg_loss(logits, zeroshot, inputs["labels"], lambda_1=0.2, noise=noise)
    torch.testing.assert_close(loss, expected)
