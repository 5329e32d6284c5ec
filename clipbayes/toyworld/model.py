"""The tiny CLIP of the toy world ("toyclip"): architecture, compact checkpoint, and zero-shot accuracy.

The model is OpenAI's ``clip.model.CLIP`` (so every trainer runs on it unchanged) with a small image tower and a
128-wide, 4-layer text transformer: ``toyclip`` has a ModifiedResNet (32 px input, one bottleneck per stage, width
16), ``toyclip-vit`` a ViT (32 px input, 8 px patches: 16 patch tokens and a class token, 4 layers, width 128), for
the methods that put prompt tokens into the image transformer.

Compact checkpoint (``toyclip.pt``, fp16): every tensor except the token embedding, plus the token-embedding rows
that pre-training trained (``token_ids`` and ``token_rows``). The other 49k rows were never trained, so they hold
their initial values: :func:`load_toyclip` rebuilds them exactly by constructing the architecture under the
pre-training seed before loading the stored tensors. The file's SHA-256 is checked against ``toyclip.sha256``.

Logit scale: pre-training learns it (it stays near 20), but CoOp-style prompt learners behave as on real CLIP only
with real CLIP's scale of 100, so the shipped file stores ``logit_scale = ln 100`` (the learned value is kept in
the checkpoint's ``meta``). Zero-shot accuracy does not depend on the scale.
"""
from __future__ import annotations

import hashlib
import io
import math
import os.path as osp

import torch

from clipbayes.compat import import_clip
from clipbayes.fileio import atomic_write
from clipbayes.modeling.text import TextEncoder, eot_positions, tokenize

_TEXT = dict(embed_dim=128, image_resolution=32, context_length=77, vocab_size=49408, transformer_width=128,
             transformer_heads=2, transformer_layers=4)
# The two image towers (the text tower is the same): ``resnet`` (toyclip) and ``vit`` (toyclip-vit, for methods
# that put prompt tokens into the image transformer).
ARCHITECTURES = {
    "resnet": dict(_TEXT, vision_layers=(1, 1, 1, 1), vision_width=16, vision_patch_size=None),
    "vit": dict(_TEXT, vision_layers=4, vision_width=128, vision_patch_size=8),
}
TOYCLIP_ARCH = ARCHITECTURES["resnet"]
SHIPPED_LOGIT_SCALE = 100.0
PACKAGE_DIR = osp.dirname(osp.abspath(__file__))
CHECKPOINT_PATH = osp.join(PACKAGE_DIR, "toyclip.pt")
CHECKSUM_PATH = osp.join(PACKAGE_DIR, "toyclip.sha256")
CHECKPOINTS = {"resnet": CHECKPOINT_PATH, "vit": osp.join(PACKAGE_DIR, "toyclip_vit.pt")}
# CLIP's image normalisation, used in pre-training and in configs/datasets/toyworld*.yaml.
PIXEL_MEAN = (0.48145466, 0.4578275, 0.40821073)
PIXEL_STD = (0.26862954, 0.26130258, 0.27577711)


class ToyCLIPError(RuntimeError):
    """The shipped toy CLIP is missing or corrupt; the message says how to restore it."""


def build_toyclip(seed: int, arch: str | dict = "resnet"):
    """A freshly initialised toy CLIP (fp32, train mode) of ``arch`` (a name of :data:`ARCHITECTURES` or the
    ``clip.model.CLIP`` arguments) under ``seed``; the global RNG is left untouched."""
    clip = import_clip()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return clip.model.CLIP(**(ARCHITECTURES[arch] if isinstance(arch, str) else arch)).float()


def pretrain_learning_rate(step: int, steps: int, warmup: int, lr: float) -> float:
    """Pre-training schedule: linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``steps``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.5 * lr * (1 + math.cos(math.pi * progress))


def compact_state(model, token_ids: torch.Tensor, seed: int, meta: dict, arch: str = "resnet") -> dict:
    """What the checkpoint stores: fp16 tensors, only the ``token_ids`` rows of the token embedding (and the
    architecture, except for the ResNet one, whose shipped file predates it)."""
    state = {name: tensor.detach().half() for name, tensor in model.state_dict().items()
             if name != "token_embedding.weight"}
    state["logit_scale"] = torch.tensor(math.log(SHIPPED_LOGIT_SCALE)).half()
    rows = model.token_embedding.weight.detach()[token_ids].half()
    payload = {"tensors": state, "token_ids": token_ids.clone(), "token_rows": rows, "seed": seed, "meta": meta}
    return payload if arch == "resnet" else {**payload, "architecture": dict(ARCHITECTURES[arch])}


def save_compact(path: str, payload: dict) -> str:
    """Write ``payload`` atomically to ``path`` and its SHA-256 next to it (``<stem>.sha256``); return the hash."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    atomic_write(path, lambda f: f.write(data))
    atomic_write(osp.splitext(path)[0] + ".sha256", lambda f: f.write(digest + "\n"), binary=False)
    return digest


def load_toyclip_vit():
    """The toy CLIP with a ViT image tower (``toyclip-vit``)."""
    return load_toyclip(CHECKPOINTS["vit"])


def load_toyclip(path: str = CHECKPOINT_PATH, checksum_path: str | None = None):
    """The toy CLIP as an fp32 ``clip.model.CLIP`` in eval mode, after checking the file's SHA-256."""
    checksum_path = checksum_path or osp.splitext(path)[0] + ".sha256"
    try:
        with open(path, "rb") as f:
            data = f.read()
        with open(checksum_path) as f:
            expected = f.read().strip()
    except OSError as err:
        raise ToyCLIPError(f"Cannot read the toy CLIP checkpoint ({err}). It ships inside the clipbayes package "
                           f"({CHECKPOINT_PATH}); reinstall the package or re-create it with "
                           f"'python -m clipbayes.toyworld.pretrain'.") from err
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ToyCLIPError(f"{path} does not match its SHA-256 checksum (expected {expected}, got {actual}): the "
                           f"file is corrupt or was replaced. Reinstall clipbayes or re-create it with "
                           f"'python -m clipbayes.toyworld.pretrain'.")
    payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    model = build_toyclip(payload["seed"], payload.get("architecture", "resnet"))
    embedding = model.token_embedding.weight.detach().clone()
    embedding[payload["token_ids"]] = payload["token_rows"].float()
    state = {name: tensor.float() for name, tensor in payload["tensors"].items()}
    state["token_embedding.weight"] = embedding
    model.load_state_dict(state)
    return model.eval()


def checkpoint_meta(path: str = CHECKPOINT_PATH) -> dict:
    """The ``meta`` record of a checkpoint (pre-training settings, learned logit scale, timings)."""
    return torch.load(path, map_location="cpu", weights_only=True)["meta"]


@torch.no_grad()
def class_text_features(model, classnames, template: str = "a photo of a {}.") -> torch.Tensor:
    """(C, E) unit-norm text features of ``template`` filled with each class name."""
    tokens = tokenize([template.format(name) for name in classnames])
    encoder = TextEncoder(model)
    features = encoder(encoder.embed(tokens), eot_positions(tokens))
    return features / features.norm(dim=-1, keepdim=True)


@torch.no_grad()
def image_features(model, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """(N, E) unit-norm image features of normalised (N, 3, 32, 32) images."""
    chunks = [model.encode_image(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
    features = torch.cat(chunks)
    return features / features.norm(dim=-1, keepdim=True)


def zero_shot_accuracy(model, images: torch.Tensor, labels: torch.Tensor, classnames,
                       candidates=None, template: str = "a photo of a {}.") -> float:
    """Top-1 accuracy (%) of zero-shot CLIP on ``images`` among ``candidates`` (default: all classes)."""
    candidates = list(range(len(classnames))) if candidates is None else list(candidates)
    text = class_text_features(model, [classnames[c] for c in candidates], template)
    predicted = torch.tensor(candidates)[(image_features(model, images) @ text.t()).argmax(dim=-1)]
    return 100.0 * (predicted == labels).float().mean().item()


def class_means_accuracy(shot_features: torch.Tensor, shot_labels: torch.Tensor, features: torch.Tensor,
                         labels: torch.Tensor, candidates) -> float:
    """Top-1 accuracy (%) on unit image features (N, E) (:func:`image_features`) of the few-shot class-means
    classifier: argmax_k u . m_k / |m_k|, with m_k the mean of the ``shot_features`` of class k (no prompt, no
    training), among ``candidates``."""
    candidates = list(candidates)
    centres = torch.stack([shot_features[shot_labels == label].mean(dim=0) for label in candidates])
    centres = centres / centres.norm(dim=-1, keepdim=True)
    predicted = torch.tensor(candidates)[(features @ centres.t()).argmax(dim=-1)]
    return 100.0 * (predicted == labels).float().mean().item()
