"""``train.py``: CoOp's command line, on the plugin's trainers.

    python train.py --root DATA --seed S --trainer NAME --dataset-config-file configs/datasets/X.yaml \
        --config-file configs/trainers/NAME/Y.yaml --output-dir OUT [--resume DIR] \
        [--eval-only --model-dir DIR --load-epoch E] [--no-train] [KEY VALUE ...]

With only ``--trainer NAME`` (no dataset config, no config file) it runs the embedded toy-world demo
(clipbayes.demo): base, new and harmonic-mean accuracy of the trainer beside zero-shot CLIP's.
Differences from CoOp's script: seed 0 is a seed; an unknown trainer or config key is reported with the
registered names / the offending key and file; an output folder holding a finished run is refused, one holding
an unfinished run is resumed.
"""
from __future__ import annotations

import argparse
import glob
import os
import os.path as osp
import sys
import tempfile

import torch
from torch.distributed.elastic.multiprocessing.errors import record

from clipbayes.compat import import_dassl
from clipbayes.config import ConfigError, check_cfg, default_cfg
from clipbayes.engine import cpu, progress
from clipbayes.engine import distributed as ddp
from clipbayes.modeling.clip_loader import UnknownBackboneError
from clipbayes.registry import method_names

DEBUG_VARIABLE = "CLIPBAYES_DEBUG"  # set to 1 to see the traceback behind a one-line error


class UsageError(Exception):
    """Bad input on the command line or in a config file; the message says what to change."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=str, default="", help="path to the dataset root")
    parser.add_argument("--output-dir", type=str, default="", help="output directory")
    parser.add_argument("--resume", type=str, default="", help="checkpoint directory to resume from")
    parser.add_argument("--seed", type=int, default=None, help="random seed (any integer >= 0, 0 included)")
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    parser.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="path to the trainer config file")
    parser.add_argument("--dataset-config-file", type=str, default="", help="path to the dataset config file")
    parser.add_argument("--trainer", type=str, default="", help="name of the trainer")
    parser.add_argument("--backbone", type=str, default="", help="CLIP backbone name or checkpoint path")
    parser.add_argument("--head", type=str, default="", help="name of head (unused by CLIP trainers)")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument("--model-dir", type=str, default="", help="load model from this directory for eval-only")
    parser.add_argument("--load-epoch", type=int, help="load the weights saved after this epoch")
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (default 0: follow the machine's load, clipbayes/engine/cpu.py; "
                             "OMP_NUM_THREADS also fixes it)")
    parser.add_argument("--keep-denormals", action="store_true",
                        help="keep float32 denormals on the CPU (default: flushed to zero, which is faster)")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="modify config options from the command line (KEY VALUE pairs)")
    return parser


def _merge_file(cfg, path: str, what: str) -> None:
    if not osp.isfile(path):
        raise UsageError(f"{what} '{path}' does not exist.")
    try:
        cfg.merge_from_file(path)
    except (KeyError, AssertionError, ValueError) as err:
        raise UsageError(f"Cannot merge {what} '{path}': {_explain(err)}") from err


def _explain(err: Exception) -> str:
    text = str(err).strip("'\"")
    if "Non-existent" in text:
        key = text.split(":", 1)[-1].strip()
        return (f"unknown config key '{key}'. Check its spelling; trainer keys live under TRAINER.<NODE> "
                f"(see configs/trainers/) and must exist in clipbayes' defaults.")
    return text


def setup_cfg(args):
    cfg = default_cfg()
    if args.dataset_config_file:
        _merge_file(cfg, args.dataset_config_file, "dataset config file")
    if args.config_file:
        _merge_file(cfg, args.config_file, "trainer config file")
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed is not None:
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head
    try:
        cfg.merge_from_list(list(args.opts or []))
    except (KeyError, AssertionError, ValueError) as err:
        raise UsageError(f"Cannot apply command-line options: {_explain(err)}") from err
    check_cfg(cfg)
    cfg.freeze()
    return cfg


def check_trainer(name: str) -> None:
    from dassl.engine import TRAINER_REGISTRY

    ours = sorted(method_names())
    others = sorted(set(TRAINER_REGISTRY.registered_names()) - set(ours))
    listing = f"{', '.join(ours)} (Dassl's own: {', '.join(others)})"
    if not name:
        raise UsageError(f"No trainer given. Use --trainer NAME with one of: {listing}")
    if name not in TRAINER_REGISTRY.registered_names():
        raise UsageError(f"Unknown trainer '{name}'. Registered trainers: {listing}")


def finished_epochs(output_dir: str) -> int | None:
    """The epoch reached by the checkpoints in ``output_dir`` (None when there are none)."""
    from clipbayes.engine.checkpoint import checkpoint_epoch, newest_checkpoint

    epochs = []
    for pointer in glob.glob(osp.join(output_dir, "*", "checkpoint")):
        path = newest_checkpoint(osp.dirname(pointer))
        epoch = checkpoint_epoch(path) if path else None
        if epoch is not None:
            epochs.append(epoch)
    return min(epochs) if epochs else None


def check_output_dir(cfg, training: bool) -> str | None:
    """Refuse a finished run and fail early on an unwritable folder; the notice to print when an unfinished run
    is resumed (None otherwise)."""
    out = cfg.OUTPUT_DIR
    notice = None
    if training:
        reached = finished_epochs(out)
        if reached is not None and reached >= cfg.OPTIM.MAX_EPOCH:
            raise UsageError(
                f"Output directory '{out}' already holds a finished run ({reached}/{cfg.OPTIM.MAX_EPOCH} epochs); "
                f"refusing to overwrite it. Re-evaluate it with --eval-only --model-dir {out} "
                f"--load-epoch {reached}, or choose another --output-dir.")
        if reached is not None:
            notice = (f"Output directory '{out}' holds an unfinished run ({reached}/{cfg.OPTIM.MAX_EPOCH} epochs): "
                      f"resuming it")
    if ddp.is_main():
        try:
            os.makedirs(out, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test"):
                pass
        except OSError as err:
            raise UsageError(f"Output directory '{out}' is not writable ({err.strerror}). "
                             f"Choose another --output-dir.") from err
    return notice


def is_demo(args) -> bool:
    return not args.dataset_config_file and not args.config_file and "DATASET.NAME" not in (args.opts or [])


def run(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    import_dassl()
    from dassl.engine import build_trainer
    from dassl.utils import collect_env_info, set_random_seed, setup_logger

    check_trainer(args.trainer)
    if len(args.opts or []) % 2:
        raise UsageError(f"Trailing options must be KEY VALUE pairs; got an odd number: {args.opts}")
    if args.threads < 0:
        raise UsageError(f"--threads must be >= 1 (or 0: follow the machine's load); got {args.threads}")
    threads = cpu.configure(args.threads or None, args.keep_denormals)
    from clipbayes.demo import run_demo  # also registers the DemoShapes test dataset

    if is_demo(args):
        unsupported = [flag for flag, given in (("--eval-only", args.eval_only), ("--no-train", args.no_train),
                                                ("--resume", args.resume), ("--model-dir", args.model_dir)) if given]
        if unsupported:
            raise UsageError(f"The demo (no --dataset-config-file / --config-file) does not take "
                             f"{', '.join(unsupported)}; give a dataset and a config file for such runs.")
        run_demo(args.trainer, args.seed, args.output_dir or None, list(args.opts or []), args.root or None, run)
        return
    cfg = setup_cfg(args)
    training = not args.eval_only and not args.no_train
    if ddp.launched_by_torchrun():
        start_distributed(cfg)
    resuming = check_output_dir(cfg, training)

    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    if ddp.is_main():  # one log.txt: rank 0's
        setup_logger(cfg.OUTPUT_DIR)
    if resuming:
        progress.report(resuming)
    print(threads.describe())
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True
    print("** Arguments **")
    for key in sorted(vars(args)):
        print(f"{key}: {getattr(args, key)}")
    print("************\n** Config **\n************")
    print(cfg)
    print("Collecting env info ...")
    print(f"** System info **\n{collect_env_info()}\n")

    trainer = build_trainer(cfg)
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
    elif not args.no_train:
        trainer.train()


def start_distributed(cfg) -> None:
    """Join torchrun's process group (clipbayes/engine/distributed.py); the global batch must split evenly."""
    ddp.init_from_env(cfg.USE_CUDA)
    try:
        ddp.check_batch_size(cfg.DATALOADER.TRAIN_X.BATCH_SIZE)
    except ValueError as err:
        raise UsageError(str(err)) from err
    print(f"Distributed run: rank {ddp.rank()} of {ddp.world_size()}")


@record
def main(argv: list[str] | None = None) -> int:
    """Run train.py; bad input and known faults end with one clear message and a non-zero exit code:
    2 for command-line/config mistakes, 1 for data and numerical faults. With CLIPBAYES_DEBUG=1 the traceback is
    shown instead."""
    try:
        return _run_reporting_errors(argv)
    finally:
        ddp.shutdown()  # the process group (under torchrun) lives as long as the process


def _run_reporting_errors(argv: list[str] | None) -> int:
    from PIL import UnidentifiedImageError

    from clipbayes.datasets.errors import DatasetError
    from clipbayes.engine.trainer import NonFiniteLossError

    if os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
        run(argv)
        return 0
    try:
        run(argv)
    except (UsageError, ConfigError, UnknownBackboneError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except UnidentifiedImageError as err:
        print(f"error: corrupt or unreadable image ({err}). List every such file with\n"
              f"  python -m clipbayes.datasets.check --root <DATA>", file=sys.stderr)
        return 1
    except (NonFiniteLossError, ddp.CollectiveError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
