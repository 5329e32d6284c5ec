"""Numerical precision of the frozen CLIP, as CoOp's PREC key, plus bf16.

  fp16  weights in half precision (CoOp's default; CUDA only)
  fp32  everything in float32
  amp   float32 weights, float16 autocast and a gradient scaler (CUDA only)
  bf16  float32 weights, bfloat16 autocast (CUDA only; no scaler needed)
On the CPU every mode runs as fp32 (half-precision kernels are missing or slow there), with a log line.
"""
from __future__ import annotations

import contextlib

import torch

from clipbayes.compat import import_clip

PRECISIONS = ("fp16", "fp32", "amp", "bf16")


def resolve_precision(prec: str, device: torch.device) -> str:
    if prec not in PRECISIONS:
        raise ValueError(f"PREC must be one of {PRECISIONS}, got '{prec}'")
    if device.type != "cuda" and prec != "fp32":
        print(f"Precision {prec} needs CUDA; running in fp32 on {device.type}")
        return "fp32"
    return prec


def apply_precision(clip_model, prec: str):
    """Cast the CLIP weights for ``prec`` (in place) and return the model."""
    if prec == "fp16":
        import_clip().model.convert_weights(clip_model)
    else:
        clip_model.float()
    return clip_model


def autocast(prec: str, device: torch.device):
    if prec == "amp":
        return torch.autocast(device.type, dtype=torch.float16)
    if prec == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
