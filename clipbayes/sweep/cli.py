"""``clipbayes-sweep``: from a sweep description to the papers' tables.

    clipbayes-sweep run SWEEP.yaml [--data DIR] [--runner local|pool|slurm] [--gpus 0,1,...] [--dry-run]
                    [slurm flags] [--set KEY VALUE ...]
    clipbayes-sweep status SWEEP.yaml
    clipbayes-sweep list SWEEP.yaml

``run`` expands the description (clipbayes/sweep/expand.py) into train.py runs with the folders of scripts/,
skips finished runs, resumes unfinished ones, runs the rest (one after another; on a local GPU pool; or as a Slurm
job array) and prints the results tables (``python -m clipbayes.results OUTPUT``). ``--set KEY VALUE`` pairs
go to every run, after the description's. Started again after an interruption, it picks up where it stopped.
``status`` prints done / running / failed / pending per run; ``list`` prints every run's train.py command.
Exit status: 0 when every run is done, 1 when a run failed or could not start, 2 for a bad description or flag.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import subprocess
import sys

import clipbayes
from clipbayes.sweep.expand import SweepError, expand, load_description, output_root
from clipbayes.sweep.runners import Sweep, run_local, run_pool, shell_line
from clipbayes.sweep.slurm import Resources, submit
from clipbayes.sweep.status import absolute, is_finished, status_table


def default_repo() -> str:
    """The repository holding train.py and configs/: this package's checkout, else the current folder."""
    checkout = osp.dirname(osp.dirname(osp.abspath(clipbayes.__file__)))
    return checkout if osp.isfile(osp.join(checkout, "train.py")) else os.getcwd()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipbayes-sweep", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "run the sweep"), ("status", "state of every run"), ("list", "every command")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("sweep", help="sweep description (yaml); examples in configs/sweeps/")
        sub.add_argument("--repo", default=None, help="folder with train.py and configs/ [this checkout]")
        sub.add_argument("--data", default=None, help="dataset root (--root of every run) [the description's "
                                                      "'data', else $DATA]")
        sub.add_argument("--set", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                         help="a config override for every run, after the description's (repeat)")
        if name != "run":
            continue
        sub.add_argument("--runner", choices=("local", "pool", "slurm"), default="local")
        sub.add_argument("--gpus", default=None, help="pool: comma-separated device ids, one run per device "
                                                      "[$CUDA_VISIBLE_DEVICES]")
        sub.add_argument("--python", default=sys.executable, help="interpreter running train.py")
        sub.add_argument("--dry-run", action="store_true", help="print what would run, run nothing")
        sub.add_argument("--no-results", action="store_true", help="do not print the results tables at the end")
        slurm = sub.add_argument_group("slurm (--runner slurm)")
        defaults = Resources()
        slurm.add_argument("--partition", default=None)
        slurm.add_argument("--gpus-per-job", type=int, default=defaults.gpus_per_job)
        slurm.add_argument("--cpus-per-job", type=int, default=defaults.cpus_per_job)
        slurm.add_argument("--mem-gb", type=int, default=defaults.mem_gb)
        slurm.add_argument("--time-min", type=int, default=defaults.time_min, help="time limit per array task")
        slurm.add_argument("--array-parallelism", type=int, default=defaults.array_parallelism,
                           help="array tasks running at once")
        slurm.add_argument("--account", default=None)
        slurm.add_argument("--qos", default=None)
        slurm.add_argument("--constraint", default=None)
        slurm.add_argument("--wait", action="store_true", help="wait for the array, then print the tables")
        slurm.add_argument("--cluster", default=None, choices=("slurm", "local"),
                           help="submitit's executor [slurm when sbatch is found]; 'local' runs the array here")
    return parser


def load_sweep(args) -> Sweep:
    repo = osp.abspath(args.repo or default_repo())
    if not osp.isdir(osp.join(repo, "configs")):
        raise SweepError(f"'{repo}' has no configs/ folder: give --repo, the folder holding train.py and configs/")
    description = load_description(args.sweep)
    opts = [item for pair in args.set for item in pair]
    if opts:
        extra = description.get("overrides") or {}
        pairs = extra if isinstance(extra, list) else [v for kv in extra.items() for v in map(str, kv)]
        description = {**description, "overrides": pairs + opts}
    data = args.data or description.get("data") or os.environ.get("DATA")
    runs = expand(description, repo, data)
    return Sweep(runs, repo, output_root(description), python=getattr(args, "python", sys.executable))


def print_results(sweep: Sweep) -> None:
    output = sweep.output if osp.isabs(sweep.output) else osp.join(sweep.repo, sweep.output)
    print(f"[sweep] results: python -m clipbayes.results {output}", flush=True)
    subprocess.run([sweep.python, "-m", "clipbayes.results", output], cwd=sweep.repo)


def devices(flag: str | None) -> list[str]:
    text = flag if flag is not None else os.environ.get("CUDA_VISIBLE_DEVICES", "")
    ids = [d.strip() for d in text.split(",") if d.strip()]
    if not ids:
        raise SweepError("--runner pool needs device ids: --gpus 0,1,2,3 (or set CUDA_VISIBLE_DEVICES)")
    return ids


def run_command(args) -> int:
    sweep = load_sweep(args)
    if args.runner == "slurm":
        resources = Resources(args.partition, args.gpus_per_job, args.cpus_per_job, args.mem_gb, args.time_min,
                              args.array_parallelism, args.account, args.qos, args.constraint)
        jobs = submit(sweep, resources, cluster=args.cluster, dry_run=args.dry_run, wait=args.wait)
        if args.dry_run or not args.wait:
            if jobs:
                print(f"[sweep] submitted; follow it with: clipbayes-sweep status {args.sweep}")
            return 0
        table, counts = status_table(sweep.runs, sweep.store)
    else:
        if args.dry_run:
            for run in sweep.runs:
                done = is_finished(run, sweep.repo)
                print(f"{run.key}: {'finished, skipped' if done else shell_line(sweep.command(run))}")
            return 0
        data_root = sweep.runs[0].args[1]  # every run's --root
        if not osp.isdir(absolute(data_root, sweep.repo)):
            raise SweepError(f"Dataset root '{data_root}' is not a directory: give --data /path/to/datasets "
                             f"(or 'data:' in the description, or $DATA)")
        if args.runner == "pool":
            outcomes = run_pool(sweep, devices(args.gpus))
        else:
            outcomes = run_local(sweep)
        table, counts = status_table(sweep.runs, sweep.store)
        print(f"[sweep] {sum(o in ('done', 'skipped') for o in outcomes.values())} done, "
              f"{sum(o == 'failed' for o in outcomes.values())} failed, "
              f"{sum(o == 'blocked' for o in outcomes.values())} not started (their model failed)")
    if not args.no_results:
        print_results(sweep)
    if counts["failed"] or counts["pending"]:
        print(table, file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return run_command(args)
        sweep = load_sweep(args)
        if args.command == "status":
            table, _ = status_table(sweep.runs, sweep.store)
            print(table)
        else:
            for run in sweep.runs:
                print(shell_line(sweep.command(run)))
        return 0
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
