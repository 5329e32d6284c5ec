#!/usr/bin/env python
"""Time and memory of PBPrompt's transport regulariser alone (a benchmark, not a test).

``clipbayes.transport.weighted_transport`` on random unit-norm features: patches (B, N, E), prompt-token features
(L, C, K, E) that require a gradient, weights (L, B, C); forward + backward, median of --reps after one warm-up.
Defaults are ViT-B/16's sizes at C = 1000: B = 4, L = 20, N = 196 patches, K = 4 tokens, E = 512. Each
(transport, chunk) configuration runs in its own process. Peak memory: CUDA ``max_memory_allocated`` above the
inputs; CPU the growth of the peak resident set size over the peak after building the inputs and running the same
code on a few classes (getrusage; so the kernels' code pages loaded on first use do not count).

    python benchmarks/bench_transport.py                         # CT and Sinkhorn, chunks 0 (all), 250, 100, 25
    python benchmarks/bench_transport.py --device cuda --classes 1000 --chunks 0 100
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from clipbayes.transport import transport_distance, weighted_transport  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_one(args) -> dict:
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    patches = F.normalize(torch.randn(args.batch, args.patches, args.dim, generator=gen), dim=-1).to(device)
    tokens = F.normalize(torch.randn(args.samples, args.classes, args.tokens, args.dim, generator=gen), dim=-1)
    tokens = tokens.to(device).requires_grad_(True)
    weights = torch.rand(args.samples, args.batch, args.classes, generator=gen).softmax(-1).to(device)
    distance = transport_distance(args._transport, temperature=0.1, epsilon=0.1, n_iters=args.sinkhorn_iters)

    def step(n_classes=args.classes):
        value = weighted_transport(patches, tokens[:, :n_classes], weights[..., :n_classes], distance,
                                   class_chunk=args._chunk)
        value.backward()
        tokens.grad = None
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step(min(args.classes, 2 * args._chunk or 2))  # the same code path on a few classes: loads the kernels, whose
    rss_base = peak_rss_mib()  # code pages would otherwise count in the CPU peak
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    step()
    times = []
    for _ in range(args.reps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    row = dict(transport=args._transport, chunk=args._chunk, s_fwd_bwd=statistics.median(times))
    if device.type == "cuda":
        row["peak_mib"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    else:
        row["peak_mib"] = peak_rss_mib() - rss_base
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--samples", type=int, default=20, help="L")
    p.add_argument("--classes", type=int, default=1000, help="C")
    p.add_argument("--patches", type=int, default=196, help="N (ViT-B/16: 196, RN50: 49)")
    p.add_argument("--tokens", type=int, default=4, help="K = b prompt tokens")
    p.add_argument("--dim", type=int, default=512, help="E")
    p.add_argument("--transports", nargs="+", default=["ct", "sinkhorn"], choices=["ct", "sinkhorn"])
    p.add_argument("--chunks", type=int, nargs="+", default=[0, 250, 100, 25], help="classes per chunk (0: all)")
    p.add_argument("--sinkhorn-iters", type=int, default=100)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--_transport", default="", help=argparse.SUPPRESS)
    p.add_argument("--_chunk", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._transport:
        print(json.dumps(run_one(args)))
        return 0

    from tabulate import tabulate
    common = [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in ("batch", "samples", "classes", "patches", "tokens",
                                                                       "dim", "sinkhorn_iters", "reps", "device")]
    print(f"settings: B={args.batch} L={args.samples} C={args.classes} N={args.patches} K={args.tokens} "
          f"E={args.dim} device={args.device} threads={torch.get_num_threads()} torch={torch.__version__}")
    rows = []
    for transport in args.transports:
        for chunk in args.chunks:
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), *common, f"--_transport={transport}",
                                   f"--_chunk={chunk}"], capture_output=True, text=True)
            if proc.returncode != 0:
                rows.append([transport, chunk, "ERROR", (proc.stderr.strip().splitlines() or ["?"])[-1][:80]])
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append([transport, chunk or "all", f"{row['s_fwd_bwd']:.3f}", f"{row['peak_mib']:.0f}"])
            print(f"  {transport}, chunk {chunk}: {row}", file=sys.stderr, flush=True)
    unit = "CUDA max_memory_allocated MiB" if args.device == "cuda" else "peak RSS growth MiB"
    print(tabulate(rows, headers=["transport", "classes / chunk", "s fwd+bwd (median)", unit]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
