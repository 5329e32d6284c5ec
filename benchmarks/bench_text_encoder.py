"""Benchmark: CLIP's text encoder on full 77-token prompts, cut after the last EOT token, length-bucketed, and with
the prefix the prompts share encoded once.

    python benchmarks/bench_text_encoder.py [--width 512 --layers 12 --classes 1000 --n-ctx 4 --device cpu --reps 3]
        [--names imagenet]

Builds a randomly initialised text transformer of ViT-B/16's size (width 512, 12 layers, 8 heads), encodes the
CoOp-style prompts "X .. X <name>." (``--n-ctx`` X's) of the first C class names of ``--names``
(benchmarks/classnames.json) at full length (CLIP's ``encode_text``), in one pass padded to the longest prompt,
length-bucketed, and length-bucketed with the shared prefix "[SOS] X .. X" encoded once (the shared TextEncoder's
default, clipbayes/modeling/shared_prefix.py), checks that the features agree, and prints the tokens and time of
each; then the bucketed and the shared pass forward + backward to the token embeddings (as in a training step),
interleaved.
"""
from __future__ import annotations

import argparse
import json
import os.path as osp
import statistics
import sys
import time

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from clipbayes.compat import import_clip  # noqa: E402
from clipbayes.modeling.text import LengthBuckets, TextEncoder, eot_positions, tokenize  # noqa: E402

CLASSNAMES_FILE = osp.join(osp.dirname(osp.abspath(__file__)), "classnames.json")


def timed(fn, reps: int, device: torch.device) -> float:
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-ctx", type=int, default=4, help="context tokens X before the class name")
    parser.add_argument("--names", default="imagenet", help="class names of this dataset in classnames.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    clip = import_clip()
    torch.manual_seed(0)
    model = clip.model.CLIP(embed_dim=512, image_resolution=32, vision_layers=1, vision_width=64,
                            vision_patch_size=32, context_length=77, vocab_size=49408,
                            transformer_width=args.width, transformer_heads=args.width // 64,
                            transformer_layers=args.layers).float().eval().to(device)
    encoder = TextEncoder(model)
    with open(CLASSNAMES_FILE) as f:
        pool = json.load(f)["classnames"][args.names]
    names = [pool[i % len(pool)] for i in range(args.classes)]
    context = " ".join(["X"] * args.n_ctx)
    tokens = tokenize([f"{context} {name}." for name in names]).to(device)
    eot = eot_positions(tokens)
    bucketed, longest = LengthBuckets(eot), LengthBuckets(eot, max_buckets=1)
    prefix = 1 + args.n_ctx  # [SOS] X .. X, the same in every prompt
    with torch.no_grad():
        embeddings = encoder.embed(tokens)
        full = model.encode_text(tokens)  # CLIP's own encoder: all 77 tokens
        errors = [(full - encoder(embeddings, b, (), p)).abs().max().item()
                  for b, p in ((longest, 0), (bucketed, 0), (bucketed, prefix))]
        t_full = timed(lambda: model.encode_text(tokens), args.reps, device)
        t_cut = timed(lambda: encoder(embeddings, longest), args.reps, device)
        t_bucketed = timed(lambda: encoder(embeddings, bucketed), args.reps, device)
        t_shared = timed(lambda: encoder(embeddings, bucketed, (), prefix), args.reps, device)
    inputs = embeddings[:, :bucketed.lengths[-1]].clone().requires_grad_(True)
    backward = {0: [], prefix: []}
    for _ in range(args.reps):  # interleaved: the two passes see the same machine
        for p in backward:
            backward[p].append(timed(lambda: encoder(inputs, bucketed, (), p).sum().backward(), 1, device))
    t_bucketed_bwd, t_shared_bwd = (statistics.median(backward[p]) for p in (0, prefix))
    distinct = bucketed.needed_tokens - (len(names) - 1) * prefix
    print(f"text encoder width {args.width} x {args.layers} layers, {args.classes} prompts ({args.names} names, "
          f"{args.n_ctx} context tokens), device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"tokens: {77 * len(names)} (full) / {longest.padded_tokens} (cut at the last EOT, one length) / "
          f"{bucketed.padded_tokens} (buckets of lengths {bucketed.lengths}) / {bucketed.needed_tokens} (needed) / "
          f"{distinct} (distinct: the {prefix}-token prefix once)")
    print(f"full length : {t_full:.3f} s   (median of {args.reps})")
    print(f"EOT cut     : {t_cut:.3f} s   speed-up x{t_full / t_cut:.1f}")
    print(f"bucketed    : {t_bucketed:.3f} s   speed-up x{t_full / t_bucketed:.1f} "
          f"(x{t_cut / t_bucketed:.2f} over the cut)")
    print(f"shared      : {t_shared:.3f} s   speed-up x{t_full / t_shared:.1f} "
          f"(x{t_bucketed / t_shared:.2f} over bucketed)")
    print(f"forward + backward to the embeddings: bucketed {t_bucketed_bwd:.3f} s, shared {t_shared_bwd:.3f} s "
          f"(x{t_bucketed_bwd / t_shared_bwd:.2f}; median of {args.reps}, interleaved)")
    print(f"max |feature difference| vs full length: cut {errors[0]:.2e}, bucketed {errors[1]:.2e}, "
          f"shared {errors[2]:.2e}")


if __name__ == "__main__":
    main()
