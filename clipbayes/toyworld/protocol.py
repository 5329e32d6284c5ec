"""The toy-world protocol: the ``train.py`` runs of base-to-new and domain generalisation on the toy world, shared
by the demo (``python train.py --trainer X``) and ``benchmarks/toy_protocols.py``.

For a trainer and a seed, every run goes through ``clipbayes.cli.run`` (the code of ``train.py``):

* ``train_base``: train on ``NUM_SHOTS`` dusk-style shots of each base class (shapes 0-4), test on the base
  classes' dusk test images;
* ``test_new``: the trained prompts, evaluated (``--eval-only``) on the new classes (shapes 5-9);
* ``test_shift``: the trained prompts on the base classes rendered in the ``shift`` style (tinted, cluttered
  backgrounds never seen in pre-training): domain generalisation with the classes held fixed.

A trainer without parameters (zero-shot CLIP) evaluates directly in each run. :func:`shared_options` set what every
method shares (backbone, input, data, optimiser). A method whose cost per step differs a lot (image-conditioned
prompts, Monte Carlo samples) can fit the protocol's budget with ``configs/trainers/<Name>/toy.yaml``: it is
passed as ``--config-file``, and every key it sets wins over the shared options; the method's other keys keep
their defaults.
"""
from __future__ import annotations

import io
import os
import os.path as osp
import sys
from typing import Callable, Dict, List, Optional, Sequence

import yaml

from clipbayes.results import harmonic_mean, parse_log
from clipbayes.toyworld.model import PIXEL_MEAN, PIXEL_STD

NUM_SHOTS = 16
RUNS = ("train_base", "test_new", "test_shift")
# run -> (dataset, classes kept)
RUN_DATA = {"train_base": ("ToyWorld", "base"), "test_new": ("ToyWorld", "new"),
            "test_shift": ("ToyWorldShift", "base")}


def cache_root() -> str:
    """``$CLIPBAYES_CACHE`` or ``~/.cache/clipbayes``: where the toy world's images are rendered once."""
    return os.environ.get("CLIPBAYES_CACHE") or osp.expanduser("~/.cache/clipbayes")


def shared_options(root: Optional[str] = None) -> List[str]:
    """``KEY VALUE`` overrides common to every run of the protocol (the method keys keep their defaults)."""
    return [
        "DATASET.ROOT", root or cache_root(), "DATASET.NUM_SHOTS", str(NUM_SHOTS),
        "MODEL.BACKBONE.NAME", "toyclip",
        "INPUT.SIZE", "(32, 32)", "INPUT.INTERPOLATION", "bicubic", "INPUT.TRANSFORMS", "('random_flip', 'normalize')",
        "INPUT.PIXEL_MEAN", str(list(PIXEL_MEAN)), "INPUT.PIXEL_STD", str(list(PIXEL_STD)),
        "OPTIM.NAME", "sgd", "OPTIM.LR", "0.002", "OPTIM.MAX_EPOCH", "10", "OPTIM.LR_SCHEDULER", "cosine",
        "OPTIM.WARMUP_EPOCH", "1", "OPTIM.WARMUP_TYPE", "constant", "OPTIM.WARMUP_CONS_LR", "1e-4",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "32", "DATALOADER.TEST.BATCH_SIZE", "500", "DATALOADER.NUM_WORKERS", "0",
        "TRAIN.PRINT_FREQ", "25", "TEST.FINAL_MODEL", "last_step",
    ]


REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def toy_config_file(trainer: str) -> Optional[str]:
    """``configs/trainers/<trainer>/toy.yaml`` of the repository, when the method has one."""
    path = osp.join(REPO_ROOT, "configs", "trainers", trainer, "toy.yaml")
    return path if osp.isfile(path) else None


def _keys_set(node: dict, prefix: str = "") -> set:
    keys = set()
    for name, value in (node or {}).items():
        keys |= _keys_set(value, f"{prefix}{name}.") if isinstance(value, dict) else {prefix + name}
    return keys


def trainer_options(trainer: str, root: Optional[str] = None) -> List[str]:
    """Command-line arguments of ``trainer``'s runs: its toy.yaml (if any) and the shared options it does not set."""
    path = toy_config_file(trainer)
    if path is None:
        return shared_options(root)
    with open(path) as handle:
        overridden = _keys_set(yaml.safe_load(handle))
    shared = shared_options(root)
    pairs = [(shared[i], shared[i + 1]) for i in range(0, len(shared), 2) if shared[i] not in overridden]
    return ["--config-file", path] + [item for pair in pairs for item in pair]


def _data_options(run: str) -> List[str]:
    dataset, classes = RUN_DATA[run]
    return ["DATASET.NAME", dataset, "DATASET.SUBSAMPLE_CLASSES", classes]


def run_protocol(trainer: str, seed: int, output_dir: str, run_cli: Callable[[List[str]], None],
                 extra_options: Sequence[str] = (), root: Optional[str] = None, quiet: bool = False,
                 with_shift: bool = True) -> Dict[str, float]:
    """Run (or, for runs already finished in ``output_dir``, read) the protocol of ``trainer`` at ``seed``.

    ``run_cli(argv)`` runs ``train.py``'s code on a command line; ``extra_options`` are ``KEY VALUE`` pairs
    applied to every run after the shared ones; ``quiet`` keeps the runs' output in their logs only;
    ``with_shift=False`` leaves out ``test_shift``. Returns accuracies (%): ``base``, ``new``, ``hm`` and, with
    the shift run, ``shift``.
    """
    options = trainer_options(trainer, root) + list(extra_options)
    base_dir = osp.join(output_dir, "train_base")
    results = {}
    for run in RUNS if with_shift else RUNS[:2]:
        run_dir = osp.join(output_dir, run)
        argv = ["--trainer", trainer, "--seed", str(seed), "--output-dir", run_dir]
        if run != "train_base" and osp.isdir(osp.join(base_dir, "prompt_learner")):
            argv += ["--eval-only", "--model-dir", base_dir, "--load-epoch", str(_final_epoch(base_dir))]
        if read_accuracy(run_dir) is None:
            _isolated(run_cli, argv + options + _data_options(run), quiet)
        results[run] = read_accuracy(run_dir)
        if results[run] is None:
            raise RuntimeError(f"{run_dir}/log.txt holds no test result; see that log for what went wrong")
    accuracies = {"base": results["train_base"], "new": results["test_new"],
                  "hm": harmonic_mean(results["train_base"], results["test_new"])}
    if with_shift:
        accuracies["shift"] = results["test_shift"]
    return accuracies


def read_accuracy(run_dir: str) -> Optional[float]:
    """The test accuracy (%) a finished run logged in ``run_dir/log.txt`` (None when there is none yet)."""
    path = osp.join(run_dir, "log.txt")
    if not osp.isfile(path):
        return None
    result = parse_log(path).result
    return result.metrics.get("accuracy") if result else None


def _final_epoch(run_dir: str) -> int:
    from_files = [int(name.rsplit("-", 1)[1]) for name in os.listdir(osp.join(run_dir, "prompt_learner"))
                  if name.startswith("model.pth.tar-")]
    return max(from_files)


def _isolated(run_cli: Callable[[List[str]], None], argv: List[str], quiet: bool) -> None:
    """Run one ``train.py`` command in this process. Dassl's logger replaces ``sys.stdout`` by a tee into the
    run's log.txt and closes its console when it is collected: restore ``sys.stdout``, close the log file, and
    give the tee a console of its own so that the real stdout stays open."""
    stdout = sys.stdout
    if quiet:
        sys.stdout = io.StringIO()
    try:
        run_cli(argv)
    finally:
        logger, sys.stdout = sys.stdout, stdout
        if hasattr(logger, "console"):
            logger.flush()
            if getattr(logger, "file", None) is not None:
                logger.file.close()
                logger.file = None
            logger.console = io.StringIO()
