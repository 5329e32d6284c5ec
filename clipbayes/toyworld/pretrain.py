"""Contrastive pre-training of the toy CLIP on the toy world.

    python -m clipbayes.toyworld.pretrain                # the shipped checkpoint clipbayes/toyworld/toyclip.pt
    python -m clipbayes.toyworld.pretrain --arch vit     # clipbayes/toyworld/toyclip_vit.pt

A pool of ``--pool-size`` images of the 80 pre-training classes (photo style, sketch style with probability
``--sketch-p``) is rendered once in memory; each step draws a batch of B images and a caption for each
(:class:`~clipbayes.toyworld.captions.CaptionSampler`). With unit features u_i (image) and v_j (caption) and
the learned scale s, the loss is CLIP's symmetric cross-entropy over the B x B logits s u_i . v_j, except that
pairs (i, j != i) whose caption j also describes image i (same class, or a partial caption that fits) are set to
-inf: they are not negatives.

AdamW (lr 1e-3, weight decay 0.1, betas 0.9/0.98), linear warm-up then cosine decay. Everything is drawn from
``--seed``: the same command gives the same checkpoint on the same software stack.
"""
from __future__ import annotations

import argparse
import math
import os
import random
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from clipbayes.modeling.text import TextEncoder, eot_positions, tokenize
from clipbayes.toyworld.captions import CaptionSampler
from clipbayes.toyworld.model import (CHECKPOINTS, PIXEL_MEAN, PIXEL_STD, build_toyclip, compact_state,
                                      pretrain_learning_rate, save_compact, zero_shot_accuracy)
from clipbayes.toyworld.world import (HELD_OUT, NUM_CLASSES, SKETCH_PRETRAIN_P, class_names, image_seed,
                                      pretrain_styles, render, seen_labels)

PRETRAIN_WORLD_SEED = 1000  # pre-training images use world seeds 1000 + seed; the dataset uses others
EVAL_WORLD_SEED = 5000


@dataclass
class PretrainConfig:
    steps: int = 1600
    batch_size: int = 256
    pool_size: int = 60_000
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 100
    sketch_p: float = SKETCH_PRETRAIN_P
    seed: int = 0
    log_every: int = 50
    arch: str = "resnet"  # the image tower: resnet (toyclip) or vit (toyclip-vit)


def to_tensor(images) -> torch.Tensor:
    """(N, 3, 32, 32) float images normalised with CLIP's mean and std, from a list of PIL images."""
    array = np.stack([np.asarray(image) for image in images]).astype(np.float32) / 255.0
    tensor = torch.from_numpy(array).permute(0, 3, 1, 2)
    mean, std = torch.tensor(PIXEL_MEAN)[None, :, None, None], torch.tensor(PIXEL_STD)[None, :, None, None]
    return (tensor - mean) / std


def render_pool(config: PretrainConfig):
    """(images uint8 (N, 32, 32, 3), labels (N,)) of the pre-training pool."""
    rng = random.Random(config.seed)
    labels = seen_labels()
    pool_labels, pool_images = [], []
    for index in range(config.pool_size):
        label = rng.choice(labels)
        style = pretrain_styles(rng, config.sketch_p)
        pool_labels.append(label)
        pool_images.append(np.asarray(render(label, style, image_seed(label, style, index,
                                                                      PRETRAIN_WORLD_SEED + config.seed))))
    return np.stack(pool_images), torch.tensor(pool_labels)


def contrastive_loss(image_features, text_features, scale, describes) -> torch.Tensor:
    """Symmetric CLIP loss on (B, E) unit features; off-diagonal ``describes`` pairs are masked out."""
    logits = scale * image_features @ text_features.t()
    mask = describes & ~torch.eye(len(logits), dtype=torch.bool)
    logits = logits.masked_fill(mask, float("-inf"))
    target = torch.arange(len(logits))
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def learning_rate(step: int, config: PretrainConfig) -> float:
    return pretrain_learning_rate(step, config.steps, config.warmup, config.lr)


def pretrain(config: PretrainConfig, log=print):
    """Train a toy CLIP from ``config``; return (model, token ids the captions use, per-step losses).

    Only the token-embedding rows of the ids the captions use are trained (a compact table swapped in for the
    duration and written back): the other rows keep their initial values exactly, and the optimiser does not
    carry 49k unused rows.
    """
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed + 1)
    started = time.time()
    pool, pool_labels = render_pool(config)
    log(f"rendered {len(pool)} pre-training images in {time.time() - started:.0f} s")
    sampler = CaptionSampler()
    caption_tokens = tokenize([c.text for c in sampler.captions])
    token_ids = torch.unique(caption_tokens)  # includes 0, the padding id
    compact_tokens = torch.searchsorted(token_ids, caption_tokens)
    model = build_toyclip(config.seed, config.arch).train()
    full_embedding = model.token_embedding
    model.token_embedding = torch.nn.Embedding.from_pretrained(full_embedding.weight.detach()[token_ids].clone(),
                                                               freeze=False)
    encoder = TextEncoder(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.98),
                                  weight_decay=config.weight_decay)
    losses = []
    for step in range(config.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        batch = torch.tensor(rng.sample(range(len(pool)), config.batch_size))
        labels = pool_labels[batch]
        caption_ids = torch.tensor([sampler.sample(int(label), rng) for label in labels])
        unique, inverse = torch.unique(caption_ids, return_inverse=True)
        tokens = compact_tokens[unique]
        text = encoder(encoder.embed(tokens), eot_positions(caption_tokens[unique]))[inverse]
        image = model.encode_image(to_tensor(pool[batch.numpy()]))
        loss = contrastive_loss(F.normalize(image, dim=-1), F.normalize(text, dim=-1), model.logit_scale.exp(),
                                sampler.describes(labels, caption_ids))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        if (step + 1) % config.log_every == 0 or step == 0:
            log(f"step {step + 1}/{config.steps} loss {loss.item():.4f} scale {model.logit_scale.exp().item():.1f} "
                f"lr {learning_rate(step, config):.2e} elapsed {time.time() - started:.0f} s")
    with torch.no_grad():
        full_embedding.weight[token_ids] = model.token_embedding.weight
    model.token_embedding = full_embedding
    return model.eval(), token_ids, losses


def evaluate(model, per_class: int = 20) -> dict:
    """Zero-shot top-1 accuracy (%) with "a photo of a {}." on fresh images of each style.

    ``<style>_seen`` / ``<style>_held_out``: 100-way, on the pre-training classes / the held-out ones;
    ``<style>_held_out_20way``: among the 20 held-out classes only.
    """
    names = class_names()
    held_out = sorted(HELD_OUT)
    seen = seen_labels()
    results = {}
    for style in ("photo", "sketch", "shift"):
        for part, labels in (("seen", seen), ("held_out", held_out)):
            images, targets = [], []
            for label in labels:
                for index in range(per_class):
                    images.append(render(label, style, image_seed(label, style, index, EVAL_WORLD_SEED)))
                    targets.append(label)
            images, targets = to_tensor(images), torch.tensor(targets)
            results[f"{style}_{part}"] = zero_shot_accuracy(model, images, targets, names)
            if part == "held_out":
                results[f"{style}_held_out_20way"] = zero_shot_accuracy(model, images, targets, names, held_out)
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = PretrainConfig()
    for field, value in asdict(defaults).items():
        parser.add_argument("--" + field.replace("_", "-"), type=type(value), default=value)
    parser.add_argument("--out", default=None, help="checkpoint path (its .sha256 is written next to it); default: the "
                                                   "shipped file of --arch")
    parser.add_argument("--force", action="store_true", help="overwrite an existing checkpoint")
    args = parser.parse_args(argv)
    if args.arch not in CHECKPOINTS:
        parser.error(f"--arch must be one of {', '.join(CHECKPOINTS)}")
    args.out = args.out or CHECKPOINTS[args.arch]
    if os.path.exists(args.out) and not args.force:
        parser.error(f"{args.out} exists; pass --force to replace it, or choose another --out")
    config = PretrainConfig(**{field: getattr(args, field) for field in asdict(defaults)})
    started, cpu_started = time.time(), time.process_time()
    model, token_ids, losses = pretrain(config, log=lambda line: print(line, flush=True))
    train_seconds, train_cpu = time.time() - started, time.process_time() - cpu_started
    learned_scale = model.logit_scale.exp().item()
    zero_shot = evaluate(model)
    print("zero-shot accuracy (%): " + ", ".join(f"{k} {v:.1f}" for k, v in zero_shot.items()), flush=True)
    meta = {"config": asdict(config), "learned_logit_scale": learned_scale, "final_loss": losses[-1],
            "train_seconds": train_seconds, "train_cpu_seconds": train_cpu, "torch": str(torch.__version__),
            "zero_shot": zero_shot, "num_classes": NUM_CLASSES, "held_out": sorted(HELD_OUT)}
    digest = save_compact(args.out, compact_state(model, token_ids, config.seed, meta, config.arch))
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB, sha256 {digest}); learned logit scale "
          f"{learned_scale:.1f}, shipped 100; {train_seconds / 60:.1f} min wall, {train_cpu / 60:.1f} min CPU",
          flush=True)


if __name__ == "__main__":
    main()
