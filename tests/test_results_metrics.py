"""The results command on output trees whose runs wrote metrics JSON files (clipbayes.evaluation.report):
metric columns, the calibration table, and every figure of --plots, from a small synthetic tree."""
from __future__ import annotations

import csv
import io
import os

import pytest
import torch

from clipbayes.evaluation import report as R
from clipbayes.registry import list_methods
from clipbayes.results import plots, scan, summarise
from clipbayes.results.runs import evaluation_record
from test_configs import Sandbox, option, opts
from test_results import CFG, eval_log, markdown_cells, run_cli, train_log, write

TRAINERS = ("CoOp", "BayesianPrompt")
DATASETS = ("dtd", "eurosat")


def predictions(seed: int, sharpness: float, n: int = 400, classes: int = 5, mc_samples: int = 1):
    """Predictions whose labels are drawn from softmax(logits / sharpness): over-confident for sharpness > 1."""
    generator = torch.Generator().manual_seed(seed)
    logits = 3.0 * torch.randn(n, classes, generator=generator)
    labels = torch.multinomial((logits / sharpness).softmax(-1), 1, generator=generator).squeeze(1)
    return R.Predictions(torch.log_softmax(logits, -1), labels, mc_samples=mc_samples)


def write_run(root, rel, log_text_for, preds, temperature=True, log_name="log.txt", classes="all"):
    """A run folder: a log whose result block shows the predictions' accuracy, and the metrics JSON beside it."""
    held_out = R.Temperature.fit(predictions(1000, 2.0), "the val split") if temperature else None
    record = R.make_record(preds, "test", {"trainer": "x", "classes": classes}, held_out)
    folder = write(root, rel, log_text_for(round(record["metrics"]["accuracy"], 1)), name=log_name)
    recorder = R.EvaluationRecorder(os.path.join(folder, log_name))
    recorder.report(R.make_record(preds, "val", {}))  # an evaluation on val first: never used
    recorder.report(record)
    return record


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("out")
    records = {}
    for t, trainer in enumerate(TRAINERS):
        for d, dataset in enumerate(DATASETS):
            for seed in (1, 2):
                sharp = 1.5 + t + 0.3 * d
                base = f"base2new/train_base/{dataset}/shots_16/{trainer}/{CFG}/seed{seed}"
                new = f"base2new/test_new/{dataset}/shots_16/{trainer}/{CFG}/seed{seed}"
                records[(trainer, dataset, "base", seed)] = write_run(
                    root, base, lambda acc: train_log(acc, trainer, dataset, seed), predictions(seed + 10 * d, sharp))
                records[(trainer, dataset, "new", seed)] = write_run(
                    root, new, lambda acc: eval_log(acc, trainer, dataset, seed),
                    predictions(seed + 10 * d + 5, sharp + 1))
    for L in (1, 5, 20):  # an MC-samples sweep, as scripts/bayesian_prompt/mc_samples.sh lays it out
        for seed in (1, 2):
            write_run(root, f"mc_samples/dtd/shots_16/BayesianPrompt/{CFG}/L{L}/seed{seed}",
                      lambda acc: eval_log(acc, "BayesianPrompt", "dtd", seed),
                      predictions(seed + L, 4.0 / L ** 0.3, mc_samples=L), temperature=False, classes="new")
    return root, records


def test_record_matches_the_log_it_sits_beside(tmp_path):
    first = write_run(tmp_path, "seed1", lambda acc: eval_log(acc), predictions(1, 2.0))
    second = write_run(tmp_path, "seed1", lambda acc: eval_log(acc), predictions(2, 2.0),
                       log_name="log.txt-2026-02-01-00-00-00")
    run = scan(str(tmp_path))[0]
    assert run.result.log_file.endswith("log.txt-2026-02-01-00-00-00")  # the newest log ...
    assert run.record["metrics"] == second["metrics"] != first["metrics"]  # ... and its own JSON, test split
    assert evaluation_record(str(tmp_path / "seed1" / "log.txt"))[0]["metrics"] == first["metrics"]
    (tmp_path / "seed1" / "metrics.json").write_text("{not json")
    record, problem = evaluation_record(str(tmp_path / "seed1" / "log.txt"))
    assert record is None and problem.startswith("metrics.json: ")


def test_metric_columns(tree):
    root, records = tree
    code, out, err = run_cli(root, "--protocol", "base2new", "--metrics", "accuracy,ece,nll_ts",
                             "--format", "markdown", "--trainer", "CoOp")
    assert code == 0, err
    cells = markdown_cells(out)
    assert cells[0] == ["Dataset", "CoOp Accuracy Base", "CoOp Accuracy New", "CoOp Accuracy HM", "CoOp ECE Base",
                        "CoOp ECE New", "CoOp NLL (TS) Base", "CoOp NLL (TS) New"]
    dtd = cells[1]
    eces = [records[("CoOp", "dtd", "base", s)]["metrics"]["ece"] for s in (1, 2)]
    mean, std = sum(eces) / 2, abs(eces[0] - eces[1]) / 2
    assert dtd[4] == f"{mean:.2f} ± {std:.2f}"
    nll_ts = [records[("CoOp", "dtd", "new", s)]["temperature_scaled"]["metrics"]["nll"] for s in (1, 2)]
    assert dtd[7].startswith(f"{sum(nll_ts) / 2:.2f} ± ")
    assert "accuracy (%), ece (%), nll_ts (nats)" in out.splitlines()[0]

    code, out, _ = run_cli(root, "--protocol", "base2new", "--metrics", "ece", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["metric"] for r in rows} == {"ece"} and not any(r["quantity"] == "hm" for r in rows)
    code, _, err = run_cli(root, "--metrics", "ecee")
    assert code == 2 and "unknown metric ecee" in err


def test_calibration_table(tree):
    root, records = tree
    code, out, err = run_cli(root, "--protocol", "base2new", "--calibration", "--format", "markdown")
    assert code == 0, err
    calibration = out[out.index("### Calibration, base-to-new"):]
    cells = markdown_cells(calibration)
    assert cells[0] == ["Method", "Metric", "DTD", "EuroSAT", "Average"]
    rows = {(r[0], r[1]): r[2:] for r in cells[1:]}
    assert [k for k in rows if k[0] == "CoOp"] == [("CoOp", "ECE base"), ("CoOp", "ECE new"), ("CoOp", "NLL base"),
                                                 ("CoOp", "NLL new"), ("CoOp", "ECE (TS) base"),
                                                 ("CoOp", "ECE (TS) new"), ("CoOp", "NLL (TS) base"),
                                                 ("CoOp", "NLL (TS) new")]
    new = [[records[("BayesianPrompt", d, "new", s)]["metrics"]["nll"] for s in (1, 2)] for d in DATASETS]
    assert rows[("BayesianPrompt", "NLL new")][2] == f"{(sum(new[0]) / 2 + sum(new[1]) / 2) / 2:.2f}"
    # Method order follows the registry's method list, not the folders' order.
    assert [r[0] for r in cells[1:]].index("CoOp") < [r[0] for r in cells[1:]].index("BayesianPrompt")


def test_every_figure_is_written(tree, tmp_path):
    root, _ = tree
    folder = tmp_path / "figures"
    code, out, err = run_cli(root, "--plots", folder)
    assert code == 0, err
    names = sorted(os.listdir(folder))
    expected = []
    for protocol, datasets in (("base2new", DATASETS), ("mc_samples", ("dtd",))):
        for dataset in datasets + ("pooled",):
            expected += [f"reliability_{protocol}_{dataset}", f"risk_coverage_{protocol}_{dataset}"]
        expected.append(f"accuracy_{protocol}")
    expected.append("mc_samples")
    assert names == sorted(f"{n}.{e}" for n in expected for e in ("png", "pdf"))
    for name in names:
        with open(folder / name, "rb") as handle:
            head = handle.read(8)
        assert head.startswith(b"\x89PNG") if name.endswith(".png") else head.startswith(b"%PDF")
    assert f"{len(names)} figures written to {folder}" in err


def test_mc_sweep_is_found_and_pooled_bins_give_the_pooled_ece(tree):
    root, records = tree
    runs = scan(str(root))
    code, out, _ = run_cli(root, "--protocol", "mc_samples", "--format", "markdown")
    assert markdown_cells(out)[0] == ["Dataset", "BayesianPrompt (L1)", "BayesianPrompt (L5)", "BayesianPrompt (L20)"]
    sweeps = plots.mc_sweeps(runs)
    assert list(sweeps) == [("mc_samples", "BayesianPrompt", CFG, "dtd", "new")]
    assert sorted(next(iter(sweeps.values()))) == [1, 5, 20]
    one = [records[("CoOp", "dtd", "base", s)] for s in (1, 2)]
    assert plots.bins_ece(plots.pooled_bins(one[:1])) == pytest.approx(one[0]["metrics"]["ece"])
    # Pooled bins are the bins of the pooled predictions: their ECE is that of the two seeds' images together.
    both = R.Predictions(torch.cat([predictions(1, 1.5).log_probs, predictions(2, 1.5).log_probs]),
                         torch.cat([predictions(1, 1.5).labels, predictions(2, 1.5).labels]))
    assert plots.bins_ece(plots.pooled_bins(one)) == pytest.approx(both.metrics()["ece"])


def test_runs_without_json_are_reported(tmp_path):
    write(tmp_path, f"base2new/train_base/dtd/shots_16/CoOp/{CFG}/seed1", train_log(80.0))
    code, out, err = run_cli(tmp_path, "--metrics", "accuracy,ece")
    assert code == 0 and "1 runs have no metrics JSON beside their log" in err
    code, out, err = run_cli(tmp_path, "--metrics", "ece")
    assert code == 1 and "none of its 1 selected runs has a complete test result with '* ece:'" in err


def test_mc_samples_script_lays_out_the_sweep(tmp_path):
    box = Sandbox(tmp_path)
    rc, out = box.run("bayesian_prompt/mc_samples.sh", "dtd", "1", MC_SAMPLES="1 5")
    assert rc == 1 and "run scripts/bayesian_prompt/base2new_train.sh dtd 1 first" in out
    rc, out = box.run("bayesian_prompt/base2new_train.sh", "dtd", "1")
    assert rc == 0, out
    rc, out = box.run("bayesian_prompt/mc_samples.sh", "dtd", "1", MC_SAMPLES="1 5")
    assert rc == 0, out
    runs = box.train_calls()[1:]
    assert [option(a, "--output-dir") for a in runs] == [
        f"output/mc_samples/dtd/shots_16/BayesianPrompt/{CFG}/L{L}/seed1" for L in (1, 5)]
    assert all("--eval-only" in a for a in runs)
    assert option(runs[0], "--model-dir") == f"output/base2new/train_base/dtd/shots_16/BayesianPrompt/{CFG}/seed1"
    assert [opts(a)["TRAINER.BAYESIAN_PROMPT.N_SAMPLES_TEST"] for a in runs] == ["1", "5"]
    assert {opts(a)["DATASET.SUBSAMPLE_CLASSES"] for a in runs} == {"new"}
    rc, out = box.run("bayesian_prompt/mc_samples.sh", "dtd", "1", MC_SAMPLES="1 5")
    assert rc == 0 and out.count("Skip this job") == 2 and len(box.train_calls()) == 3
    rc, out = box.run("bayesian_prompt/mc_samples.sh", "dtd", "1", MC_SAMPLES="1 x")
    assert rc == 2 and "MC_SAMPLES must be positive integers, got 'x'" in out


def test_method_order_comes_from_the_registry(tmp_path):
    trainers = ["LogitPrior", "MyOwnTrainer", "ZeroshotCLIP", "CoCoOp", "BayesianPrompt"]
    for trainer in trainers:
        write(tmp_path, f"dtd/{trainer}/vit_b16_16shots/seed1", train_log(50.0, trainer))
    order = [m[0] for m in summarise(scan(str(tmp_path)))["fewshot"].methods]
    registered = [m.name for m in list_methods() if m.name in trainers]
    assert order == registered + ["MyOwnTrainer"]  # unregistered trainers last
