#!/usr/bin/env python
"""How much can few shots gain over the hand-written prompt in each style of the toy world? (no training)

    python benchmarks/toy_headroom.py [--shots 16] [--seeds 1 2 3 4 5] [--test-per-class 30]

For each style and each half of the classes (base: shapes 0-4, new: shapes 5-9) it prints, with the shipped
toy CLIP's frozen image features (unit norm):

* zero-shot: argmax_k  u . t_k, with t_k the text feature of "a photo of a {class}.";
* class means: argmax_k  u . m_k / |m_k|, with m_k the mean feature of ``--shots`` images of class k: the
  simplest few-shot classifier, with no prompt and no training;
* headroom = class means - zero-shot.

A few-shot prompt learner can only raise accuracy much above zero-shot where the image features separate the
classes better than the hand prompt does, i.e. where the headroom is large. Shots and test images are rendered
in memory from world seeds that neither pre-training nor the datasets use; each ``--seeds`` entry draws new shots
(the test images stay fixed), and the table gives the mean and standard deviation over seeds.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

import numpy as np
import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from clipbayes.toyworld.model import (class_means_accuracy, image_features, load_toyclip,  # noqa: E402
                                      zero_shot_accuracy)
from clipbayes.toyworld.pretrain import to_tensor  # noqa: E402
from clipbayes.toyworld.world import STYLES, class_names, iter_images  # noqa: E402

WORLD_SEED = 7  # neither the datasets (0) nor pre-training (>= 1000) nor its evaluation (5000)
HALVES = {"base": list(range(50)), "new": list(range(50, 100))}


def rendered(labels, style, per_class, offset):
    """(normalised images, labels) of ``per_class`` images of each label, image indices from ``offset``."""
    items = list(iter_images(labels, style, per_class, WORLD_SEED, offset))
    return to_tensor([image for _, _, image in items]), torch.tensor([label for label, _, _ in items])


def measure(model, style, labels, shots, seeds, test_per_class):
    """(zero-shot accuracy, class-means accuracy per seed) among ``labels`` in ``style``; the test images' features
    are computed once for every seed."""
    test_images, test_labels = rendered(labels, style, test_per_class, 0)
    zero_shot = zero_shot_accuracy(model, test_images, test_labels, class_names(), labels)
    test_features = image_features(model, test_images)
    means = []
    for seed in seeds:
        shot_images, shot_labels = rendered(labels, style, shots, 1000 * seed)
        means.append(class_means_accuracy(image_features(model, shot_images), shot_labels, test_features,
                                          test_labels, labels))
    return zero_shot, np.array(means)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--test-per-class", type=int, default=30)
    parser.add_argument("--styles", nargs="+", default=list(STYLES), choices=STYLES)
    args = parser.parse_args(argv)
    model = load_toyclip()
    print(f"Shipped toy CLIP, {args.shots} shots per class, seeds {args.seeds}, {args.test_per_class} test images "
          f"per class; accuracy (%) among the 50 classes of each half.\n")
    print("| style | half | zero-shot | class means | headroom |")
    print("| --- | --- | --- | --- | --- |")
    for style in args.styles:
        for half, labels in HALVES.items():
            zero_shot, means = measure(model, style, labels, args.shots, args.seeds, args.test_per_class)
            print(f"| {style} | {half} | {zero_shot:.1f} | {means.mean():.1f} +- {means.std():.1f} | "
                  f"{means.mean() - zero_shot:+.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
