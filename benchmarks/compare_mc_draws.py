#!/usr/bin/env python
"""TEST.MC_DRAWS per_batch vs per_evaluation on the same trained weights, over seeds (a comparison, not a test).

    python benchmarks/compare_mc_draws.py --out DIR --seeds 1 2 3 4 5 [--trainer BayesianPrompt] -- TRAIN_ARGS...

For each seed: ``train.py --trainer T --seed S --output-dir DIR/seedS TRAIN_ARGS`` (its final test uses the
default ``per_batch`` draws), then ``--eval-only`` of that checkpoint with ``TEST.MC_DRAWS per_evaluation`` (and,
with ``--check-eval-only``, with ``per_batch`` too, which must equal the end-of-training number). With
``--per-batch-size N`` the per_batch number is an ``--eval-only`` run at ``DATALOADER.TEST.BATCH_SIZE N`` instead
(N = 1: independent draws per test image, the official protocol; a large test batch shares its draws as
per_evaluation does). Prints the accuracy of both modes per seed,
their mean and standard deviation over seeds, and the paired difference with its standard error: the two modes
agree within seed noise when |mean difference| is within about two standard errors and well inside the seeds'
spread. A seed whose run is already finished in DIR is read, not retrained; its evaluations are rerun.
TRAIN_ARGS are train.py's (``--root``, ``--dataset-config-file``, ``--config-file``, trailing ``KEY VALUE``).
"""
from __future__ import annotations

import argparse
import glob
import math
import os
import os.path as osp
import re
import shutil
import statistics
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
ACCURACY = re.compile(r"\* accuracy: ([\d.]+)%")


def run_train(args: list[str]) -> str:
    proc = subprocess.run([sys.executable, osp.join(REPO, "train.py"), *args], cwd=REPO, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"train.py {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stdout


def accuracy(text: str) -> float:
    found = ACCURACY.findall(text)
    if not found:
        raise SystemExit("no '* accuracy:' line in the output")
    return float(found[-1])


def newest_epoch(run_dir: str) -> int | None:
    epochs = [int(p.rsplit("-", 1)[1]) for p in glob.glob(osp.join(run_dir, "prompt_learner", "model.pth.tar-*"))]
    return max(epochs) if epochs else None


def compare_seed(trainer: str, seed: int, out: str, train_args: list[str], check_eval_only: bool,
                 per_batch_size: int) -> dict:
    run_dir = osp.join(out, f"seed{seed}")
    log = osp.join(run_dir, "log.txt")
    if osp.isfile(log) and "Finish training" in open(log).read():
        trained = accuracy(open(log).read())
    else:
        trained = accuracy(run_train(["--trainer", trainer, "--seed", str(seed), "--output-dir", run_dir,
                                      *train_args]))
    epoch = newest_epoch(run_dir)
    row = dict(seed=seed, trained=trained, per_batch=trained)
    for mode in ("per_batch", "per_evaluation") if check_eval_only or per_batch_size else ("per_evaluation",):
        eval_dir = osp.join(out, f"seed{seed}_eval_{mode}")
        shutil.rmtree(eval_dir, ignore_errors=True)
        size = ["DATALOADER.TEST.BATCH_SIZE", str(per_batch_size)] if mode == "per_batch" and per_batch_size else []
        row[mode] = accuracy(run_train(["--trainer", trainer, "--seed", str(seed), "--output-dir", eval_dir,
                                        "--eval-only", "--model-dir", run_dir, "--load-epoch", str(epoch),
                                        *train_args, "TEST.MC_DRAWS", mode, *size]))
    return row


def spread(values: list[float]) -> str:
    mean = statistics.mean(values)
    return f"{mean:.2f} +- {statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:.2f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder of the runs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--trainer", default="BayesianPrompt")
    parser.add_argument("--check-eval-only", action="store_true",
                        help="also evaluate per_batch with --eval-only (equals the end-of-training result)")
    parser.add_argument("--per-batch-size", type=int, default=0,
                        help="evaluate per_batch with --eval-only at this test batch size (1: draws per image)")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="after --: train.py's arguments")
    args = parser.parse_args(argv)
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    os.makedirs(args.out, exist_ok=True)

    rows = []
    for seed in args.seeds:
        rows.append(compare_seed(args.trainer, seed, args.out, train_args, args.check_eval_only,
                                 args.per_batch_size))
        r = rows[-1]
        source = (f"eval-only, test batch {args.per_batch_size}" if args.per_batch_size
                  else "eval-only" if args.check_eval_only else "end of training")
        print(f"seed {seed}: per_batch {r['per_batch']:.2f} ({source}), per_evaluation {r['per_evaluation']:.2f} "
              f"(eval-only)", flush=True)
    differences = [r["per_evaluation"] - r["per_batch"] for r in rows]
    print(f"\n{args.trainer} over seeds {args.seeds} ({' '.join(train_args)})")
    print(f"  accuracy per_batch      : {spread([r['per_batch'] for r in rows])} (mean +- std over seeds)")
    print(f"  accuracy per_evaluation : {spread([r['per_evaluation'] for r in rows])}")
    if len(rows) > 1:
        error = statistics.stdev(differences) / math.sqrt(len(rows))
        print(f"  per_evaluation - per_batch: {statistics.mean(differences):+.2f} (standard error {error:.2f}, "
              f"paired over the same weights)")
    if args.check_eval_only and not args.per_batch_size:
        print(f"  eval-only per_batch == end of training on every seed: "
              f"{all(r['per_batch'] == r['trained'] for r in rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
