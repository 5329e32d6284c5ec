#!/usr/bin/env python
"""Peak GPU memory of every trainer at ImageNet size (C = 1000 classes), each at its paper's batch and number of
samples L and its config's precision and test batch, on ViT-B/16-shaped CLIP with random weights (memory depends
on the shapes, not on the weights, so no download is needed). One command, about 5 minutes on one GPU:

    python benchmarks/bench_memory.py                     # CUDA; the settings of README "Memory on one GPU"
    python benchmarks/bench_memory.py --text-chunk 0 --no-checkpointing   # the configs as they are

Each row is one process of ``benchmarks/bench_trainers.py`` (one warm-up and one measured training step, then
one test batch): ``torch.cuda.max_memory_allocated`` above the allocation before each phase, so the frozen
weights are not counted (about 0.3 GiB for ViT-B/16 in fp16). A row that runs out of memory says so. Without
CUDA nothing is measured: the script says so; ``--smoke`` then runs every row on the tiny CLIP with few classes
on the CPU, to check that each configuration builds and steps (its numbers are CPU peak-RSS growth, not GPU
memory).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from types import SimpleNamespace

import torch
from tabulate import tabulate

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_trainers import CONFIGS, run_isolated  # noqa: E402

# row -> (bench_trainers configuration, training batch, L, precision, test batch): the official ImageNet settings
# (configs/trainers/*/ and scripts/*/: CoOp vit_b16_ep50_ctxv1, CoCoOp vit_b16_c4_ep10_batch1_ctxv1, BayesianPrompt
# L = 10 on ImageNet, LogitPrior vit_b16_*_c4_ep10_batch4_ctxv1).
ROWS = {
    "CoOp": ("CoOp", 32, 1, "fp16", 100),
    "CoCoOp": ("CoCoOp", 1, 1, "fp16", 100),
    "BayesianPrompt-uncond": ("BayesianPrompt-uncond", 1, 10, "fp16", 1),
    "BayesianPrompt-cond": ("BayesianPrompt-cond", 1, 10, "fp16", 1),
    "BayesianPrompt-cond-batch4": ("BayesianPrompt-cond", 4, 10, "fp16", 4),
    "LogitPrior-CoOp": ("LogitPrior-CoOp", 4, 1, "fp32", 256),
    "LogitPrior-CoCoOp": ("LogitPrior-CoCoOp", 4, 1, "fp32", 256),
    "LogitPrior-BayesianPrompt-uncond": ("LogitPrior-BayesianPrompt-uncond", 4, 10, "fp32", 256),
}


def row_args(args, name: str) -> SimpleNamespace:
    """bench_trainers' options for one row (on the CPU without CUDA: the tiny CLIP, few classes, fp32)."""
    _, batch, samples, prec, test_batch = ROWS[name]
    smoke = not torch.cuda.is_available()
    return SimpleNamespace(
        backbone="tiny-vit" if smoke else "vit-b16-random", classes=args.smoke_classes if smoke else args.classes,
        batch=batch, samples=samples, steps=1, warmup=1, device="cpu" if smoke else "cuda",
        prec="fp32" if smoke else prec, text_chunk=args.text_chunk, checkpointing=args.checkpointing,
        test_batch=test_batch, test_batches=1, seed=1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--text-chunk", type=int, default=4000, help="MODEL.CLIP.TEXT_CHUNK_SIZE (0 = one pass)")
    parser.add_argument("--no-checkpointing", dest="checkpointing", action="store_false",
                        help="without MODEL.CLIP.TEXT_CHECKPOINTING")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS), metavar="ROW")
    parser.add_argument("--budget-s", type=float, default=290, help="skip the rows left after this many seconds")
    parser.add_argument("--smoke", action="store_true", help="without CUDA: run every row on the tiny CLIP")
    parser.add_argument("--smoke-classes", type=int, default=20)
    args = parser.parse_args(argv)

    cuda = torch.cuda.is_available()
    if not cuda:
        print("CUDA is not available: no GPU memory is measured here.")
        if not args.smoke:
            print("Run this on a GPU machine; --smoke checks every row on the tiny CLIP on the CPU.")
            return 0
        print(f"--smoke: tiny CLIP, C = {args.smoke_classes}, fp32 on the CPU; the numbers are CPU peak-RSS growth.")
    else:
        print(f"GPU: {torch.cuda.get_device_name()} ({torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} "
              f"GiB), torch {torch.__version__}")
    print(f"C = {args.classes if cuda else args.smoke_classes}, MODEL.CLIP.TEXT_CHUNK_SIZE {args.text_chunk}, "
          f"MODEL.CLIP.TEXT_CHECKPOINTING {args.checkpointing}")
    started, table = time.perf_counter(), []
    for name in args.rows:
        config, batch, samples, prec, test_batch = ROWS[name]
        settings = [name, batch, samples if "Bayesian" in name else "-", prec, test_batch]
        if time.perf_counter() - started > args.budget_s:
            table.append(settings + ["skipped (time budget)", ""])
            continue
        print(f"  running {name} ...", file=sys.stderr, flush=True)
        row = run_isolated(row_args(args, name), config)
        if "error" in row:
            error = "out of memory" if "out of memory" in row["error"].lower() else row["error"][:90]
            table.append(settings + [error, ""])
        elif cuda:
            table.append(settings + [f"{row['train_peak_mib'] / 1024:.1f}", f"{row['test_peak_mib'] / 1024:.1f}"])
        else:
            table.append(settings + [f"{row['rss_growth_mib']:.0f} MiB RSS (CPU)", "-"])
    print(tabulate(table, headers=["trainer", "batch", "L", "precision", "test batch",
                                   "train peak GiB" if cuda else "train+test", "test peak GiB" if cuda else ""]))
    print(f"total {time.perf_counter() - started:.0f} s")
    uncovered = sorted(set(CONFIGS) - {config for config, *_ in ROWS.values()})
    if uncovered:
        print(f"configurations of bench_trainers.py without a paper setting here (add a row to ROWS): {uncovered}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
