"""Numerical precision: of the frozen CLIP (CoOp's PREC key, plus bf16) and of the learner (LEARNER_PREC).

PREC, the frozen CLIP:
  fp16  weights in half precision (CoOp's default)
  fp32  everything in float32
  amp   float32 weights, float16 autocast
  bf16  float32 weights, bfloat16 autocast
LEARNER_PREC, the method's trainable tensors:
  fp32  master weights: the learner is held, differentiated and stepped in float32 whatever PREC is, and cast to
        the CLIP's dtype where it enters a tower (mixed-precision training as torch.amp, apex O2 or fairseq do it)
  clip  the learner in the frozen CLIP's dtype: at PREC fp16 it is stored, differentiated and stepped in fp16, as
        in the official CoOp, CoCoOp and Bayesian-Prompt-Learning code (an update smaller than half an fp16 ulp of
        a weight is lost: docs/precision.md)
Loss scaling: a dynamic GradScaler whenever gradients cross fp16 activations into float32 weights, i.e. at PREC
amp and at PREC fp16 with an fp32 learner; never for bf16 (float32's range) or for an fp16 learner (the scaler
cannot unscale fp16 gradients, and the official code has none).
On a CPU every PREC runs as fp32 (with a log line) unless ``$CLIPBAYES_CPU_LOW_PRECISION=1`` asks for the
CPU's half-precision kernels, which the tests use to exercise every mode without a GPU.
"""
from __future__ import annotations

import contextlib
import os

import torch

from clipbayes.compat import import_clip

PRECISIONS = ("fp16", "fp32", "amp", "bf16")
LEARNER_PRECISIONS = ("fp32", "clip")
CPU_LOW_PRECISION_VARIABLE = "CLIPBAYES_CPU_LOW_PRECISION"


def cpu_low_precision() -> bool:
    """Whether ``$CLIPBAYES_CPU_LOW_PRECISION`` asks the CPU to honour fp16 / amp / bf16."""
    return os.environ.get(CPU_LOW_PRECISION_VARIABLE, "") not in ("", "0")


def resolve_precision(prec: str, device: torch.device) -> str:
    """The precision a run uses for PREC ``prec`` on ``device`` (fp32 on a CPU unless asked otherwise)."""
    if prec not in PRECISIONS:
        raise ValueError(f"PREC must be one of {PRECISIONS}, got '{prec}'")
    if device.type != "cuda" and prec != "fp32":
        if cpu_low_precision():
            print(f"Precision {prec} on {device.type} ({CPU_LOW_PRECISION_VARIABLE}=1): the CPU's half-precision "
                  f"kernels, for testing (slower than fp32, and not CUDA's kernels)")
            return prec
        print(f"Precision {prec} needs CUDA; running in fp32 on {device.type} "
              f"(set {CPU_LOW_PRECISION_VARIABLE}=1 to run it on the CPU)")
        return "fp32"
    return prec


def apply_precision(clip_model, prec: str):
    """Cast the CLIP weights for ``prec`` (in place) and return the model."""
    if prec == "fp16":
        import_clip().model.convert_weights(clip_model)
    else:
        clip_model.float()
    return clip_model


def learner_dtype(learner_prec: str, clip_dtype: torch.dtype) -> torch.dtype:
    """The dtype of the learner's tensors for LEARNER_PREC ``learner_prec`` beside a CLIP of ``clip_dtype``."""
    if learner_prec not in LEARNER_PRECISIONS:
        raise ValueError(f"LEARNER_PREC must be one of {LEARNER_PRECISIONS}, got '{learner_prec}'")
    return torch.float32 if learner_prec == "fp32" else clip_dtype


def uses_loss_scaling(prec: str, learner_dtype_: torch.dtype) -> bool:
    """Whether gradients cross fp16 activations into float32 weights (so a GradScaler guards them)."""
    return prec == "amp" or (prec == "fp16" and learner_dtype_ == torch.float32)


def grad_scaler(prec: str, learner_dtype_: torch.dtype, device: torch.device):
    """A dynamic loss scaler on ``device`` when :func:`uses_loss_scaling`, else None."""
    return torch.amp.GradScaler(device.type) if uses_loss_scaling(prec, learner_dtype_) else None


def autocast(prec: str, device: torch.device):
    if prec == "amp":
        return torch.autocast(device.type, dtype=torch.float16)
    if prec == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
