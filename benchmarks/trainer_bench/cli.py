"""The command line of ``benchmarks/bench_trainers.py``: options, one child process per configuration, the
printed tables and the JSON (keys ``settings``, ``rows``, ``ove``, and ``official_maple`` with
--compare-official-maple)."""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from trainer_bench.configuration_row import OFFICIAL_MAPLE, run_child, run_isolated
from trainer_bench.configurations import CONFIGS
from trainer_bench.measurement import STATISTICS
from trainer_bench.ove_comparison import compare_ove, ove_table
from trainer_bench.tables import prediction_table, training_table


def parser(description: str) -> argparse.ArgumentParser:
    """The options (``--_child`` / ``--_child-out``: a child process's configuration and JSON file)."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="tiny-vit", choices=["tiny-vit", "vit-b16-random"])
    p.add_argument("--classes", type=int, default=100, help="C, number of classes")
    p.add_argument("--batch", type=int, default=4, help="training batch B")
    p.add_argument("--samples", type=int, default=4, help="L, BayesianPrompt MC samples (train and test)")
    p.add_argument("--steps", type=int, default=5, help="timed training steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed training steps before them")
    p.add_argument("--test-batch", type=int, default=8)
    p.add_argument("--test-batches", type=int, default=3, help="test batches per evaluation")
    p.add_argument("--test-reps", type=int, default=2, help="timed evaluations per draw mode (interleaved)")
    p.add_argument("--mc-draws", default="both", choices=["both", "per_batch", "per_evaluation"],
                   help="TEST.MC_DRAWS modes to time (both: interleaved in the same process)")
    p.add_argument("--reference", default="CoOp", choices=["CoOp", "none"],
                   help="also time CoOp's prediction on the same CLIP in the same process")
    p.add_argument("--variants", default="shared,bucketed,one_length",
                   help="text passes to time, interleaved step by step, comma-separated (the first gives the row's "
                        "s/step): shared (length buckets + each shared prompt prefix once, the default), bucketed "
                        "(length buckets, whole prompts), one_length (whole prompts padded to the longest)")
    p.add_argument("--floor-reps", type=int, default=3, help="timed passes per tower for the per-token cost")
    p.add_argument("--statistic", default="median", choices=list(STATISTICS),
                   help="of repeated timings; min: the least disturbed run, for a machine shared with other jobs "
                        "(they only add time)")
    p.add_argument("--official-names", nargs="?", const="imagenet", default="", metavar="DATASET",
                   help="real class names (the first --classes of DATASET in benchmarks/classnames.json, default "
                        "imagenet) instead of 'class i'")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--prec", default="fp32", choices=["fp32", "fp16", "bf16", "amp"],
                   help="non-fp32 needs CUDA (the CPU runs fp32)")
    p.add_argument("--trainers", nargs="+", default=list(CONFIGS), choices=list(CONFIGS), metavar="NAME",
                   help=f"configurations to run, from {list(CONFIGS)}")
    p.add_argument("--text-chunk", type=int, default=0, help="MODEL.CLIP.TEXT_CHUNK_SIZE (0 = one pass)")
    p.add_argument("--checkpointing", action="store_true", help="MODEL.CLIP.TEXT_CHECKPOINTING")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", default="", help="also write the settings and rows to this file")
    p.add_argument("--compare-official-ove", action="store_true",
                   help="also time OVE-PG alone: ours vs the dense official algorithm")
    p.add_argument("--ove-only", action="store_true", help="only the OVE-PG comparison")
    p.add_argument("--ove-classes", type=int, default=1000, help="C for ours in the OVE-PG comparison")
    p.add_argument("--ove-batch", type=int, default=4)
    p.add_argument("--ove-dense-classes", type=int, nargs="+", default=[25, 50, 100, 200],
                   help="C values at which the dense official algorithm is run")
    p.add_argument("--ove-reps", type=int, default=20)
    p.add_argument("--compare-official-maple", default="", metavar="SRC",
                   help="also time the official MaPLe training step (SRC: a checkout of "
                        "muzairkhattak/multimodal-prompt-learning) beside ours, interleaved in one process; needs "
                        "--backbone vit-b16-random and --prec fp32")
    p.add_argument("--_child", default="", help=argparse.SUPPRESS)
    p.add_argument("--_child-out", default="", help=argparse.SUPPRESS)
    return p


def configuration_rows(args) -> list[dict]:
    """Every --trainers row from its own process; a treatment's row (LogitPrior, ReBaPL) also over its base
    configuration's row."""
    rows = []
    for config in args.trainers:
        print(f"  running {config} ...", file=sys.stderr, flush=True)
        rows.append(run_isolated(args, config))
    by_name = {r["config"]: r for r in rows if "error" not in r}
    for r in rows:
        base = CONFIGS[r["config"]][3]
        if base and "error" not in r and base in by_name:
            r["overhead_over_base_row"] = r["s_per_step"] / by_name[base]["s_per_step"]
    return rows


def print_configuration_tables(args, rows) -> None:
    """The training and the prediction table, each after its notes."""
    cuda = args.device == "cuda"
    mem_note = ("peak memory: torch.cuda.max_memory_allocated above the allocation before the phase"
                if cuda else "peak memory: CPU peak-RSS growth (getrusage ru_maxrss) during train+test over the "
                             "peak after setup, one process per configuration")
    print(f"# training: {args.statistic} of {args.steps} steps per variant ({args.variants}), interleaved step by step "
          f"in one process; shared = length buckets + each shared prompt prefix encoded once, bucketed = length "
          f"buckets with whole prompts, one length = whole prompts padded to the longest; floor = distinct text tokens "
          f"x measured s/text token (fwd + bwd to the input) + image tokens x measured s/image token (fwd); "
          f"{mem_note}")
    print("# x base (same process): a treatment's (LogitPrior, ReBaPL) s/step over its base learner's step timed "
          "right after it in the same process; x base row: over the base configuration's own row")
    if any(r.get("vision_prompt_tokens") for r in rows):
        print("# vision prompts: image tokens / step include each image's n_v prompt tokens, and the floor's s/image "
              "token is fwd + bwd to the prompts; a learner without class prompts (DeepVPT) has no text pass per step")
    print(training_table(rows, cuda))
    print(f"\n# prediction: {args.test_reps} interleaved evaluations per mode of {args.test_batches} batches of "
          f"{args.test_batch} images (predict from images, one evaluation_cache each); steady = "
          f"{args.statistic} of batches 2..; one-off = batch 1 minus steady (the once-per-evaluation text encodings); "
          f"whole prompts: the same evaluation without prefix sharing, interleaved with it")
    print(prediction_table(rows))


def main(argv=None, description: str = "") -> int:
    """Run the benchmark (or, with ``--_child``, one configuration's row); ``description``: the --help text."""
    p = parser(description)
    args = p.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but CUDA is not available")
    if args._child:
        row = run_child(args)
        with open(args._child_out, "w") as f:
            json.dump(row, f)
        return 0

    settings = dict(backbone=args.backbone, classes=args.classes, batch=args.batch, samples=args.samples,
                    steps=args.steps, warmup=args.warmup, test_batch=args.test_batch,
                    test_batches=args.test_batches, device=args.device, prec=args.prec,
                    text_chunk=args.text_chunk, checkpointing=args.checkpointing, torch=torch.__version__,
                    threads=torch.get_num_threads(), cpus=os.cpu_count(),
                    gpu=torch.cuda.get_device_name() if args.device == "cuda" else None)
    result = dict(settings=settings, rows=[], ove=[])
    print("settings: " + ", ".join(f"{k}={v}" for k, v in settings.items() if v is not None))

    if not args.ove_only:
        result["rows"] = configuration_rows(args)
        print_configuration_tables(args, result["rows"])
    if args.compare_official_maple and not args.ove_only:
        from trainer_bench.official_maple import OFFICIAL_MAPLE_NOTE, official_maple_table

        print("  running the official MaPLe comparison ...", file=sys.stderr, flush=True)
        result["official_maple"] = run_isolated(args, OFFICIAL_MAPLE)
        print(f"\n# official MaPLe: {OFFICIAL_MAPLE_NOTE}")
        print(official_maple_table(result["official_maple"], args.statistic))

    if args.compare_official_ove or args.ove_only:
        print(f"\nOVE-PG objective alone, forward + backward on (B, C) logits, CPU, fp32; ours = clipbayes.objectives.ove_pg_loss; dense official = B x C x C differences, a loop over "
              f"C classes with a dense B(C-1) x B(C-1) precision, solve and inverse each (measured at C in "
              f"{args.ove_dense_classes}; larger C extrapolated from the two largest, NOT measured)")
        result["ove"] = compare_ove(args)
        print(ove_table(result["ove"]))

    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.json}")
    return 0
