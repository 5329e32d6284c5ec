"""End to end through train.py on the tiny CLIP and the synthetic demo data: train -> checkpoint -> eval-only ->
results table, resume after an interruption, and the documented behaviour on bad input."""
from __future__ import annotations

import csv
import io
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest

from clipbayes.evaluation.report import load_predictions, read_metrics_file
from support import ROOT, requires_dassl

pytestmark = requires_dassl

FAST = ["OPTIM.MAX_EPOCH", "2", "DATALOADER.TRAIN_X.BATCH_SIZE", "16", "TRAIN.PRINT_FREQ", "2"]
# What a method needs to fit FAST's two epochs: ReBaPL keeps samples at the end of its cycles (5 epochs by default).
FITS_FAST = {"ReBaPL": ["TRAINER.REBAPL.CYCLE_EPOCHS", "1", "TRAINER.REBAPL.REFERENCE_IMAGES", "16"]}


def _registered() -> list[str]:
    from clipbayes.compat import dassl_available
    if not dassl_available():
        return []
    from clipbayes.registry import method_names
    return sorted(method_names())


TRAINERS = _registered()  # every registered method, present and future, goes through train.py here


def test_every_registered_trainer_is_tested_end_to_end():
    assert {"BayesianPrompt", "CoCoOp", "CoOp", "LogitPrior", "ZeroshotCLIP"} <= set(TRAINERS)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return {**os.environ, "CLIPBAYES_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}


def train(env, *args, check=True):
    """Run train.py. A command without a dataset (which would be the toy-world demo, tested in
    tests/test_toyworld.py) gets the seconds-long DemoShapes pipeline on a random tiny CLIP instead."""
    from clipbayes.demo import tiny_pipeline_options

    if not any(flag in args for flag in ("--config-file", "--dataset-config-file", "DATASET.NAME")):
        first_key = next((i for i, a in enumerate(args) if re.match(r"^[A-Z][A-Z_]*\.[A-Z]", a)), len(args))
        args = (*args[:first_key], *tiny_pipeline_options(), *args[first_key:])  # the test's own keys win
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"train.py {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def accuracy(text: str) -> float:
    return float(re.findall(r"\* accuracy: ([\d.]+)%", text)[-1])


def run_dir(tmp_path, trainer, seed):
    return str(tmp_path / "DemoShapes" / trainer / "tiny_16shots" / f"seed{seed}")


def check_metrics_report(out, log_text, eval_only=False):
    """The metrics JSON beside the log: its accuracy is the log's; the log keeps CoOp's parse rule working (the raw
    ECE line is the one CoOp's regex reads); eval-only runs reuse the training run's temperature and, with
    TEST.SAVE_PREDICTIONS, save predictions that give the same accuracy."""
    record = [r for r in read_metrics_file(osp.join(out, "metrics.json")) if r["split"] == "test"][-1]
    assert f"{record['metrics']['accuracy']:.1f}" == f"{accuracy(log_text):.1f}"
    assert log_text.index("=> result") < log_text.index("=> calibration and selective prediction")
    ece = re.findall(r"\* ece: ([\.\deE+-]+)%", log_text[log_text.index("=> result"):])
    assert ece and float(ece[-1]) == pytest.approx(record["metrics"]["ece"], abs=0.006)
    if record["mc_samples"] > 1:
        assert record["metrics"]["mutual_information"] >= 0
    if eval_only:
        assert record["temperature"] is None or "of the training run in" in record["temperature"]["fitted_on"]
        saved = load_predictions(osp.join(out, "predictions.npz"))
        assert saved["probs"].shape == (record["num_images"], record["num_classes"])
        assert len(saved["image_paths"]) == record["num_images"]
        assert f"{100 * (saved['predicted'] == saved['labels']).mean():.1f}" == f"{accuracy(log_text):.1f}"
        rows = range(len(saved["labels"]))  # the predicted class has the largest float16 probability (ties allowed)
        assert (saved["probs"][rows, saved["predicted"]] == saved["probs"].max(1)).all()


def check_feature_cache(env, tmp_path, trainer, seed, model_dir, expected, extra=()):
    """Evaluation on cached image features gives the same number; the second run reads the cache."""
    cache = str(tmp_path / "features")
    outputs = []
    for run in ("first", "second"):
        outputs.append(train(env, "--trainer", trainer, "--seed", str(seed), "--output-dir", str(tmp_path / run),
                             "--eval-only", "--model-dir", model_dir, "--load-epoch", "2", *FAST, *extra,
                             "MODEL.CLIP.IMAGE_FEATURE_CACHE", cache).stdout)
        shutil.rmtree(tmp_path / run)
    assert "Image features stored in the cache" in outputs[0]
    assert "Image features read from the cache" in outputs[1]
    assert accuracy(outputs[0]) == accuracy(outputs[1]) == expected
    assert len(os.listdir(cache)) == 1


@pytest.mark.parametrize("trainer", TRAINERS)
def test_train_checkpoint_eval_only_and_results(tmp_path, env, trainer):
    accuracies = []
    seeds = (1, 2) if trainer == "CoOp" else (1,)  # two seeds once, to check mean over seeds
    for seed in seeds:
        out = run_dir(tmp_path, trainer, seed)
        fast = [*FAST, *FITS_FAST.get(trainer, [])]
        trained = train(env, "--trainer", trainer, "--seed", str(seed), "--output-dir", out, *fast)
        assert "=> result" in trained.stdout
        accuracies.append(accuracy(trained.stdout))
        log = open(osp.join(out, "log.txt")).read()
        assert "* accuracy:" in log
        check_metrics_report(out, log)
        if osp.isdir(osp.join(out, "prompt_learner")):
            assert "Finish training" in log
            assert osp.isfile(osp.join(out, "prompt_learner", "model.pth.tar-2"))
            evaluated = train(env, "--trainer", trainer, "--seed", str(seed), "--output-dir", out + "_eval",
                              "--eval-only", "--model-dir", out, "--load-epoch", "2", *fast,
                              "TEST.SAVE_PREDICTIONS", "True")
            assert "Load " in evaluated.stdout and "val_result=none" in evaluated.stdout
            assert accuracy(evaluated.stdout) == accuracies[-1]  # same weights, same test set, same number
            check_metrics_report(out + "_eval", open(osp.join(out + "_eval", "log.txt")).read(), eval_only=True)
            shutil.rmtree(out + "_eval")
            if trainer in ("CoCoOp", "BayesianPrompt"):  # image-conditioned prompts; MC prediction
                check_feature_cache(env, tmp_path, trainer, seed, out, accuracies[-1])
            if trainer == "MaPLe":  # image features of learned vision prompts: never taken from the cache
                cache = str(tmp_path / "features")
                uncached = train(env, "--trainer", trainer, "--seed", str(seed), "--output-dir", out + "_cache",
                                 "--eval-only", "--model-dir", out, "--load-epoch", "2", *FAST,
                                 "MODEL.CLIP.IMAGE_FEATURE_CACHE", cache)
                assert "IMAGE_FEATURE_CACHE is not used" in uncached.stdout
                assert accuracy(uncached.stdout) == accuracies[-1]
                assert not osp.isdir(cache) or not os.listdir(cache)
                shutil.rmtree(out + "_cache")
        else:
            assert trainer == "ZeroshotCLIP"
    table = subprocess.run([sys.executable, "-m", "clipbayes.results", str(tmp_path), "--format", "csv"],
                           cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    rows = [row for row in csv.DictReader(io.StringIO(table)) if row["dataset"] == "DemoShapes"]
    assert rows, table
    mean = sum(accuracies) / len(accuracies)
    assert any(abs(float(row["mean"]) - mean) < 0.01 for row in rows if row.get("mean")), (table, accuracies)


def test_posterior_draws_once_per_evaluation_reproduce_with_eval_only_and_cached_features(tmp_path, env):
    out, draws = run_dir(tmp_path, "BayesianPrompt", 1), ("TEST.MC_DRAWS", "per_evaluation")
    trained = accuracy(train(env, "--trainer", "BayesianPrompt", "--seed", "1", "--output-dir", out, *FAST,
                             *draws).stdout)
    check_feature_cache(env, tmp_path, "BayesianPrompt", 1, out, trained, extra=draws)
    refused = train(env, "--trainer", "BayesianPrompt", "--output-dir", str(tmp_path / "bad"), *FAST,
                    "TEST.MC_DRAWS", "per_image", check=False)
    assert refused.returncode != 0 and "TEST.MC_DRAWS must be one of" in refused.stderr


def test_seed_zero_is_a_seed(tmp_path, env):
    first = train(env, "--trainer", "CoOp", "--seed", "0", "--output-dir", str(tmp_path / "a"), *FAST)
    second = train(env, "--trainer", "CoOp", "--seed", "0", "--output-dir", str(tmp_path / "b"), *FAST)
    assert "Setting fixed seed: 0" in first.stdout
    assert "DemoShapes" in first.stdout
    losses = [re.findall(r"loss ([\d.]+)", p.stdout) for p in (first, second)]
    assert losses[0] and losses[0] == losses[1]


def test_interrupted_run_resumes_and_finished_run_is_refused(tmp_path, env):
    out = str(tmp_path / "run")
    args = ["--trainer", "CoOp", "--seed", "1", "--output-dir", out, "OPTIM.MAX_EPOCH", "3",
            "TRAIN.CHECKPOINT_FREQ", "1", "TRAIN.PRINT_FREQ", "2"]
    train(env, *args)
    folder = osp.join(out, "prompt_learner")
    # The state a crash during epoch 2 leaves: epoch-1 checkpoint, pointer at it.
    for name in ("model.pth.tar-2", "model.pth.tar-3"):
        os.remove(osp.join(folder, name))
    with open(osp.join(folder, "checkpoint"), "w") as f:
        f.write("model.pth.tar-1\n")
    resumed = train(env, *args)
    assert "holds an unfinished run (1/3 epochs): resuming it" in resumed.stdout
    assert "(epoch 1)" in resumed.stdout
    assert "epoch [1/3]" not in resumed.stdout and "epoch [3/3]" in resumed.stdout
    assert osp.isfile(osp.join(folder, "model.pth.tar-3"))
    assert osp.isfile(osp.join(out, "log.txt")) and len([f for f in os.listdir(out) if f.startswith("log.txt")]) == 2

    before = {name: open(osp.join(folder, name), "rb").read() for name in os.listdir(folder)}
    refused = train(env, *args, check=False)
    assert refused.returncode == 2
    assert "already holds a finished run (3/3 epochs)" in refused.stderr and "--eval-only" in refused.stderr
    assert {name: open(osp.join(folder, name), "rb").read() for name in os.listdir(folder)} == before


def test_bad_command_lines_get_clear_errors(tmp_path, env):
    cases = [
        (["--trainer", "NoSuchTrainer"], f"Unknown trainer 'NoSuchTrainer'. Registered trainers: {', '.join(TRAINERS)} (Dassl's own: "),
        (["--trainer", "CoOp", "OPTIM.NO_SUCH_KEY", "1"], "unknown config key 'OPTIM.NO_SUCH_KEY'"),
        (["--trainer", "CoOp", "OPTIM.LR"], "KEY VALUE pairs"),
        (["--trainer", "CoOp", "--config-file", "missing.yaml"], "trainer config file 'missing.yaml' does not exist"),
    ]
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("TRAINER:\n  COOP:\n    NCTX: 4\n")
    cases.append((["--trainer", "CoOp", "--config-file", str(bad_yaml)],
                  f"'{bad_yaml}': unknown config key 'TRAINER.COOP.NCTX'"))
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cases.append((["--trainer", "CoOp", "--output-dir", str(blocker / "out")], "is not writable"))
    for args, message in cases:
        proc = train(env, *args, check=False)
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        assert message in proc.stderr, (args, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr


def test_nan_loss_stops_with_a_clear_error_and_keeps_checkpoints(tmp_path, env):
    out = str(tmp_path / "nan")
    proc = train(env, "--trainer", "CoOp", "--output-dir", out, "OPTIM.MAX_EPOCH", "2", "OPTIM.WARMUP_EPOCH", "0",
                 "OPTIM.LR", "1e38", "OPTIM.MOMENTUM", "0.0", check=False)
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "The training loss is nan" in proc.stderr or "The training loss is inf" in proc.stderr
    assert not osp.exists(osp.join(out, "prompt_learner", "model.pth.tar-2"))


def test_missing_data_root_names_the_missing_file(tmp_path, env):
    proc = train(env, "--trainer", "CoOp", "--root", str(tmp_path / "nodata"),
                 "--dataset-config-file", "configs/datasets/oxford_pets.yaml",
                 "--config-file", "configs/trainers/CoOp/tiny.yaml", "--output-dir", str(tmp_path / "o"), check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "OxfordPets" in proc.stderr and str(tmp_path / "nodata") in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("base", ["CoCoOp", "BayesianPrompt", "MaPLe"])
def test_logit_prior_over_other_bases(tmp_path, env, base):
    out = str(tmp_path / "lp")
    trained = train(env, "--trainer", "LogitPrior", "--seed", "1", "--output-dir", out,
                    "TRAINER.LOGIT_PRIOR.BASE", base, "TRAINER.BAYESIAN_PROMPT.N_SAMPLES_TRAIN", "3", *FAST)
    assert f"LogitPrior around {base}" in trained.stdout and "reg" in trained.stdout
    evaluated = train(env, "--trainer", "LogitPrior", "--seed", "1", "--output-dir", out + "_eval", "--eval-only",
                      "--model-dir", out, "--load-epoch", "2", "TRAINER.LOGIT_PRIOR.BASE", base,
                      "TRAINER.BAYESIAN_PROMPT.N_SAMPLES_TRAIN", "3", *FAST)
    assert accuracy(evaluated.stdout) == accuracy(trained.stdout)  # MC prediction is seeded: same weights, same result


# One run per dataset family on a miniature copy of its real layout: split-json readers (OxfordPets), folder
# readers with annotation files (FGVCAircraft), ImageNet's folders + classnames.txt, and few-shot + base/new.
@pytest.mark.parametrize("dataset,yaml", [("OxfordPets", "oxford_pets"), ("FGVCAircraft", "fgvc_aircraft"),
                                          ("ImageNet", "imagenet")])
def test_dataset_families_train_base_and_test_new(tmp_path, env, dataset, yaml):
    from tests.datasets.miniature import build_miniature

    root = tmp_path / "data"
    build_miniature(str(root), dataset)
    flags = ["--root", str(root), "--seed", "1", "--dataset-config-file", f"configs/datasets/{yaml}.yaml",
             "--config-file", "configs/trainers/CoOp/tiny.yaml"]
    opts = ["TRAINER.COOP.N_CTX", "4", "DATASET.NUM_SHOTS", "2", "OPTIM.MAX_EPOCH", "1"]
    out = str(tmp_path / "base")
    trained = train(env, "--trainer", "CoOp", "--output-dir", out, *flags, *opts,
                    "DATASET.SUBSAMPLE_CLASSES", "base")
    assert "=> result" in trained.stdout
    tested = train(env, "--trainer", "CoOp", "--output-dir", str(tmp_path / "new"), *flags, "--eval-only",
                   "--model-dir", out, "--load-epoch", "1", *opts, "DATASET.SUBSAMPLE_CLASSES", "new")
    assert "=> result" in tested.stdout


def test_corrupt_image_names_the_file(tmp_path, env):
    from clipbayes.demo import ensure_demo_dataset

    cache = tmp_path / "cache"
    folder = ensure_demo_dataset(str(cache))
    broken = osp.join(folder, "images", "red_square", "test_000.png")
    with open(broken, "wb") as f:
        f.write(b"not an image")
    proc = train({**env, "CLIPBAYES_CACHE": str(cache)}, "--trainer", "ZeroshotCLIP", "--output-dir",
                 str(tmp_path / "out"), check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "corrupt or unreadable image" in proc.stderr and broken in proc.stderr
    assert "clipbayes.datasets.check" in proc.stderr


def test_own_image_folder_from_a_yaml_alone(tmp_path, env):
    from PIL import Image

    for label, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        folder = tmp_path / "data" / "my_dataset" / f"class_{label}"
        folder.mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (16, 16), tuple(min(255, c + 5 * i) for c in colour)).save(folder / f"{i}.png")
    trained = train(env, "--trainer", "CoOp", "--root", str(tmp_path / "data"), "--seed", "1",
                    "--dataset-config-file", "configs/datasets/image_folder.yaml",
                    "--config-file", "configs/trainers/CoOp/tiny.yaml", "--output-dir", str(tmp_path / "out"),
                    "TRAINER.COOP.N_CTX", "4", "OPTIM.MAX_EPOCH", "1")
    assert "=> result" in trained.stdout
    assert "ImageFolderDataset" in trained.stdout
