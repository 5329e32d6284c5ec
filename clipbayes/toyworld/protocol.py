"""The toy-world protocol: the ``train.py`` runs of base-to-new and domain generalisation on the toy world, shared
by the demo (``python train.py --trainer X``) and ``benchmarks/toy_protocols.py``.

For a trainer and a seed, every run goes through ``clipbayes.cli.run`` (the code of ``train.py``), into the
folders of CoOp's scripts, so ``python -m clipbayes.results <root>`` reads them (:func:`run_dirs`):

* ``train_base``: train on ``NUM_SHOTS`` dusk-style shots of each base class (shapes 0-4), test on the base
  classes' dusk test images (``<root>/base2new/train_base/ToyWorld/shots_16/<trainer>/toy/seed<S>``);
* ``test_new``: the trained prompts, evaluated (``--eval-only``) on the new classes (shapes 5-9)
  (``<root>/base2new/test_new/...``);
* ``test_shift``: the trained prompts on the base classes rendered in the ``shift`` style (tinted, cluttered
  backgrounds never seen in pre-training): domain generalisation with the classes held fixed
  (``<root>/evaluation/<trainer>/toy_16shots/ToyWorldShift/seed<S>``);
* with ``with_validation``, ``val_base`` and ``val_new``: the trained prompts on the validation images
  (``TEST.SPLIT val``) of the base and of the new classes (``<root>/validation/{base,new}/...``), the only numbers
  a choice of settings may be made on.

A finished run is read back instead of repeated; an unfinished training run resumes from its last epoch
(checkpoints every epoch), bit for bit as ``train.py`` resumes. Under ``torchrun`` every process runs the same
runs; which runs are finished and what they scored is read by rank 0 and shared with the others.

A trainer without parameters (zero-shot CLIP) evaluates directly in each run.

**The budget rule** (docs/toyworld.md) is what :func:`trainer_options` applies to every registered method, today's
and later ones: the same data and optimiser budget (:func:`shared_options`: 16 shots of the 50 base classes,
``EPOCHS`` epochs of batch ``BATCH_SIZE`` with SGD at ``LR``, cosine decay after one constant warm-up epoch: the
same optimiser steps and training images for every method, whatever a step costs it); the method's own keys at
their defaults, except that a number of Monte Carlo draws (a key declared ``monte_carlo``) above
``MONTE_CARLO_CAP`` is cut to it. A method may have ``configs/trainers/<Name>/toy.yaml`` (passed as
``--config-file``) only for keys of its own node (the variant the table shows, or its published base-to-new
setting; not its Monte Carlo draws) and for keys that cannot change a result (:data:`NEUTRAL_KEYS`);
:func:`check_toy_file` refuses any other key. What the rule gave a run (steps, images, text sequences) is in its
log (clipbayes/engine/budget.py) and read by :func:`read_budget`.
"""
from __future__ import annotations

import contextlib
import io
import os
import os.path as osp
import sys
from typing import Callable, Dict, List, Optional, Sequence

import yaml

from clipbayes.engine import distributed as ddp
from clipbayes.engine import progress
from clipbayes.logfiles import log_files
from clipbayes.results import harmonic_mean, parse_log
from clipbayes.toyworld.model import PIXEL_MEAN, PIXEL_STD

NUM_SHOTS = 16
RUNS = ("train_base", "test_new", "test_shift")
VALIDATION_RUNS = ("val_base", "val_new")
# run -> (dataset, classes kept)
RUN_DATA = {"train_base": ("ToyWorld", "base"), "test_new": ("ToyWorld", "new"),
            "test_shift": ("ToyWorldShift", "base"), "val_base": ("ToyWorld", "base"), "val_new": ("ToyWorld", "new")}


def cache_root() -> str:
    """``$CLIPBAYES_CACHE`` or ``~/.cache/clipbayes``: where the toy world's images are rendered once."""
    return os.environ.get("CLIPBAYES_CACHE") or osp.expanduser("~/.cache/clipbayes")


# The toy CLIP of a run, and the config folder its runs go to: ``toyclip`` (ResNet image tower), or for a method
# that puts prompt tokens into the image transformer ``toyclip-vit``.
BACKBONE_LABELS = {"toyclip": "toy", "toyclip-vit": "toy_vit"}


def toy_backbone(trainer: str) -> str:
    """The toy CLIP ``trainer``'s runs use (``toyclip-vit`` for a method with vision prompts)."""
    from clipbayes.registry import get_method

    return "toyclip-vit" if get_method(trainer).vision_prompts else "toyclip"


# The budget rule's numbers (docs/toyworld.md, "The budget rule").
EPOCHS, BATCH_SIZE, LR = 10, 32, 0.002
MONTE_CARLO_CAP = 10
# Keys a toy.yaml may set besides its method's own: they change how fast a run goes, never what it computes.
NEUTRAL_KEYS = {"DATALOADER.TEST.BATCH_SIZE": "images per evaluation batch"}


def shared_options(root: Optional[str] = None, backbone: str = "toyclip") -> List[str]:
    """``KEY VALUE`` overrides common to every run of the protocol: data, input, and the budget rule's optimiser
    and loader (the method keys keep their defaults)."""
    return [
        "DATASET.ROOT", root or cache_root(), "DATASET.NUM_SHOTS", str(NUM_SHOTS),
        "MODEL.BACKBONE.NAME", backbone,
        "INPUT.SIZE", "(32, 32)", "INPUT.INTERPOLATION", "bicubic", "INPUT.TRANSFORMS", "('random_flip', 'normalize')",
        "INPUT.PIXEL_MEAN", str(list(PIXEL_MEAN)), "INPUT.PIXEL_STD", str(list(PIXEL_STD)),
        "OPTIM.NAME", "sgd", "OPTIM.LR", str(LR), "OPTIM.MAX_EPOCH", str(EPOCHS), "OPTIM.LR_SCHEDULER", "cosine",
        "OPTIM.WARMUP_EPOCH", "1", "OPTIM.WARMUP_TYPE", "constant", "OPTIM.WARMUP_CONS_LR", "1e-4",
        "DATALOADER.TRAIN_X.BATCH_SIZE", str(BATCH_SIZE), "DATALOADER.TEST.BATCH_SIZE", "500",
        "DATALOADER.NUM_WORKERS", "0",
        "TRAIN.PRINT_FREQ", "25", "TRAIN.CHECKPOINT_FREQ", "1", "TEST.FINAL_MODEL", "last_step",
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


def monte_carlo_options() -> List[str]:
    """``KEY VALUE`` pairs cutting every registered method's Monte Carlo draws above ``MONTE_CARLO_CAP`` to it (a
    Bayesian treatment reads its base learner's node, so every node is capped, not only the trainer's)."""
    from clipbayes.registry import list_methods

    return [item for method in list_methods() for name, key in method.keys.items()
            if key.monte_carlo and key.default > MONTE_CARLO_CAP
            for item in (f"TRAINER.{method.node}.{name}", str(MONTE_CARLO_CAP))]


class BudgetRuleError(ValueError):
    pass


def check_toy_file(trainer: str, path: str) -> None:
    """Refuse a toy.yaml that sets what the budget rule fixes for every method: any key outside the method's own
    node but :data:`NEUTRAL_KEYS`, and the method's Monte Carlo draws."""
    from clipbayes.registry import get_method

    method = get_method(trainer)
    with open(path) as handle:
        keys = _keys_set(yaml.safe_load(handle))
    own = f"TRAINER.{method.node}."
    for key in sorted(keys):
        if key in NEUTRAL_KEYS:
            continue
        if key.startswith(own):
            declared = method.keys.get(key[len(own):])
            if declared is not None and declared.monte_carlo:
                raise BudgetRuleError(
                    f"{path} sets {key}, a number of Monte Carlo draws: the toy world's budget rule gives every "
                    f"method its default draws, cut to {MONTE_CARLO_CAP} (clipbayes/toyworld/protocol.py, "
                    f"docs/toyworld.md). Remove the key from the file.")
            continue
        raise BudgetRuleError(
            f"{path} sets {key}: the toy world's budget rule gives every method the same data, optimiser, schedule "
            f"and batch (docs/toyworld.md, 'The budget rule'), so a toy.yaml may set only keys of its own node "
            f"{own}* (not its Monte Carlo draws) and {', '.join(NEUTRAL_KEYS)}. Remove the key, or change the rule "
            f"for every method in clipbayes/toyworld/protocol.py.")


def trainer_options(trainer: str, root: Optional[str] = None, backbone: Optional[str] = None) -> List[str]:
    """Command-line arguments of ``trainer``'s runs under the budget rule: its toy.yaml (if any, checked by
    :func:`check_toy_file`), the shared options it does not set (on ``backbone``, default :func:`toy_backbone`)
    and the Monte Carlo cap."""
    path = toy_config_file(trainer)
    shared = shared_options(root, backbone or toy_backbone(trainer)) + monte_carlo_options()
    if path is None:
        return shared
    check_toy_file(trainer, path)
    with open(path) as handle:
        overridden = _keys_set(yaml.safe_load(handle))
    pairs = [(shared[i], shared[i + 1]) for i in range(0, len(shared), 2) if shared[i] not in overridden]
    return ["--config-file", path] + [item for pair in pairs for item in pair]


def read_budget(root: str, trainer: str, seed: int, label: str = "toy"):
    """What the rule gave ``trainer``'s training run at ``seed`` under ``root`` (clipbayes.engine.budget.Budget:
    steps, images, text sequences, the epochs counted), None for a method without training."""
    from clipbayes.engine.budget import read_budget as read_log

    return read_log(run_dirs(root, trainer, seed, label)["train_base"])


def run_split(run: str) -> str:
    """The split a run evaluates on: ``val`` for the validation runs, else ``test``."""
    return "val" if run in VALIDATION_RUNS else "test"


def _data_options(run: str) -> List[str]:
    dataset, classes = RUN_DATA[run]
    split = ["TEST.SPLIT", "val"] if run_split(run) == "val" else []
    return ["DATASET.NAME", dataset, "DATASET.SUBSAMPLE_CLASSES", classes] + split


def run_dirs(root: str, trainer: str, seed: int, label: str = "toy") -> Dict[str, str]:
    """The folder of each run of ``trainer`` at ``seed`` under ``root``, in the layout of CoOp's scripts, with
    ``label`` as the config folder."""
    shots = f"shots_{NUM_SHOTS}"
    return {"train_base": osp.join(root, "base2new", "train_base", "ToyWorld", shots, trainer, label, f"seed{seed}"),
            "test_new": osp.join(root, "base2new", "test_new", "ToyWorld", shots, trainer, label, f"seed{seed}"),
            "test_shift": osp.join(root, "evaluation", trainer, f"{label}_{NUM_SHOTS}shots", "ToyWorldShift",
                                   f"seed{seed}"),
            "val_base": osp.join(root, "validation", "base", "ToyWorld", shots, trainer, label, f"seed{seed}"),
            "val_new": osp.join(root, "validation", "new", "ToyWorld", shots, trainer, label, f"seed{seed}")}


def run_protocol(trainer: str, seed: int, root: str, run_cli: Callable[[List[str]], None],
                 extra_options: Sequence[str] = (), data_root: Optional[str] = None, quiet: bool = False,
                 with_shift: bool = True, backbone: Optional[str] = None,
                 label: Optional[str] = None, with_validation: bool = False) -> Dict[str, float]:
    """Run (or, for runs already finished under ``root``, read) the protocol of ``trainer`` at ``seed``.

    ``run_cli(argv)`` runs ``train.py``'s code on a command line; ``extra_options`` are ``KEY VALUE`` pairs
    applied to every run after the shared ones; ``data_root`` is where the world is rendered (default
    :func:`cache_root`); ``quiet`` keeps the runs' output in their logs only, but for the progress lines
    (:mod:`clipbayes.engine.progress`: one per epoch, and the resume notice); ``with_shift=False`` leaves out
    ``test_shift``; ``backbone``: the toy CLIP (default :func:`toy_backbone`); ``label``: the runs' config folder
    (default the backbone's, :data:`BACKBONE_LABELS`); ``with_validation`` adds the validation runs. Returns
    accuracies (%): ``base``, ``new``, ``hm``, with the shift run ``shift``, and with the validation runs
    ``val_base``, ``val_new`` and ``val_hm``.
    """
    backbone = backbone or toy_backbone(trainer)
    options = trainer_options(trainer, data_root, backbone) + list(extra_options)
    dirs = run_dirs(root, trainer, seed, label or BACKBONE_LABELS[backbone])
    results = {}
    runs = (RUNS if with_shift else RUNS[:2]) + (VALIDATION_RUNS if with_validation else ())
    for run in runs:
        run_dir = dirs[run]
        argv = ["--trainer", trainer, "--seed", str(seed), "--output-dir", run_dir]
        trained = ddp.from_main(lambda: osp.isdir(osp.join(dirs["train_base"], "prompt_learner")))
        if run != "train_base" and trained:
            epoch = ddp.from_main(lambda: _final_epoch(dirs["train_base"]))
            argv += ["--eval-only", "--model-dir", dirs["train_base"], "--load-epoch", str(epoch)]
        split = run_split(run)
        if ddp.from_main(lambda: read_accuracy(run_dir, split)) is None:
            with progress.shown_on(prefix=f"  {trainer} {run}: ") if quiet else contextlib.nullcontext():
                _isolated(run_cli, argv + options + _data_options(run), quiet)
        results[run] = ddp.from_main(lambda: read_accuracy(run_dir, split))
        if results[run] is None:
            raise RuntimeError(f"{run_dir}/log.txt holds no {split} result; see that log for what went wrong")
    accuracies = {"base": results["train_base"], "new": results["test_new"],
                  "hm": harmonic_mean(results["train_base"], results["test_new"])}
    if with_shift:
        accuracies["shift"] = results["test_shift"]
    if with_validation:
        accuracies.update(val_base=results["val_base"], val_new=results["val_new"],
                          val_hm=harmonic_mean(results["val_base"], results["val_new"]))
    return accuracies


def runs_finished(root: str, trainer: str, seed: int, label: str, runs: Sequence[str] = RUNS) -> bool:
    """Whether every run of ``runs`` of ``trainer`` at ``seed`` under ``root`` has its result (it is then read back
    by :func:`run_protocol`, not run)."""
    dirs = run_dirs(root, trainer, seed, label)
    return all(read_accuracy(dirs[run], run_split(run)) is not None for run in runs)


def read_accuracy(run_dir: str, split: str = "test") -> Optional[float]:
    """The accuracy (%) on ``split`` a finished run logged in ``run_dir`` (its newest log with a result: a resumed
    run writes ``log.txt-<time>`` beside the first ``log.txt``), None when there is none yet."""
    if not osp.isdir(run_dir):
        return None
    for path in log_files(run_dir):
        result = parse_log(path, split).result
        if result is not None:
            return result.metrics.get("accuracy")
    return None


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
