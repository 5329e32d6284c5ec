"""Cost of the evaluation report on a large split: every metric, the stored curves, and the temperature fit.

    python benchmarks/bench_metrics.py [--images 50000] [--classes 1000] [--threads 1]

Prints wall-clock seconds of each part and the peak resident memory, for random logits (the cost of the metrics does
not depend on the values; that of the temperature search, a few passes over the data, somewhat does).
"""
from __future__ import annotations

import argparse
import os.path as osp
import resource
import sys
import time

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from clipbayes.evaluation import metrics as M  # noqa: E402
from clipbayes.evaluation import temperature as T  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=50000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    logits = 5 * torch.randn(args.images, args.classes)
    labels = torch.randint(0, args.classes, (args.images,))
    log_probs = M.log_predictive(logits)
    timings = {}
    for name, run in (("compute_metrics", lambda: M.compute_metrics(log_probs, labels)),
                      ("compute_curves", lambda: M.compute_curves(log_probs, labels)),
                      ("fit_temperature", lambda: T.fit_temperature(log_probs, labels))):
        start = time.perf_counter()
        run()
        timings[name] = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"N={args.images} C={args.classes} threads={args.threads}: " +
          ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()) + f", peak RSS {peak:.2f} GB")


if __name__ == "__main__":
    main()
