"""The CUDA path of every registered method on the tiny CLIP (marker ``cuda``; skipped without CUDA; run on a GPU
machine by ``benchmarks/gpu_check.py``).

Per method and low precision (``fp16``: half weights; ``amp``: fp32 weights, fp16 autocast; ``bf16``: fp32
weights, bf16 autocast), against the fp32 model with the same weights, inputs and random draws:

* a training step: loss, training predictive softmax(scores) and the learner's gradient agree within TOLERANCES
  (gradients compared by cosine and norm ratio), everything finite;
* prediction (inside ``evaluation_cache``): the predictive distribution agrees within TOLERANCES;
* the trainer's GradScaler step (amp): the learner is updated, and a step whose gradient overflows is skipped and
  halves the scale;
* every random draw of a training step is made on the GPU;
* a training step (forward, backward, SGD step) makes no host-device transfer and no synchronising operation,
  except the ALLOWED_HOST_READS (the logged scalars, ``clipbayes.objectives.loggable``; the Mixup partner count).

The same random draws at every precision: ``torch.randn/rand(_like)`` are drawn in float32 and cast, so a draw
does not depend on the dtype it is asked in. ``CLIPBAYES_TEST_DEVICE=cpu`` runs these tests on the CPU
(half weights and bf16 autocast exist there too): that checks the test code, not the CUDA kernels.
"""
from __future__ import annotations

import contextlib
import math
import os
import os.path as osp
import traceback
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from clipbayes.compat import dassl_available, import_dassl
from support import ROOT, requires_dassl

DEVICE = torch.device(os.environ.get("CLIPBAYES_TEST_DEVICE", "cuda"))

pytestmark = [
    pytest.mark.cuda,
    requires_dassl,
    pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(),
                       reason="CUDA is not available: the CUDA tests run on a GPU machine "
                              "(python benchmarks/gpu_check.py)"),
]

if dassl_available():  # the registry's trainers, the CLI and the demo import Dassl
    import_dassl()
    from dassl.engine import build_trainer as dassl_build_trainer

    from clipbayes.cli import build_parser, setup_cfg
    from clipbayes.config import default_cfg
    from clipbayes.demo import tiny_pipeline_options
    from clipbayes.modeling.clip_loader import build_tiny_clip
    from clipbayes.modeling.precision import apply_precision, autocast
    from clipbayes.registry import list_methods

    METHODS = [m.name for m in list_methods()]
    TRAINABLE = [m.name for m in list_methods() if m.trainable]
else:
    METHODS = TRAINABLE = []

LOW_PRECISIONS = ("fp16", "amp", "bf16")
# Largest differences accepted against fp32 on the tiny CLIP: |loss - loss32| / max(1, |loss32|); max |p - p32| of
# the predictive probabilities; cosine and |norm ratio - 1| of the learner's gradient. On the CPU (half weights,
# bf16 autocast) the largest seen were fp16/amp: loss 1.6e-3, prob 7e-4, cosine 0.9994, ratio 3.3% (CoCoOp);
# bf16: loss 6e-3, prob 4e-3, cosine 0.9915, ratio 9.6% (CoCoOp).
TOLERANCES = {
    "fp16": dict(loss=1e-2, prob=1e-2, grad_cos=0.99, grad_norm=0.1),
    "amp": dict(loss=1e-2, prob=1e-2, grad_cos=0.99, grad_norm=0.1),
    "bf16": dict(loss=4e-2, prob=4e-2, grad_cos=0.97, grad_norm=0.25),
}
CLASSNAMES = ["red square", "green circle", "blue triangle", "yellow bar", "purple star"]
BATCH = 4


# --- building ------------------------------------------------------------------------------------------------------
def method_spec(name):
    return {m.name: m for m in list_methods()}[name]


def build_model(name: str, prec: str):
    """The method's model on DEVICE, frozen except its learner, as the trainer builds it (seeded: two calls with
    the same name give the same weights)."""
    method = method_spec(name)
    cfg = default_cfg()
    cfg.TRAINER[method.node].PREC = prec
    clip_model = apply_precision(build_tiny_clip("tiny-vit"), prec)
    torch.manual_seed(0)
    model = method.trainer.make_prompt_model(cfg, clip_model, CLASSNAMES)  # the learner at LEARNER_PREC
    model.requires_grad_(False)
    if model.learner is not None:
        model.learner.requires_grad_(True)
    model.to(DEVICE)
    if getattr(model, "wants_train_features", False):
        images, labels = inputs(seed=5)
        with torch.no_grad(), autocast(prec, DEVICE):
            model.attach_train_features(model.encode_images(images).float(), labels)
    return model


def inputs(seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(BATCH, 3, 224, 224, generator=gen)
    labels = torch.randint(0, len(CLASSNAMES), (BATCH,), generator=gen)
    return images.to(DEVICE), labels.to(DEVICE)


def learner_params(model):
    return [p for p in model.learner.parameters() if p.requires_grad] if model.learner is not None else []


@contextlib.contextmanager
def dtype_independent_draws():
    """torch.randn / rand / randn_like / rand_like drawn in float32, then cast to the dtype asked for."""
    originals = {name: getattr(torch, name) for name in ("randn", "rand", "randn_like", "rand_like")}

    def factory(draw):
        def drawn(*size, dtype=None, **kwargs):
            return draw(*size, dtype=torch.float32, **kwargs).to(dtype or torch.get_default_dtype())
        return drawn

    def like(draw):
        def drawn(tensor, dtype=None, **kwargs):
            return draw(tensor, dtype=torch.float32, **kwargs).to(dtype or tensor.dtype)
        return drawn

    try:
        torch.randn, torch.rand = factory(originals["randn"]), factory(originals["rand"])
        torch.randn_like, torch.rand_like = like(originals["randn_like"]), like(originals["rand_like"])
        yield
    finally:
        for name, fn in originals.items():
            setattr(torch, name, fn)


def training_step(model, prec: str, images, labels, seed: int = 7):
    """Loss, training probabilities (B', C) and the flattened learner gradient of one step, in float32."""
    torch.manual_seed(seed)
    with dtype_independent_draws(), autocast(prec, DEVICE):
        out = model.train_loss(images, labels)
    params = learner_params(model)
    grads = torch.autograd.grad(out.loss, params) if params else []
    flat = torch.cat([g.float().flatten() for g in grads]) if grads else torch.zeros(0, device=DEVICE)
    return out.loss.detach().float(), F.softmax(out.scores.detach().float(), dim=-1), flat


def prediction(model, prec: str, images, seed: int = 11):
    torch.manual_seed(seed)
    with torch.no_grad(), model.evaluation_cache(), dtype_independent_draws(), autocast(prec, DEVICE):
        return F.softmax(model.predict(images).float(), dim=-1)


# --- agreement with fp32 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("prec", LOW_PRECISIONS)
@pytest.mark.parametrize("name", METHODS)
def test_training_step_agrees_with_fp32(name, prec):
    images, labels = inputs()
    reference, low = build_model(name, "fp32"), build_model(name, prec)
    if reference.learner is None:
        pytest.skip(f"{name} has nothing to train (its prediction is compared in test_prediction_agrees_with_fp32)")
    low.learner.load_state_dict(reference.learner.state_dict())
    assert all(p.dtype == torch.float32 for p in learner_params(low))  # fp32 master weights (LEARNER_PREC fp32)
    loss32, prob32, grad32 = training_step(reference, "fp32", images, labels)
    loss, prob, grad = training_step(low, prec, images, labels)
    tol = TOLERANCES[prec]
    assert torch.isfinite(loss) and torch.isfinite(prob).all() and torch.isfinite(grad).all()
    assert grad.norm() > 0, "no gradient reached the learner"
    assert abs(loss - loss32).item() <= tol["loss"] * max(1.0, abs(loss32.item())), (loss.item(), loss32.item())
    assert (prob - prob32).abs().max().item() <= tol["prob"]
    cosine = F.cosine_similarity(grad, grad32, dim=0).item()
    ratio = (grad.norm() / grad32.norm()).item()
    assert cosine >= tol["grad_cos"] and abs(ratio - 1) <= tol["grad_norm"], (cosine, ratio)


@pytest.mark.parametrize("prec", LOW_PRECISIONS)
@pytest.mark.parametrize("name", METHODS)
def test_prediction_agrees_with_fp32(name, prec):
    images, _ = inputs(seed=2)
    reference, low = build_model(name, "fp32"), build_model(name, prec)
    if reference.learner is not None:
        low.learner.load_state_dict(reference.learner.state_dict())
    prob32, prob = prediction(reference, "fp32", images), prediction(low, prec, images)
    assert torch.isfinite(prob).all()
    assert torch.allclose(prob.sum(-1), torch.ones(BATCH, device=DEVICE), atol=1e-3)
    assert (prob - prob32).abs().max().item() <= TOLERANCES[prec]["prob"]


# --- the trainer's GradScaler step -----------------------------------------------------------------------------------
def build_trainer(name: str, prec: str, output_dir: str):
    """The Dassl trainer of the DemoShapes tiny pipeline (tiny CLIP, synthetic data) at precision ``prec``."""
    node = method_spec(name).node
    args = build_parser().parse_args(["--trainer", name, "--output-dir", output_dir, *tiny_pipeline_options(),
                                      f"TRAINER.{node}.PREC", prec])
    return dassl_build_trainer(setup_cfg(args))


@pytest.mark.parametrize("name", TRAINABLE)
def test_grad_scaler_step_updates_and_skips_overflow(name, tmp_path, monkeypatch):
    if DEVICE.type != "cuda":  # the trainer's device is CUDA when it is available (tests/test_precision.py: CPU)
        pytest.skip("the trainer runs on the CPU here; tests/test_precision.py covers its loss scaling on the CPU")
    monkeypatch.setenv("CLIPBAYES_CACHE", str(tmp_path / "cache"))
    trainer = build_trainer(name, "amp", str(tmp_path / "out"))
    assert trainer.precision == "amp" and trainer.scaler is not None
    trainer.epoch, trainer.batch_idx, trainer.num_batches = 0, 0, 10**6  # mid-epoch: no LR update
    batch = next(iter(trainer.train_loader_x))
    params = learner_params(trainer.model)
    scale = trainer.scaler.get_scale()

    before = [p.detach().clone() for p in params]
    summary = trainer.forward_backward(batch)
    assert math.isfinite(summary["loss"])
    assert any(not torch.equal(b, p) for b, p in zip(before, params)), "the scaled step changed nothing"
    assert trainer.scaler.get_scale() == scale  # no overflow: the scale is kept until its growth interval

    before = [p.detach().clone() for p in params]
    hook = params[0].register_hook(lambda grad: grad * float("inf"))
    trainer.forward_backward(batch)
    hook.remove()
    assert all(torch.equal(b, p) for b, p in zip(before, params)), "a step with an overflowing gradient was taken"
    assert trainer.scaler.get_scale() == scale / 2


# --- random draws and host-device traffic of a training step --------------------------------------------------------
# The host reads a step may make: the logged scalars (clipbayes.objectives.loggable), and the number of batch rows
# that have a same-class partner for DualViewPrompt's batch Mixup (rows without one are skipped: a data-dependent
# shape, one read per step).
ALLOWED_HOST_READS = {("loggable", "objectives.py"), ("same_class_partners", "mixup.py")}


def allowed_host_read(stack) -> bool:
    """Whether the operation is one of the ALLOWED_HOST_READS."""
    return any((frame.name, osp.basename(frame.filename)) in ALLOWED_HOST_READS for frame in stack)


def where(stack) -> str:
    ours = [f"{osp.relpath(f.filename, ROOT)}:{f.lineno} {f.name}" for f in stack if "clipbayes" in f.filename]
    return " <- ".join(reversed(ours[-3:])) or str(stack[-1])


class OperationLog(TorchDispatchMode):
    """Records the random draws (with their devices) and the host-device transfers and synchronising operations
    (with the code that made them) that reach the dispatcher."""

    SYNCING = {"aten::_local_scalar_dense", "aten::item", "aten::nonzero", "aten::masked_select",
               "aten::_unique2", "aten::unique_consecutive", "aten::unique_dim", "aten::is_nonzero", "aten::equal"}

    def __init__(self):
        super().__init__()
        self.draw_devices = []
        self.host_traffic = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func._schema.name
        if torch.Tag.nondeterministic_seeded in func.tags:  # random draws (and ops that may draw, e.g. dropout)
            self.draw_devices.append((name, {t.device.type for t in tree_leaves(out) if torch.is_tensor(t)}))
        devices = {t.device.type for t in tree_leaves((args, kwargs, out)) if torch.is_tensor(t)}
        crosses = name in ("aten::_to_copy", "aten::copy_") and len(devices) > 1
        if name in self.SYNCING or crosses:
            stack = traceback.extract_stack()[:-1]
            if not allowed_host_read(stack):
                self.host_traffic.append(f"{name} at {where(stack)}")
        return out


@contextlib.contextmanager
def cuda_synchronisations():
    """On CUDA, the synchronisations that ``torch.cuda.set_sync_debug_mode("warn")`` reports (also those inside
    kernels, e.g. boolean-mask indexing, and in the backward pass), with the Python code that made them."""
    found = []
    if DEVICE.type != "cuda":
        yield found
        return

    def record(message, category, filename, lineno, file=None, line=None):
        stack = traceback.extract_stack()[:-1]
        if "synchroniz" in str(message) and not allowed_host_read(stack):
            found.append(f"{str(message).splitlines()[0]} at {where(stack)} ({filename}:{lineno})")

    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield found
        finally:
            torch.cuda.set_sync_debug_mode(previous)


def sgd_step(model, prec: str, images, labels, optimizer):
    with autocast(prec, DEVICE):
        loss = model.train_loss(images, labels).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


@pytest.mark.parametrize("name", TRAINABLE)
def test_training_step_draws_on_the_device_and_stays_there(name):
    prec = "amp"
    model = build_model(name, prec)
    images, labels = inputs()
    optimizer = torch.optim.SGD(learner_params(model), lr=1e-3, momentum=0.9)
    sgd_step(model, prec, images, labels, optimizer)  # warm-up: lazy initialisations are not the step's
    log = OperationLog()
    with cuda_synchronisations() as synchronisations, log:
        sgd_step(model, prec, images, labels, optimizer)
    elsewhere = [(op, devices) for op, devices in log.draw_devices if devices != {DEVICE.type}]
    assert not elsewhere, f"random draws not made on {DEVICE}: {elsewhere}"
    if name == "BayesianPrompt":
        assert log.draw_devices, "BayesianPrompt's step drew no residuals"
    traffic = log.host_traffic + synchronisations
    assert not traffic, "host-device transfers / synchronisations in the step:\n" + "\n".join(traffic)
