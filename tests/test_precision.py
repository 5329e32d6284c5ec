"""Every PREC mode trains: fp32 master weights under a low-precision CLIP, exercised on the CPU.

``$CLIPBAYES_CPU_LOW_PRECISION=1`` makes the CPU run fp16 / amp / bf16 as asked (clipbayes/modeling/precision.py);
``CLIPBAYES_TEST_DEVICE=cuda`` runs the same tests on a GPU (benchmarks/gpu_check.py does).

* Regression (the measurement that opened the precision work): PBPrompt at PREC fp16, 10 SGD steps at lr 0.002,
  momentum 0.9, on the tiny CLIP. With its learner in fp16 (``LEARNER_PREC clip``, the only behaviour before) the
  log-variance output bias, initialised at -8 where one fp16 ulp is 2^-7, never moves; with fp32 master weights
  (the default) every element of the tensors named in the measurement moves.
* Every registered method (new ones join through the registry) on the toy CLIP and on a tiny ViT CLIP, 20 training
  steps through the trainer's own step in each of fp32, fp16, amp and bf16: the loss is finite at every step; no
  learnable tensor has more of its elements unchanged than the fp32 run allows (``extra_unchanged_allowed``:
  elements a step cannot move, e.g. the weights of ReLU units dead for every class, stay unchanged at every
  precision); the toy
  world's base accuracy (every 8th test image, 125 images of the 50 base classes) is within ACCURACY_MARGIN of the
  fp32 run's.
"""
from __future__ import annotations

import contextlib
import io
import math
import os

import pytest
import torch

from clipbayes.compat import dassl_available, import_dassl
from clipbayes.modeling.precision import CPU_LOW_PRECISION_VARIABLE
from support import requires_dassl

DEVICE = torch.device(os.environ.get("CLIPBAYES_TEST_DEVICE", "cpu"))
pytestmark = [requires_dassl,
              pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(),
                                 reason="CLIPBAYES_TEST_DEVICE=cuda but CUDA is not available")]

if dassl_available():
    import_dassl()
    from dassl.data.data_manager import build_data_loader
    from dassl.engine import build_trainer as dassl_build_trainer
    from dassl.utils import set_random_seed

    from clipbayes.cli import build_parser, setup_cfg
    from clipbayes.demo import tiny_pipeline_options
    from clipbayes.registry import get_method, list_methods
    from clipbayes.toyworld import protocol

    METHODS = [m.name for m in list_methods()]
else:
    METHODS = []

LOW_PRECISIONS = ("fp16", "amp", "bf16")
STEPS = 20
# Measured on the toy CLIP at lr 1e-4 (the fp32 runs move by 0.0 points when the learning rate moves by 2%): the
# largest difference from fp32 was 2.4 points (PBPrompt at fp16 and amp, whose first step is skipped while the
# loss scale calibrates), every other method within 0.4 points.
ACCURACY_MARGIN = 5.0
# An element whose update falls below float32's resolution at its value (a LayerNorm weight of 1.0 moved by
# lr x grad < 6e-8) stays unchanged at any precision, and which elements do depends on the trajectory: up to 2 of
# the 64 elements of PBPrompt's generator LayerNorm weights did at fp16 and not at fp32. A learner that does not
# learn leaves whole tensors unchanged (the regression above).
def extra_unchanged_allowed(numel: int) -> int:
    return max(2, numel // 100)
CLIPS = {
    "toy": [],  # the toy CLIP of the method (toyclip, or toyclip-vit for vision prompts: protocol.toy_backbone)
    "tiny-vit": ["MODEL.BACKBONE.NAME", "tiny-vit", "INPUT.SIZE", "(224, 224)"],
}
# Cheap settings shared by every run: short MC estimates, CoOp from the hand prompt (a random context swings by
# tens of points in 20 steps), a small learning rate without warm-up.
CHEAP = ["TRAINER.COOP.CTX_INIT", "a photo of a",
         "TRAINER.BAYESIAN_PROMPT.N_SAMPLES_TRAIN", "3", "TRAINER.BAYESIAN_PROMPT.N_SAMPLES_TEST", "3",
         "TRAINER.PBPROMPT.N_SAMPLES_TRAIN", "3", "TRAINER.PBPROMPT.N_SAMPLES_TEST", "3",
         "OPTIM.LR", "1e-4", "OPTIM.WARMUP_EPOCH", "0", "TEST.TEMPERATURE_SCALING", "False"]


@pytest.fixture
def low_precision_cpu(monkeypatch):
    monkeypatch.setenv(CPU_LOW_PRECISION_VARIABLE, "1")


def build_trainer(name: str, options: list, output_dir: str):
    """The Dassl trainer of ``train.py --trainer name <options>``, seeded as train.py seeds it, output hidden."""
    args = build_parser().parse_args(["--trainer", name, "--seed", "1", "--output-dir", output_dir, *options,
                                      "USE_CUDA", str(DEVICE.type == "cuda")])
    cfg = setup_cfg(args)
    set_random_seed(cfg.SEED)
    torch.set_flush_denormal(True)  # as train.py does on the CPU (clipbayes/engine/cpu.py)
    with contextlib.redirect_stdout(io.StringIO()):
        return dassl_build_trainer(cfg)


def train_steps(trainer, steps: int) -> list:
    """``steps`` calls of the trainer's own training step (mid-epoch: no learning-rate update); their losses."""
    trainer.set_model_mode("train")
    trainer.epoch, trainer.num_batches = 0, 10**6
    batches, losses = iter(trainer.train_loader_x), []
    for step in range(steps):
        trainer.batch_idx = step
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(trainer.train_loader_x)
            batch = next(batches)
        losses.append(trainer.forward_backward(batch)["loss"])
    return losses


def learner_state(trainer) -> dict:
    learner = trainer.model.learner
    return {} if learner is None else {n: p.detach().clone() for n, p in learner.named_parameters()}


def unchanged_counts(before: dict, after: dict) -> dict:
    """Per learnable tensor, (elements a training run left exactly as they were, elements)."""
    return {name: (int((after[name] == value).sum()), value.numel()) for name, value in before.items()}


def stuck_tensors(unchanged: dict, reference: dict) -> dict:
    """The tensors with more unchanged elements than the fp32 run's ``reference`` allows, as readable fractions."""
    return {name: f"{count / numel:.1%} of {numel} unchanged (fp32: {reference[name][0] / numel:.1%})"
            for name, (count, numel) in unchanged.items()
            if count > reference[name][0] + extra_unchanged_allowed(numel)}


@torch.no_grad()
def base_accuracy(trainer, every: int = 8) -> float:
    """Top-1 accuracy (%) on every ``every``-th test image, predicted as the trainer's evaluation predicts."""
    trainer.set_model_mode("eval")
    items = trainer.dm.dataset.test[::every]
    loader = build_data_loader(trainer.cfg, data_source=items, batch_size=trainer.cfg.DATALOADER.TEST.BATCH_SIZE,
                               tfm=trainer.test_loader.dataset.transform, is_train=False)
    features, labels = trainer.split_features("test", loader, items)
    scores = trainer.predict_from_features(features, loader.batch_size)
    return 100.0 * (scores.argmax(dim=-1) == labels).float().mean().item()


# --- the regression ------------------------------------------------------------------------------------------------
def pbprompt_run(tmp_path, prec: str, learner_prec: str) -> tuple:
    """PBPrompt on the tiny pipeline, 10 SGD steps at lr 0.002 and momentum 0.9: (trainer, unchanged counts)."""
    options = [*tiny_pipeline_options(), "TRAINER.PBPROMPT.PREC", prec, "TRAINER.PBPROMPT.LEARNER_PREC",
               learner_prec, "OPTIM.MOMENTUM", "0.9"]
    trainer = build_trainer("PBPrompt", options, str(tmp_path / f"{prec}-{learner_prec}"))
    assert trainer.precision == prec
    for group in trainer.optim.param_groups:
        group["lr"] = 0.002
    before = learner_state(trainer)
    losses = train_steps(trainer, 10)
    assert all(math.isfinite(loss) for loss in losses), losses
    return trainer, unchanged_counts(before, learner_state(trainer))


MEASURED = ("log_var_net.2.bias", "log_var_net.0.weight", "mean_net.0.weight", "generator.layer.norm2.weight")


def test_pbprompt_at_fp16_learns_its_whole_posterior(tmp_path, low_precision_cpu):
    _, reference = pbprompt_run(tmp_path, "fp32", "fp32")
    assert all(reference[name][0] == 0 for name in MEASURED), reference

    trainer, unchanged = pbprompt_run(tmp_path, "fp16", "fp32")
    assert trainer.model.dtype == torch.float16
    assert all(p.dtype == torch.float32 for p in trainer.model.learner.parameters())
    assert trainer.scaler is not None  # gradients cross fp16 activations into fp32 weights
    stuck = stuck_tensors(unchanged, reference)
    assert not stuck, f"tensors left unchanged at fp16 with fp32 master weights: {stuck}"

    # the learner in fp16 (LEARNER_PREC clip; the only behaviour before LEARNER_PREC): the measurement reproduced
    trainer, unchanged = pbprompt_run(tmp_path, "fp16", "clip")
    assert all(p.dtype == torch.float16 for p in trainer.model.learner.parameters()) and trainer.scaler is None
    fraction = {name: count / numel for name, (count, numel) in unchanged.items()}
    assert fraction["log_var_net.2.bias"] == 1.0  # -8 + a step below 2^-8 rounds back to -8
    assert fraction["log_var_net.0.weight"] == 1.0 and fraction["generator.layer.norm2.weight"] == 1.0
    assert fraction["mean_net.0.weight"] > 0.98, fraction


# --- every method, every mode ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    """The toy world rendered once for this module."""
    return str(tmp_path_factory.mktemp("toyworld"))


def precision_run(name: str, clip: str, prec: str, root: str, output_dir: str) -> dict:
    node = get_method(name).node
    options = [*protocol.trainer_options(name, root), "DATASET.NAME", "ToyWorld", "DATASET.SUBSAMPLE_CLASSES",
               "base", "DATALOADER.TRAIN_X.BATCH_SIZE", "4" if name == "CoCoOp" else "16",
               "DATALOADER.TEST.BATCH_SIZE", "125", *CHEAP, *CLIPS[clip], f"TRAINER.{node}.PREC", prec]
    trainer = build_trainer(name, options, output_dir)
    assert trainer.precision == prec, f"{name} at PREC {prec} ran at {trainer.precision}"
    before = learner_state(trainer)
    losses = train_steps(trainer, STEPS) if before else []
    return dict(losses=losses, unchanged=unchanged_counts(before, learner_state(trainer)),
                accuracy=base_accuracy(trainer), dtypes={p.dtype for p in before.values()})


@pytest.mark.parametrize("clip", list(CLIPS))
@pytest.mark.parametrize("name", METHODS)
def test_every_precision_trains_and_predicts_like_fp32(name, clip, toy_root, tmp_path, low_precision_cpu):
    runs = {prec: precision_run(name, clip, prec, toy_root, str(tmp_path / prec))
            for prec in ("fp32",) + LOW_PRECISIONS}
    reference = runs["fp32"]
    for prec in LOW_PRECISIONS:
        run = runs[prec]
        assert all(math.isfinite(loss) for loss in run["losses"]), (prec, run["losses"])
        assert run["dtypes"] <= {torch.float32}, (prec, run["dtypes"])  # master weights
        stuck = stuck_tensors(run["unchanged"], reference["unchanged"])
        assert not stuck, f"{name} at {prec}: tensors that {STEPS} steps left unchanged: {stuck}"
        assert abs(run["accuracy"] - reference["accuracy"]) <= ACCURACY_MARGIN, (
            f"{name} at {prec}: base accuracy {run['accuracy']:.1f} against {reference['accuracy']:.1f} in fp32")
