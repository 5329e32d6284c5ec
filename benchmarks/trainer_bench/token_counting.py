"""Tokens through each tower and the measured cost of one token: the token floor of a training step.

    floor = distinct text tokens x (s per text token, forward + backward to the input)
            + B x image tokens per image x (s per image token)
    image tokens per image = patches + 1 (class token) + n_v (the vision prompt tokens, 0 for a frozen tower)

The image tower's token is timed forward only when it is frozen, forward + backward to the vision prompts when
they are learned (as in the training step).
"""
from __future__ import annotations

import math

import torch

from trainer_bench.measurement import timed_call


class TextPassMeter:
    """Forward pre-hook on the text encoder: sequences and tokens of every pass, whatever else the call carries
    (deep prompt tokens) passed through untouched.

    Tokens are counted four ways: ``official`` (77 per sequence), ``longest`` (every sequence padded to the longest
    of its pass: one-length encoding), ``bucketed`` (each length bucket padded to its own longest member) and
    ``needed`` (each sequence at its own EOT index + 1); plus ``distinct``: the needed tokens with a prefix that
    the C sequences of a set share counted once per set (p + sum_c (n_c - p); clipbayes/modeling/shared_prefix.py),
    whether or not the pass shares it.
    """

    KINDS = ("sequences", "official", "longest", "bucketed", "needed", "distinct")

    def __init__(self, encoder):
        self.counts = dict.fromkeys(self.KINDS, 0)
        self.handle = encoder.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        from clipbayes.modeling.text import LengthBuckets, sharable_prefix

        embeddings = args[0] if args else kwargs["embeddings"]
        eot = args[1] if len(args) > 1 else kwargs["eot"]
        prefix = args[3] if len(args) > 3 else kwargs.get("shared_prefix", 0)
        n = embeddings.shape[0]
        buckets = eot if isinstance(eot, LengthBuckets) else LengthBuckets(eot)
        copies, n_seq = n // buckets.num_sequences, buckets.num_sequences
        prefix = sharable_prefix(buckets, prefix)
        distinct = copies * (buckets.needed_tokens - (n_seq - 1) * prefix)
        for kind, value in (("sequences", n), ("official", 77 * n), ("longest", copies * buckets.longest_tokens),
                            ("bucketed", copies * buckets.padded_tokens), ("needed", copies * buckets.needed_tokens),
                            ("distinct", distinct)):
            self.counts[kind] += value

    def reset(self):
        self.counts = dict.fromkeys(self.KINDS, 0)


def image_tokens(visual) -> int | None:
    """Tokens per image through a ViT image tower (patches + class token); None for a ResNet."""
    embedding = getattr(visual, "positional_embedding", None)
    return None if embedding is None or embedding.dim() != 2 else int(embedding.shape[0])


def vision_prompt_tokens(model) -> int:
    """n_v, the prompt tokens each image carries through the ViT (0 when the image tower is not prompted)."""
    if not model.learned_image_features:
        return 0
    vision = model.tower_prompts().vision
    return int(vision[0].shape[0]) if vision else 0


def image_tokens_per_image(model) -> int | None:
    """Patches + class token + vision prompt tokens of one image; None for a ResNet."""
    tokens = image_tokens(model.image_encoder)
    return None if tokens is None else tokens + vision_prompt_tokens(model)


def text_token_cost(encoder, n_sequences: int, length: int, prec, device, reps: int, stat) -> float:
    """Seconds per token of the text tower, forward + backward to its input (as in a training step), on
    ``n_sequences`` sequences all of ``length`` tokens (no padding), passed whole or in 2, 4 or 8 chunks: the cost
    per token depends on the size of a pass (cache effects on a CPU), and the floor takes the cheapest."""
    from clipbayes.modeling.precision import autocast

    width = encoder.token_embedding.weight.shape[1]
    x = (0.02 * torch.randn(n_sequences, length, width, device=device)).to(encoder.dtype).requires_grad_(True)
    eot = torch.full((n_sequences,), length - 1, device=device)
    best = math.inf
    for pieces in (1, 2, 4, 8):
        size = math.ceil(n_sequences / pieces)
        if pieces > 1 and size < 64:
            break

        def run():
            for start in range(0, n_sequences, size):
                with autocast(prec, device):
                    out = encoder(x[start:start + size], eot[start:start + size])
                out.float().sum().backward()

        run()
        best = min(best, stat(timed_call(run, device) for _ in range(reps)))
    return best / (n_sequences * length)


def image_token_cost(model, images, prec, device, reps: int, stat) -> float | None:
    """Seconds per token of the image tower on the training batch: forward without gradient for a frozen tower;
    forward + backward to the vision prompts when they are learned (the learner's gradients are cleared after)."""
    from clipbayes.modeling.precision import autocast

    tokens = image_tokens_per_image(model)
    if tokens is None:
        return None
    learned = model.learned_image_features

    def run():
        with torch.set_grad_enabled(learned), autocast(prec, device):
            features = (model.image_features(images, model.tower_prompts()) if learned
                        else model.encode_images(images))
        if learned:
            features.float().sum().backward()

    run()
    cost = stat(timed_call(run, device) for _ in range(reps)) / (images.shape[0] * tokens)
    model.learner.zero_grad(set_to_none=True)
    return cost
