"""Shared prompt prefixes encoded once (clipbayes/modeling/shared_prefix.py).

* The attention of a suffix over a cached prefix equals a slow re-statement: every sequence whole, at full length,
  through CLIP's own blocks (nn.MultiheadAttention with CLIP's causal mask), one at a time.
* For every registered method with a learner, on the tiny CLIPs with synthetic and real class names: the loss and
  the gradient of every learnable tensor, and the prediction, equal the whole-prompt path to 1e-5 relative (a
  gradient where float32 itself is coarser than that: no further from float64 than the whole path); with text
  chunking and checkpointing too. The golden outputs of the official code (tests/test_golden_baselines.py) hold
  on the shared path, the default.
* The prefix is what the prompts share: [SOS][ctx] plus the fixed words every class has; none for class-specific
  contexts; the class token in the middle or at the front uses whole prompts (said once).
"""
from __future__ import annotations

import copy
import json
import os.path as osp

import pytest
import torch
import torch.nn as nn

from clipbayes.compat import dassl_available, import_clip
from clipbayes.modeling.clip_loader import build_tiny_clip
from clipbayes.modeling.text import ClassPrompts, TextEncoder
from support import GOLDEN, ROOT, requires_dassl

if dassl_available():
    from clipbayes.config import default_cfg
    from clipbayes.registry import get_method, list_methods

    TRAINABLE = [m.name for m in list_methods() if m.trainable]
else:
    TRAINABLE = []

AIRCRAFT = json.load(open(osp.join(ROOT, "benchmarks", "classnames.json")))["classnames"]["fgvc_aircraft"][:12]


def golden_clip():
    state = torch.load(osp.join(GOLDEN, "tiny_clip_vit.pt"), map_location="cpu", weights_only=True)
    return import_clip().model.build_model(dict(state)).float().eval().requires_grad_(False)


def slow_features(clip_model, embeddings, eot):
    """Each sequence whole and alone through CLIP's blocks (their own 77 x 77 causal mask)."""
    out = []
    for row in range(embeddings.shape[0]):
        x = (embeddings[row:row + 1] + clip_model.positional_embedding).permute(1, 0, 2)
        x = clip_model.transformer(x)
        out.append(clip_model.ln_final(x[eot[row], 0]) @ clip_model.text_projection)
    return torch.stack(out)


def test_suffixes_over_a_cached_prefix_equal_whole_sequences():
    clip_model = golden_clip()
    encoder = TextEncoder(clip_model)
    prompts = ClassPrompts(encoder, AIRCRAFT, 6)
    ctx = torch.randn(3, 1, 6, 64, generator=torch.Generator().manual_seed(0)) * 0.3  # 3 sets sharing a context
    embeddings = prompts(ctx).reshape(-1, *prompts(ctx).shape[-2:])
    with torch.no_grad():
        shared = encoder(embeddings, prompts.buckets, shared_prefix=prompts.shared_prefix(ctx))
        whole = torch.cat([slow_features(clip_model, full, prompts.eot) for full in
                           torch.nn.functional.pad(embeddings, (0, 0, 0, 77 - embeddings.shape[1])).split(
                               len(AIRCRAFT))])
    assert prompts.shared_prefix(ctx) == 1 + 6 + 1  # [SOS], 6 context tokens, and the "7" of every "7x7-..." name
    torch.testing.assert_close(shared, whole, rtol=1e-5, atol=1e-5)


def test_the_prefix_is_what_every_class_prompt_shares():
    encoder = TextEncoder(golden_clip())
    assert ClassPrompts(encoder, ["class 1", "class 2"], 4).common_prefix == 1 + 4 + 1  # "class" too
    assert ClassPrompts(encoder, ["dog", "cat"], 2, "a photo of a").common_prefix == 1 + 2 + 2  # "of a"
    specific = torch.zeros(2, 4, 64)
    assert ClassPrompts(encoder, ["dog", "cat"], 4).shared_prefix(specific.unsqueeze(0)) == 0  # one ctx per class


@pytest.mark.parametrize("position", ["middle", "front"])
def test_other_class_token_positions_use_whole_prompts_and_say_so(position, capsys):
    prompts = ClassPrompts(TextEncoder(golden_clip()), ["dog", "cat"], 4, position=position)
    assert prompts.shared_prefix(torch.zeros(1, 4, 64)) == 0
    assert f"Class token at the {position}: every class prompt goes through the text tower whole" in \
        capsys.readouterr().out


def _step(name: str, clip_model, classnames, share: bool, dtype=torch.float32, **clip_keys):
    """Loss, gradients of the learner and the prediction of one seeded step of ``name`` (in ``dtype``)."""
    method = get_method(name)
    cfg = default_cfg()
    cfg.TRAINER[method.node].PREC = "fp32"
    cfg.MODEL.CLIP.update(PREFIX_SHARING=share, **clip_keys)
    torch.manual_seed(0)
    model = method.trainer.make_prompt_model(cfg, clip_model, classnames).to(dtype)
    model.requires_grad_(False)
    model.learner.requires_grad_(True)
    images = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(1)).to(dtype)
    labels = torch.tensor([0, 2, 1])
    if model.wants_train_features:
        model.attach_train_features(model.encode_images(images).detach(), labels)
    torch.manual_seed(1)
    loss = model.train_loss(images, labels).loss
    params = [p for p in model.learner.parameters()]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    with torch.no_grad(), model.evaluation_cache():
        torch.manual_seed(2)
        prediction = model.predict(images)
    return loss, grads, prediction


def assert_same(shared, whole, exact=None):
    """Loss to 1e-5 relative; predictions to 1e-5 of their largest score; each gradient to 1e-5 relative (of its
    largest entry), or else no further from ``exact()`` (the same step in float64) than the whole-prompt path is:
    a tensor such as CoCoOp's meta-net gradient sums many products, and there both float32 paths are 2-5e-5 from
    the float64 value (measured: the shared path the closer)."""
    (loss_s, grads_s, pred_s), (loss_w, grads_w, pred_w) = shared, whole
    assert abs(loss_s.item() - loss_w.item()) <= 1e-5 * max(1.0, abs(loss_w.item()))
    assert (pred_s - pred_w).abs().max() <= 1e-5 * pred_w.abs().max()
    grads_64 = None
    for k, (g_s, g_w) in enumerate(zip(grads_s, grads_w)):
        if g_w is None or (g_s - g_w).abs().max() <= 1e-5 * g_w.abs().max():
            continue
        grads_64 = grads_64 or exact()[1]
        error_s, error_w = ((g - grads_64[k]).abs().max().item() for g in (g_s.double(), g_w.double()))
        assert error_s <= 2 * error_w, f"gradient {k}: {error_s:.2e} from float64 against the whole path's {error_w:.2e}"


@requires_dassl
@pytest.mark.parametrize("names", ["synthetic", "aircraft"])
@pytest.mark.parametrize("name", TRAINABLE)
def test_every_method_gets_the_whole_prompt_path_result(name, names, monkeypatch):
    classnames = ["class 0", "class 1", "class 2", "class 3"] if names == "synthetic" else AIRCRAFT[:5]
    clip_model = build_tiny_clip("tiny-vit")

    def exact():
        # CLIP's LayerNorm computes in float32 whatever its input: in the float64 reference, in the input's dtype
        monkeypatch.setattr(import_clip().model.LayerNorm, "forward", lambda self, x: nn.LayerNorm.forward(self, x))
        return _step(name, copy.deepcopy(clip_model).double(), classnames, False, torch.float64)

    assert_same(_step(name, clip_model, classnames, True), _step(name, clip_model, classnames, False), exact)


@requires_dassl
@pytest.mark.parametrize("name", ["CoOp", "BayesianPrompt", "MaPLe"])
def test_chunked_and_checkpointed_shared_prefixes_are_exact(name):
    clip_model = build_tiny_clip("tiny-vit")
    chunked = _step(name, clip_model, AIRCRAFT, True, TEXT_CHUNK_SIZE=5, TEXT_CHECKPOINTING=True)
    assert_same(chunked, _step(name, clip_model, AIRCRAFT, False))


@pytest.mark.parametrize("half_cast", [False, True])
def test_deep_prompts_rounded_per_copy_use_whole_prompts(half_cast, monkeypatch):
    """HALF_CAST rounds every inserted copy and its gradient to fp16 (the official MaPLe / IVLP code): one shared
    copy per set cannot repeat that, so those prompts go through the tower whole; without it they are shared."""
    import clipbayes.modeling.text as text

    calls = []
    monkeypatch.setattr(text, "encode_shared", lambda *args: calls.append(args) or torch.zeros(len(AIRCRAFT), 64))
    encoder = TextEncoder(golden_clip())
    encoder.round_prompts_to_half = half_cast
    prompts = ClassPrompts(encoder, AIRCRAFT, 2, "a photo of a")
    ctx = torch.zeros(1, 1, 2, 64)
    deep = (torch.randn(2, 64),)
    features = encoder(prompts(ctx)[0], prompts.buckets, deep, prompts.shared_prefix(ctx))
    assert len(calls) == (0 if half_cast else 1) and features.shape == (len(AIRCRAFT), 64)
