"""What a configuration runs on: the frozen CLIP, the class names, the prompt model, its optimiser step and the
synthetic inputs (random images and labels)."""
from __future__ import annotations

import json
import os
from typing import NamedTuple

import torch
import torch.nn.functional as F

from trainer_bench.configurations import CONFIGS

VIT_B16 = dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=16,
               context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8,
               transformer_layers=12)

CLASSNAMES_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "classnames.json")


def build_clip(backbone: str):
    """The frozen fp32 CLIP: the tiny random ViT, or a ViT-B/16-shaped one with random weights (seed 0)."""
    from clipbayes.compat import import_clip
    from clipbayes.modeling.clip_loader import build_tiny_clip

    if backbone == "tiny-vit":
        return build_tiny_clip("tiny-vit")
    if backbone == "vit-b16-random":
        clip = import_clip()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = clip.model.CLIP(**VIT_B16)
        return model.float().eval()
    raise ValueError(f"unknown backbone {backbone}")


def benchmark_classnames(n_classes: int, dataset: str) -> list[str]:
    """The first ``n_classes`` real names of ``dataset`` (classnames.json), or "class 0" ... when it is empty."""
    if not dataset:
        return [f"class {i}" for i in range(n_classes)]
    with open(CLASSNAMES_FILE) as f:
        names = json.load(f)["classnames"]
    if dataset not in names:
        raise SystemExit(f"--official-names {dataset}: not in {CLASSNAMES_FILE}; choose one of {sorted(names)}")
    if n_classes > len(names[dataset]):
        raise SystemExit(f"--official-names {dataset} has {len(names[dataset])} classes, fewer than --classes "
                         f"{n_classes}")
    return names[dataset][:n_classes]


def build_prompt_model(cfg, config: str, clip_model, classnames: list[str], device: torch.device):
    """``config``'s model by its method's public ``make_prompt_model``: everything frozen but the learner, on
    ``device``; a method that wants training-set features gets 16 random unit-norm features per class."""
    from clipbayes.registry import get_method

    model = get_method(CONFIGS[config][0]).trainer.make_prompt_model(cfg, clip_model, classnames)
    model.requires_grad_(False)
    model.learner.requires_grad_(True)
    model.to(device)
    if model.wants_train_features:  # a training-set bank (DualViewPrompt)
        bank_labels = torch.arange(len(classnames), device=device).repeat(16)
        bank = F.normalize(torch.randn(bank_labels.numel(), clip_model.visual.output_dim, device=device), dim=-1)
        model.attach_train_features(bank, bank_labels)
    return model


def prepare_sampler(model, step, classes: int, resolution: int, device: torch.device, seed: int) -> None:
    """A ReBaPL model as in its later cycles: 128 random reference images, K samples (the chain moved by a small
    random step between them; the anchor is the last one's), and an SGHMC optimiser with its noise on."""
    from clipbayes.sampling import SGHMC
    from trainer_bench.configurations import REBAPL_REFERENCE_IMAGES, REBAPL_SAMPLES

    gen = torch.Generator().manual_seed(seed)
    model.attach_reference_images(torch.randn(REBAPL_REFERENCE_IMAGES, 3, resolution, resolution,
                                              generator=gen).to(device))
    for k in range(REBAPL_SAMPLES):
        with torch.no_grad():
            for p in model.learner.chain.parameters():
                p.add_(0.01 * torch.randn(p.shape, generator=gen).to(p))
        model.collect_sample(k)
    noise = torch.Generator(device=device).manual_seed(seed)
    step.optim = SGHMC(step.params, lr=1e-4, momentum=0.9, weight_decay=5e-4, temperature=100.0,
                       dataset_size=16 * classes, noise=True, generator=noise)


def prompt_model_of(model):
    """The model holding the class prompts and the towers: a wrapped base's (LogitPrior, ReBaPL), else ``model``."""
    return model.base if hasattr(model, "base") else model


class Inputs(NamedTuple):
    """Synthetic inputs: training images (B, 3, R, R) and labels (B,), test images (B_test, 3, R, R)."""

    images: torch.Tensor
    labels: torch.Tensor
    test_images: torch.Tensor


def synthetic_inputs(args, resolution: int, device: torch.device) -> Inputs:
    """N(0, 1) images and uniform labels over ``args.classes`` from a generator seeded with ``args.seed``."""
    gen = torch.Generator().manual_seed(args.seed)
    images = torch.randn(args.batch, 3, resolution, resolution, generator=gen).to(device)
    labels = torch.randint(0, args.classes, (args.batch,), generator=gen).to(device)
    test_images = torch.randn(args.test_batch, 3, resolution, resolution, generator=gen).to(device)
    return Inputs(images, labels, test_images)


class TrainingStep:
    """One step of the learner as ``PromptTrainer.forward_backward``: loss = net.train_loss(images, labels) under
    autocast, zero_grad, backward (through a GradScaler at amp), SGD step (lr 1e-4, momentum 0.9, weight decay
    5e-4) on the learner's parameters. ``step(net)`` runs another model sharing that learner (a wrapped base)."""

    def __init__(self, model, images: torch.Tensor, labels: torch.Tensor, prec: str, device: torch.device):
        self.model, self.images, self.labels, self.prec, self.device = model, images, labels, prec, device
        self.params = [p for p in model.learner.parameters() if p.requires_grad]
        self.optim = torch.optim.SGD(self.params, lr=1e-4, momentum=0.9, weight_decay=5e-4)
        self.scaler = torch.amp.GradScaler("cuda") if prec == "amp" else None

    def __call__(self, net=None) -> torch.Tensor:
        from clipbayes.modeling.precision import autocast

        with autocast(self.prec, self.device):
            loss, _, _ = (net or self.model).train_loss(self.images, self.labels)
        self.optim.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optim)
            self.scaler.update()
        else:
            loss.backward()
            self.optim.step()
        return loss
