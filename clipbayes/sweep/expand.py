"""A sweep description (yaml) expanded into ``train.py`` runs, with the folders and arguments of ``scripts/``.

Description (every key but ``methods`` optional; see ``configs/sweeps/`` for the papers' sweeps)::

    output: output                 # root of the output tree, relative to the repository root
    data: /path/to/datasets        # --root (else --data, else $DATA)
    seeds: [1, 2, 3]
    shots: 16
    protocols:
      base2new: {datasets: [imagenet, caltech101, ...], subsample: new}
      xd: {targets: [caltech101, ..., imagenetv2, imagenet_sketch, imagenet_a, imagenet_r]}
    overrides: {KEY: VALUE}        # appended to every run (the scripts' trailing KEY VALUE pairs)
    methods:
      - trainer: BayesianPrompt
        config: vit_b16_c4_ep10_batch1_ctxv1
        seeds: [1]                 # optional, replaces the sweep's seeds
        eval_only: false           # true for trainers without training (ZeroshotCLIP)
        overrides: {...}           # every run of the method; train: {...} and test: {...} only those runs
        xd: {config: ..., overrides: ..., train: ..., test: ...}          # a layer for one protocol
        datasets: {dtd: {config: ..., overrides: ..., train: ..., test: ...}}  # a layer per training dataset

A run's settings are the method's, then its protocol layer's, then the layer of the dataset its model is trained
on (a cross-dataset test run takes ImageNet's layer, as ``scripts/bayesian_prompt/xd_test.sh``); the last layer
naming a ``config`` wins; ``KEY VALUE`` pairs are the protocol's, each layer's ``overrides`` then ``train`` or
``test`` pairs in that order, then the sweep's ``overrides``.

Runs and folders (as ``scripts/common.sh``), K shots, S seed, CFG the config's file name:

* base2new training: ``base2new/train_base/D/shots_K/TRAINER/CFG/seedS`` (``DATASET.NUM_SHOTS K
  DATASET.SUBSAMPLE_CLASSES base``); its test: ``base2new/test_SUB/...`` (``--model-dir`` the training folder,
  ``--load-epoch`` its last epoch, ``--eval-only``, ``DATASET.SUBSAMPLE_CLASSES SUB``); an ``eval_only`` method
  writes both folders with ``--eval-only`` alone;
* xd training on ImageNet: ``imagenet/TRAINER/CFG_Kshots/seedS``; its tests on every target:
  ``evaluation/TRAINER/CFG_Kshots/D/seedS``.
"""
from __future__ import annotations

import os.path as osp
from dataclasses import dataclass
from typing import Any, Optional

import yaml

PROTOCOLS = ("base2new", "xd")
XD_SOURCE = "imagenet"
_LAYER_KEYS = {"config", "overrides", "train", "test"}
_METHOD_KEYS = _LAYER_KEYS | {"trainer", "seeds", "eval_only", "datasets", *PROTOCOLS}
_SWEEP_KEYS = {"output", "data", "seeds", "shots", "protocols", "overrides", "methods"}


class SweepError(ValueError):
    """A sweep description that cannot be expanded; the message names the key and what to change."""


@dataclass(frozen=True)
class Run:
    """One ``train.py`` call. ``kind``: "train" (finished when a ``model.pth.tar-<epochs>`` exists), "test"
    (evaluates the model of ``needs`` at epoch ``epochs``) or "eval" (eval-only, no model); "test" and "eval"
    are finished when their log has a result."""

    output_dir: str  # relative to the repository root, as --output-dir
    kind: str
    trainer: str
    dataset: str
    seed: int
    args: tuple  # the train.py arguments, --root first
    epochs: Optional[int]
    needs: Optional[str] = None  # output_dir of the training run this one evaluates

    @property
    def key(self) -> str:
        return self.output_dir


def load_description(path: str) -> dict:
    if not osp.isfile(path):
        raise SweepError(f"Sweep description '{path}' does not exist (examples: configs/sweeps/*.yaml)")
    with open(path) as f:
        try:
            description = yaml.safe_load(f)
        except yaml.YAMLError as err:
            raise SweepError(f"Sweep description '{path}' is not valid yaml: {err}") from err
    if not isinstance(description, dict):
        raise SweepError(f"Sweep description '{path}' must be a mapping with a 'methods' list")
    return description


def _pairs(mapping: Any, where: str) -> list[str]:
    """``{KEY: VALUE}`` (or a flat ``[KEY, VALUE, ...]`` list) as train.py's trailing pairs."""
    if mapping is None:
        return []
    if isinstance(mapping, list):
        if len(mapping) % 2:
            raise SweepError(f"{where}: a list of overrides must hold KEY VALUE pairs; got an odd number")
        return [_text(v) for v in mapping]
    if not isinstance(mapping, dict):
        raise SweepError(f"{where} must map config keys to values, e.g. {{OPTIM.MAX_EPOCH: 10}}")
    return [item for key, value in mapping.items() for item in (str(key), _text(value))]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (list, tuple)):
        return str(list(value))
    return str(value)


def _check_keys(mapping: dict, allowed: set, where: str) -> None:
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise SweepError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _seeds(value: Any, where: str) -> list[int]:
    seeds = value if isinstance(value, list) else [value]
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise SweepError(f"{where} must be non-negative integers, got {value!r}")
    return seeds


def max_epoch(config_file: str, opts: list[str], repo: str) -> int:
    """The last epoch of a training run: the last OPTIM.MAX_EPOCH pair, else the trainer config's."""
    for key, value in reversed(list(zip(opts[::2], opts[1::2]))):
        if key == "OPTIM.MAX_EPOCH":
            return int(value)
    with open(osp.join(repo, config_file)) as f:
        config = yaml.safe_load(f) or {}
    epochs = (config.get("OPTIM") or {}).get("MAX_EPOCH")
    if epochs is None:
        raise SweepError(f"{config_file} sets no OPTIM.MAX_EPOCH: add it to the method's overrides")
    return int(epochs)


class _Method:
    """One ``methods`` entry: the layers that make a run's config and pairs."""

    def __init__(self, entry: dict, index: int, sweep_seeds: list[int], repo: str):
        where = f"methods[{index}]"
        if not isinstance(entry, dict) or "trainer" not in entry:
            raise SweepError(f"{where} must be a mapping with at least 'trainer' and 'config'")
        _check_keys(entry, _METHOD_KEYS, where)
        self.entry, self.where, self.repo = entry, where, repo
        self.trainer = str(entry["trainer"])
        self.eval_only = bool(entry.get("eval_only", False))
        self.seeds = _seeds(entry["seeds"], f"{where}.seeds") if "seeds" in entry else sweep_seeds
        for name in PROTOCOLS:
            _check_keys(entry.get(name) or {}, _LAYER_KEYS, f"{where}.{name}")
        for dataset, layer in (entry.get("datasets") or {}).items():
            _check_keys(layer or {}, _LAYER_KEYS, f"{where}.datasets.{dataset}")

    def layers(self, protocol: str, trained_on: str) -> list[tuple[str, dict]]:
        return [(self.where, self.entry), (f"{self.where}.{protocol}", self.entry.get(protocol) or {}),
                (f"{self.where}.datasets.{trained_on}", (self.entry.get("datasets") or {}).get(trained_on) or {})]

    def config(self, protocol: str, trained_on: str) -> str:
        name = None
        for _, layer in self.layers(protocol, trained_on):
            name = layer.get("config", name)
        if not name:
            raise SweepError(f"{self.where} ({self.trainer}) names no config")
        path = f"configs/trainers/{self.trainer}/{name}.yaml"
        if not osp.isfile(osp.join(self.repo, path)):
            raise SweepError(f"{self.where}: no trainer config {path} (see configs/trainers/{self.trainer}/)")
        return str(name)

    def opts(self, protocol: str, trained_on: str, kind: str) -> list[str]:
        opts = []
        for where, layer in self.layers(protocol, trained_on):
            opts += _pairs(layer.get("overrides"), f"{where}.overrides")
            opts += _pairs(layer.get("train" if kind == "train" else "test"), f"{where}.{kind}")
        return opts


def expand(description: dict, repo: str, data: Optional[str] = None) -> list[Run]:
    """Every run of the description, training runs before the runs that evaluate them."""
    _check_keys(description, _SWEEP_KEYS, "sweep")
    data = data or str(description.get("data") or "/path/to/datasets")
    shots = int(description.get("shots", 16))
    seeds = _seeds(description.get("seeds", [1, 2, 3]), "seeds")
    protocols = description.get("protocols") or {}
    _check_keys(protocols, set(PROTOCOLS), "protocols")
    if not protocols:
        raise SweepError(f"The sweep names no protocols: give protocols: with one of {list(PROTOCOLS)}")
    tail = _pairs(description.get("overrides"), "overrides")
    output = str(description.get("output", "output")).rstrip("/")
    methods = description.get("methods")
    if not isinstance(methods, list) or not methods:
        raise SweepError("The sweep names no methods: give methods: [{trainer: NAME, config: CFG}, ...]")

    def dataset_cfg(name: str) -> str:
        path = f"configs/datasets/{name}.yaml"
        if not osp.isfile(osp.join(repo, path)):
            raise SweepError(f"Unknown dataset '{name}': no {path} (see configs/datasets/)")
        return path

    def call(method, dataset, seed, config, out, extra, opts):
        return ("--root", data, "--seed", str(seed), "--trainer", method.trainer,
                "--dataset-config-file", dataset_cfg(dataset),
                "--config-file", f"configs/trainers/{method.trainer}/{config}.yaml",
                "--output-dir", out, *extra, *opts, *tail)

    runs: list[Run] = []
    for index, entry in enumerate(methods):
        method = _Method(entry, index, seeds, repo)
        trainer = method.trainer
        if "base2new" in protocols:
            settings = protocols["base2new"] or {}
            _check_keys(settings, {"datasets", "subsample"}, "protocols.base2new")
            sub = str(settings.get("subsample", "new"))
            for dataset in settings.get("datasets") or []:
                config = method.config("base2new", dataset)
                for seed in method.seeds:
                    run = f"{dataset}/shots_{shots}/{trainer}/{config}/seed{seed}"
                    train_dir, test_dir = f"{output}/base2new/train_base/{run}", f"{output}/base2new/test_{sub}/{run}"
                    if method.eval_only:
                        for out, classes in ((train_dir, "base"), (test_dir, sub)):
                            runs.append(Run(out, "eval", trainer, dataset, seed, call(
                                method, dataset, seed, config, out, ("--eval-only",),
                                ["DATASET.SUBSAMPLE_CLASSES", classes] + method.opts("base2new", dataset, "test")),
                                None))
                        continue
                    train_opts = ["DATASET.NUM_SHOTS", str(shots), "DATASET.SUBSAMPLE_CLASSES", "base",
                                  *method.opts("base2new", dataset, "train")]
                    epochs = max_epoch(f"configs/trainers/{trainer}/{config}.yaml", train_opts + tail, repo)
                    runs.append(Run(train_dir, "train", trainer, dataset, seed,
                                    call(method, dataset, seed, config, train_dir, (), train_opts), epochs))
                    test_opts = ["DATASET.NUM_SHOTS", str(shots), "DATASET.SUBSAMPLE_CLASSES", sub,
                                 *method.opts("base2new", dataset, "test")]
                    extra = ("--model-dir", train_dir, "--load-epoch", str(epochs), "--eval-only")
                    runs.append(Run(test_dir, "test", trainer, dataset, seed,
                                    call(method, dataset, seed, config, test_dir, extra, test_opts), epochs,
                                    needs=train_dir))
        if "xd" in protocols:
            settings = protocols["xd"] or {}
            _check_keys(settings, {"targets"}, "protocols.xd")
            config = method.config("xd", XD_SOURCE)
            for seed in method.seeds:
                model_dir = f"{output}/{XD_SOURCE}/{trainer}/{config}_{shots}shots/seed{seed}"
                epochs = None
                if not method.eval_only:
                    train_opts = ["DATASET.NUM_SHOTS", str(shots), *method.opts("xd", XD_SOURCE, "train")]
                    epochs = max_epoch(f"configs/trainers/{trainer}/{config}.yaml", train_opts + tail, repo)
                    runs.append(Run(model_dir, "train", trainer, XD_SOURCE, seed,
                                    call(method, XD_SOURCE, seed, config, model_dir, (), train_opts), epochs))
                for dataset in settings.get("targets") or []:
                    out = f"{output}/evaluation/{trainer}/{config}_{shots}shots/{dataset}/seed{seed}"
                    opts = method.opts("xd", XD_SOURCE, "test")
                    if method.eval_only:
                        runs.append(Run(out, "eval", trainer, dataset, seed,
                                        call(method, dataset, seed, config, out, ("--eval-only",), opts), None))
                    else:
                        extra = ("--model-dir", model_dir, "--load-epoch", str(epochs), "--eval-only")
                        runs.append(Run(out, "test", trainer, dataset, seed,
                                        call(method, dataset, seed, config, out, extra, opts), epochs,
                                        needs=model_dir))
    seen: dict[str, Run] = {}
    for run in runs:
        if run.key in seen and seen[run.key] != run:
            raise SweepError(f"Two different runs write {run.key}: give the methods different configs")
        seen.setdefault(run.key, run)
    return list(seen.values())


def output_root(description: dict) -> str:
    return str(description.get("output", "output")).rstrip("/")
