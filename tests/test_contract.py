"""The method contract and the registry: every registered method (present and future) satisfies the contract,
derives its config from one declaration, and ships configs, a doc, scripts and end-to-end coverage."""
from __future__ import annotations

import ast
import glob
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from support import ROOT, requires_dassl

pytestmark = requires_dassl


def _methods():
    from clipbayes.compat import dassl_available
    if not dassl_available():
        return []
    from clipbayes.registry import list_methods
    return list_methods()


METHODS = _methods()
NAMES = [m.name for m in METHODS]


def _cfg():
    from clipbayes.config import default_cfg
    cfg = default_cfg()
    cfg.DATASET.NAME = "OxfordPets"
    for method in METHODS:  # small models: few samples, short contexts
        node = cfg.TRAINER[method.node]
        for key, value in (("N_CTX", 4), ("N_SAMPLES_TRAIN", 2), ("N_SAMPLES_TEST", 3)):
            if key in node:
                node[key] = value
    return cfg


@pytest.mark.parametrize("name", NAMES)
def test_model_satisfies_the_contract(golden_clip, golden_inputs, name):
    from clipbayes.modeling.contract import LossOutput, MethodModel, TrainOutput
    from clipbayes.registry import get_method

    method = get_method(name)
    torch.manual_seed(0)
    model = method.trainer.make_prompt_model(_cfg(), golden_clip, golden_inputs["classnames"])
    assert isinstance(model, MethodModel)
    images, labels = golden_inputs["images"], golden_inputs["labels"]
    batch, n_classes = images.shape[0], len(golden_inputs["classnames"])
    assert model.num_classes == n_classes
    if method.trainable:
        out = model.train_logits(images, labels)
        assert isinstance(out, TrainOutput) and out.logits.shape[-2:] == (batch, n_classes)
        assert out.image_features.shape[0] == out.logits.shape[-2]
        loss = model.train_loss(images, labels)
        assert isinstance(loss, LossOutput) and loss.loss.dim() == 0
        assert all(type(v) is float for v in loss.parts.values())
    else:
        assert model.learner is None


@pytest.mark.parametrize("name", NAMES)
def test_softmax_of_scores_is_the_predictive_distribution(golden_clip, golden_inputs, name):
    """softmax(predict_features) = softmax of (B, C) logits, or the mean of the L softmaxes of (L, B, C) ones."""
    from clipbayes.registry import get_method

    torch.manual_seed(0)
    model = get_method(name).trainer.make_prompt_model(_cfg(), golden_clip, golden_inputs["classnames"])
    with torch.no_grad():
        features = model.encode_images(golden_inputs["images"])
        torch.manual_seed(7)
        logits = model.predict_logits(features)
        torch.manual_seed(7)
        scores = model.predict_features(features)
    samples = logits if logits.dim() == 3 else logits.unsqueeze(0)
    expected = samples.float().softmax(-1).mean(0)
    torch.testing.assert_close(scores.softmax(-1), expected, rtol=1e-5, atol=1e-6)
    assert scores.shape == expected.shape


@pytest.mark.parametrize("name", NAMES)
def test_method_ships_configs_doc_scripts_and_e2e(name):
    from clipbayes.registry import documented_table, get_method, key_table

    import test_train_e2e

    method = get_method(name)
    assert osp.isfile(osp.join(ROOT, method.config_dir, "tiny.yaml")), \
        f"{name}: add {method.config_dir}/tiny.yaml (a seconds-long CPU run) beside its paper configs"
    assert osp.isfile(osp.join(ROOT, method.doc)), f"{name}: add its doc {method.doc}"
    assert glob.glob(osp.join(ROOT, method.scripts_dir, "*.sh")), f"{name}: add scripts under {method.scripts_dir}/"
    assert name in test_train_e2e.TRAINERS
    assert documented_table(method) == key_table(method), \
        f"the key table of {method.doc} is out of date: run python -m clipbayes.registry --write-docs"


@pytest.mark.parametrize("name", NAMES)
def test_every_key_default_passes_its_own_check(name):
    from clipbayes.registry import get_method

    method = get_method(name)
    for key_name, key in method.keys.items():
        key.validate(f"TRAINER.{method.node}.{key_name}", key.default)
        assert key.meaning, f"TRAINER.{method.node}.{key_name} has no meaning"


def test_registration_refuses_a_second_trainer_name_or_node():
    from clipbayes.engine.trainer import PromptTrainer
    from clipbayes.registry import register_method

    with pytest.raises(KeyError, match="registered twice"):
        register_method(node="COOP_AGAIN", keys={}, build=None)(type("CoOp", (PromptTrainer,), {}))
    with pytest.raises(KeyError, match="TRAINER.COOP is declared by two methods"):
        register_method(node="COOP", keys={}, build=None)(type("CoOpCopy", (PromptTrainer,), {}))


def test_method_files_import_no_dassl_and_no_other_method():
    """Dassl is imported (with the work-arounds) in one place; shared helpers live outside the method files."""
    for path in glob.glob(osp.join(ROOT, "clipbayes", "trainers", "*.py")):
        tree = ast.parse(open(path).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                assert not module.startswith("dassl"), f"{path} imports {module}"
                assert not module.startswith("clipbayes.trainers"), f"{path} imports another method: {module}"
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("dassl") for a in node.names), path


def test_config_module_does_not_import_the_trainers():
    code = "import sys, clipbayes.config; assert 'clipbayes.trainers' not in sys.modules, 'circular'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# --- one-line errors for impossible values (train.py) ----------------------------------------------------------
def _train(*args, env=None):
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("opts,message", [
    (["TRAINER.BAYESIAN_PROMPT.N_SAMPLES_TRAIN", "0"],
     "TRAINER.BAYESIAN_PROMPT.N_SAMPLES_TRAIN must be an integer >= 1; got 0"),
    (["TRAINER.BAYESIAN_PROMPT.POSTERIOR", "amortised"],
     "TRAINER.BAYESIAN_PROMPT.POSTERIOR must be one of unconditional | conditional; got 'amortised'"),
    (["TRAINER.LOGIT_PRIOR.BASE", "MMRL"], "TRAINER.LOGIT_PRIOR.BASE must be one of"),
    (["TRAINER.COOP.PREC", "fp8"], "TRAINER.COOP.PREC must be one of fp16 | fp32 | amp | bf16; got 'fp8'"),
    (["MODEL.BACKBONE.NAME", "ViT-X/99"], "Unknown CLIP backbone 'ViT-X/99'"),
])
def test_bad_values_end_with_one_line_and_exit_code_2(tmp_path, opts, message):
    proc = _train("--trainer", "BayesianPrompt", "--output-dir", str(tmp_path / "out"), *opts,
                  env={"CLIPBAYES_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and message in proc.stderr


def test_debug_variable_shows_the_traceback(tmp_path):
    proc = _train("--trainer", "CoOp", "--output-dir", str(tmp_path / "out"), "TRAINER.COOP.N_CTX", "0",
                  env={"CLIPBAYES_DEBUG": "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "ConfigError" in proc.stderr


def test_the_documented_smallest_method_works(tmp_path):
    """The example of docs/adding_a_method.md registers, validates its key, builds and trains (in a subprocess, so
    the example never joins this session's registry)."""
    doc = open(osp.join(ROOT, "docs", "adding_a_method.md")).read()
    example = doc.split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "example.py"
    script.write_text(example + '''
import torch
from clipbayes.config import ConfigError, check_cfg, default_cfg
from clipbayes.modeling.clip_loader import build_tiny_clip
from clipbayes.registry import method_names

assert "MyPrompt" in method_names()
cfg = default_cfg()
cfg.TRAINER.MY_PROMPT.PREC = "fp32"
model = MyPrompt.make_prompt_model(cfg, build_tiny_clip(), ["cat", "dog", "bird"])
loss, scores, parts = model.train_loss(torch.randn(2, 3, 224, 224), torch.tensor([0, 2]))
loss.backward()
assert scores.shape == (2, 3) and set(parts) == {"nll", "penalty"}
assert model.learner.ctx.grad is not None
cfg.TRAINER.MY_PROMPT.PENALTY = -1.0
try:
    check_cfg(cfg)
except ConfigError as err:
    assert str(err) == "TRAINER.MY_PROMPT.PENALTY must be a number >= 0; got -1.0", str(err)
else:
    raise AssertionError("a negative penalty was accepted")
print("example ok")
''')
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 0 and "example ok" in proc.stdout, proc.stderr[-3000:]
