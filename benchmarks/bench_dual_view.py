#!/usr/bin/env python
"""DualViewPrompt's own terms alone (a benchmark, not a test): the InfoNCE MI term (forward + backward through
the soft views and, for the bilinear critic, W) and class-wise Mixup of a batch, at C classes and width E.

Reported: the fastest of --reps runs in ms (the least disturbed by other load), for
  * MI, cosine critic:   S = t h^T / tau (C x C x E), symmetric InfoNCE, backward to t;
  * MI, bilinear critic: S = t W h^T / tau (+ C x E x E), backward to t and W;
  * Mixup, batch: same-class pairing of the B rows (B x B) + mixing; Mixup, bank: two distinct bank images of each
    row's class (bank of --shots images per class) + mixing.
The step's text pass (C soft prompts) is bench_trainers.py's; these terms add to it.

    python benchmarks/bench_dual_view.py --classes 100 1000
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clipbayes.modeling.mixup import ClassFeatureBank, beta_lambdas, mix_features, same_class_partners  # noqa: E402
from clipbayes.objectives import critic_scores, symmetric_infonce  # noqa: E402


def fastest_ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--width", type=int, default=512, help="E, the joint embedding width (ViT-B/16: 512)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--shots", type=int, default=16, help="bank images per class")
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    width, batch = args.width, args.batch
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, fp32, E={width}, B={batch}; "
          f"fastest of {args.reps} runs, ms")
    print(f"{'C':>6} {'MI cosine':>10} {'MI bilinear':>12} {'Mixup batch':>12} {'Mixup bank':>11}")
    for n_classes in args.classes:
        soft = F.normalize(torch.randn(n_classes, width), dim=-1).requires_grad_(True)
        handcrafted = F.normalize(torch.randn(n_classes, width), dim=-1)
        weight = torch.eye(width, requires_grad=True)
        cosine = fastest_ms(lambda: symmetric_infonce(critic_scores(soft, handcrafted, 0.07)).backward(), args.reps)
        bilinear = fastest_ms(lambda: symmetric_infonce(critic_scores(soft, handcrafted, 0.07, weight)).backward(),
                              args.reps)
        labels = torch.arange(batch) % max(1, batch // 2)  # every row has a same-class partner
        features = F.normalize(torch.randn(batch, width), dim=-1)
        bank = ClassFeatureBank(F.normalize(torch.randn(args.shots * n_classes, width), dim=-1),
                                torch.arange(n_classes).repeat(args.shots), n_classes)

        def batch_mixup():
            rows, partners = same_class_partners(labels)
            mix_features(features[rows], features[partners], beta_lambdas(rows.numel(), 1.0))

        def bank_mixup():
            first, second = bank.pairs(labels)
            mix_features(first, second, beta_lambdas(batch, 1.0))

        print(f"{n_classes:>6} {cosine:>10.2f} {bilinear:>12.2f} {fastest_ms(batch_mixup, args.reps):>12.3f} "
              f"{fastest_ms(bank_mixup, args.reps):>11.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
