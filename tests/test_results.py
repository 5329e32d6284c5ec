"""Tests of the results command (clipbayes.results) on synthetic output trees with Dassl-worded logs."""
from __future__ import annotations

import csv
import io
import math
import os
import re
import subprocess
import sys
from collections import OrderedDict

import pytest

from clipbayes import published as pub
from clipbayes import results

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---------------------------------------------------------------------------------------------------------------
# Synthetic logs, worded as Dassl v0.6.3 + CoOp's train.py print them (print_args, SimpleTrainer.before_train /
# after_train / test, Classification.evaluate).


def _header(trainer, dataset, seed, output_dir, eval_only=False, model_dir=""):
    return [
        f"Setting fixed seed: {seed}",
        "***************",
        "** Arguments **",
        "***************",
        "backbone: ",
        f"config_file: configs/trainers/{trainer}/vit_b16.yaml",
        f"dataset_config_file: configs/datasets/{dataset}.yaml",
        f"eval_only: {eval_only}",
        "head: ",
        f"load_epoch: {10 if eval_only else None}",
        f"model_dir: {model_dir}",
        "no_train: False",
        "opts: ['DATASET.NUM_SHOTS', '16']",
        f"output_dir: {output_dir}",
        "resume: ",
        "root: /data",
        f"seed: {seed}",
        "source_domains: None",
        "target_domains: None",
        f"trainer: {trainer}",
        "transforms: None",
        "************",
        "** Config **",
        "************",
        "DATASET:",
        "  NAME: DescribableTextures",
        "  NUM_SHOTS: 16",
        f"SEED: {seed}",
        "TRAINER:",
        f"  NAME: {trainer}",
        "Collecting env info ...",
        "** System info **",
        "PyTorch version: 2.14.1",
        f"Loading trainer: {trainer}",
        "Loading dataset: DescribableTextures",
        "Reading split from /data/dtd/split_zhou_DescribableTextures.json",
        "---------  -------------------",
        "Dataset    DescribableTextures",
        "# classes  47",
        "# train_x  752",
        "# test     1,692",
        "---------  -------------------",
        "Loading CLIP (backbone: ViT-B/16)",
        "Building custom CLIP",
        "Loading evaluator: Classification",
    ]


def result_block(acc, total=1000, macro_f1=None, per_class=False):
    """Exactly what Dassl's Classification.evaluate prints (values rounded to one decimal, as Dassl does)."""
    correct = round(total * acc / 100)
    macro_f1 = acc - 0.5 if macro_f1 is None else macro_f1
    lines = [
        "=> result",
        f"* total: {total:,}",
        f"* correct: {correct:,}",
        f"* accuracy: {acc:.1f}%",
        f"* error: {100.0 - acc:.1f}%",
        f"* macro_f1: {macro_f1:.1f}%",
    ]
    if per_class:
        lines += ["=> per-class result", "* class: 0 (banded)\ttotal: 36\tcorrect: 30\tacc: 83.3%",
                  "* average: 77.7%"]
    return lines


def train_log(acc, trainer="CoOp", dataset="dtd", seed=1, epochs=2, val_accs=(), finish=True, **kw):
    """A training run: epochs, optional per-epoch val evaluations, Finish training, final test block."""
    lines = _header(trainer, dataset, seed, "out") + [
        "No checkpoint found, train from scratch",
        "Initialize tensorboard (log_dir=out/tensorboard)",
    ]
    for epoch in range(epochs):
        lines.append(f"epoch [{epoch + 1}/{epochs}] batch [20/23] time 0.103 (0.190) data 0.000 (0.026) "
                     f"loss 2.6016 (3.1196) acc 28.1250 (20.3125) lr 1.0000e-05 eta 0:03:37")
        if epoch < len(val_accs):
            lines += ["Evaluate on the *val* set"] + result_block(val_accs[epoch])
        lines.append(f"Checkpoint saved to out/prompt_learner/model.pth.tar-{epoch + 1}")
    if not finish:
        return "\n".join(lines) + "\n"
    lines += ["Finish training"]
    lines += ["Deploy the model with the best val performance"] if val_accs else ["Deploy the last-epoch model"]
    lines += ["Evaluate on the *test* set"] + result_block(acc, **kw) + ["Elapsed: 0:04:12"]
    return "\n".join(lines) + "\n"


def eval_log(acc, trainer="CoOp", dataset="dtd", seed=1, **kw):
    """An --eval-only run (CoOp's train.py: load_model then test; no Finish training)."""
    lines = _header(trainer, dataset, seed, "out", eval_only=True, model_dir="model") + [
        'Loading weights to prompt_learner from "model/prompt_learner/model.pth.tar-10" (epoch = 10)',
        "Evaluate on the *test* set",
    ] + result_block(acc, **kw)
    return "\n".join(lines) + "\n"


def write(root, rel, text, name="log.txt"):
    folder = os.path.join(str(root), rel)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "w") as handle:
        handle.write(text)
    return folder


def pstd(values):
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


B2N_BASE = {"dtd": (80.0, 81.0, 82.0), "eurosat": (90.0, 90.0, 90.0)}
B2N_NEW = {"dtd": (60.0, 62.0, 64.0), "eurosat": (70.0, 72.0, 74.0)}
CFG = "vit_b16_c4_ep10_batch1_ctxv1"


def make_b2n(root, trainer="CoCoOp", base=B2N_BASE, new=B2N_NEW):
    for dataset, accs in base.items():
        for seed, acc in enumerate(accs, 1):
            write(root, f"base2new/train_base/{dataset}/shots_16/{trainer}/{CFG}/seed{seed}",
                  train_log(acc, trainer, dataset, seed))
    for dataset, accs in new.items():
        for seed, acc in enumerate(accs, 1):
            write(root, f"base2new/test_new/{dataset}/shots_16/{trainer}/{CFG}/seed{seed}",
                  eval_log(acc, trainer, dataset, seed))


def markdown_cells(text):
    """Cells of the Markdown table rows in text (the |---| separator line left out)."""
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ")]


def run_cli(*args):
    """Run main() in-process and return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        code = results.main([str(a) for a in args])
    finally:
        sys.stdout, sys.stderr = old
    return code, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------------------------------------------------------
# Log parsing


def test_parse_training_log_takes_final_test_not_val(tmp_path):
    path = os.path.join(write(tmp_path, "seed1", train_log(65.3, val_accs=(50.0, 99.0))), "log.txt")
    parsed = results.parse_log(path)
    assert parsed.problem is None
    assert parsed.result.kind == "after training"
    assert parsed.result.metrics == {"total": 1000.0, "correct": 653.0, "accuracy": 65.3, "error": 34.7,
                                     "macro_f1": 64.8}
    assert parsed.arguments["trainer"] == "CoOp"
    assert parsed.arguments["dataset_config_file"] == "configs/datasets/dtd.yaml"


def test_parse_eval_only_log_and_per_class_block(tmp_path):
    path = os.path.join(write(tmp_path, "seed2", eval_log(71.25, per_class=True, total=12345)), "log.txt")
    parsed = results.parse_log(path)
    assert parsed.result.kind == "eval-only"
    assert parsed.result.metrics["accuracy"] == 71.2  # Dassl prints one decimal (f"{71.25:.1f}" == "71.2")
    assert parsed.result.metrics["total"] == 12345.0  # "12,345" with the thousands separator
    assert parsed.result.metrics["average"] == 77.7  # per-class average, reachable with --keyword average


def test_unfinished_training_gives_no_result_even_with_test_blocks(tmp_path):
    # Without a validation set Dassl evaluates on the *test* split every epoch under best_val.
    text = train_log(0, epochs=3, finish=False).replace("Checkpoint saved", "Evaluate on the *test* set\n"
                                                        + "\n".join(result_block(55.0)) + "\nCheckpoint saved")
    path = os.path.join(write(tmp_path, "seed1", text), "log.txt")
    parsed = results.parse_log(path)
    assert parsed.result is None
    assert "did not finish" in parsed.problem


def test_finished_without_test_and_empty_log(tmp_path):
    text = train_log(50.0).split("Deploy the last-epoch model")[0]
    parsed = results.parse_log(os.path.join(write(tmp_path, "a/seed1", text), "log.txt"))
    assert parsed.result is None and "after 'Finish training'" in parsed.problem
    parsed = results.parse_log(os.path.join(write(tmp_path, "b/seed1", "Setting fixed seed: 1\n"), "log.txt"))
    assert parsed.result is None and "no '=> result' block" in parsed.problem


def test_finished_training_wording_variant(tmp_path):
    text = train_log(70.0).replace("Finish training", "Finished training")
    parsed = results.parse_log(os.path.join(write(tmp_path, "seed1", text), "log.txt"))
    assert parsed.result.metrics["accuracy"] == 70.0


def test_newest_log_with_a_result_wins(tmp_path):
    folder = write(tmp_path, "dtd/CoOp/vit_b16_16shots/nctx16_cscFalse_ctpend/seed1", train_log(60.0))
    write(tmp_path, os.path.relpath(folder, tmp_path), eval_log(61.0), name="log.txt-2026-01-02-03-04-05")
    write(tmp_path, os.path.relpath(folder, tmp_path), eval_log(62.0), name="log.txt-2026-01-10-00-00-00")
    write(tmp_path, os.path.relpath(folder, tmp_path), eval_log(99.0), name="log.txt.bak")  # not a Dassl log
    assert [os.path.basename(p) for p in results.log_files(folder)] == \
        ["log.txt-2026-01-10-00-00-00", "log.txt-2026-01-02-03-04-05", "log.txt"]
    run = results.read_run(folder, str(tmp_path))
    assert run.result.metrics["accuracy"] == 62.0
    assert run.result.log_file.endswith("log.txt-2026-01-10-00-00-00")

    # A newer log that crashed: the older complete result is used, and the CLI says so.
    write(tmp_path, os.path.relpath(folder, tmp_path), _crashed_eval(), name="log.txt-2026-02-01-00-00-00")
    run = results.read_run(folder, str(tmp_path))
    assert run.result.metrics["accuracy"] == 62.0
    assert run.newer_without_result == ["log.txt-2026-02-01-00-00-00: no '=> result' block"]
    code, out, err = run_cli(tmp_path)
    assert code == 0
    assert "1 runs have a newer log without a result" in err


def _crashed_eval():
    return "\n".join(_header("CoOp", "dtd", 1, "out", eval_only=True) + [
        "Traceback (most recent call last):", "RuntimeError: CUDA out of memory."]) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Layouts


@pytest.mark.parametrize("rel, expected", [
    ("dtd/CoOp/vit_b16_ep50_16shots/nctx16_cscFalse_ctpend/seed3",
     ("fewshot", "dtd", "CoOp", "vit_b16_ep50_16shots/nctx16_cscFalse_ctpend", 3, "")),
    ("imagenet/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1_16shots/seed1",
     ("fewshot", "imagenet", "CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1_16shots", 1, "")),
    ("base2new/train_base/oxford_flowers/shots_16/BayesianPrompt/vit_b16_c4/seed2",
     ("base2new", "oxford_flowers", "BayesianPrompt", "vit_b16_c4", 2, "base")),
    ("base2new/test_new/fgvc_aircraft/shots_16/CoOp/vit_b16_ep50/seed1",
     ("base2new", "fgvc_aircraft", "CoOp", "vit_b16_ep50", 1, "new")),
    ("evaluation/CoCoOp/vit_b16_c4_16shots/imagenet_sketch/seed1",
     ("dg", "imagenet_sketch", "CoCoOp", "vit_b16_c4_16shots", 1, "")),
    ("evaluation/CoCoOp/vit_b16_c4_16shots/eurosat/seed2",
     ("xd", "eurosat", "CoCoOp", "vit_b16_c4_16shots", 2, "")),
    ("evaluation/CoOp/vit_b16_ep50_16shots/nctx16_cscFalse_ctpend/imagenet_r/seed1",  # scripts/coop/eval.sh
     ("dg", "imagenet_r", "CoOp", "vit_b16_ep50_16shots/nctx16_cscFalse_ctpend", 1, "")),
])
def test_layouts(tmp_path, rel, expected):
    folder = write(tmp_path / "output", rel, eval_log(50.0))
    run = results.read_run(folder, str(tmp_path / "output"))
    assert (run.protocol, run.dataset, run.trainer, run.config, run.seed, run.role) == expected
    assert run.rel == rel


def test_unknown_layout_uses_log_arguments(tmp_path):
    for seed in (1, 2):
        write(tmp_path, f"my_experiment/seed{seed}", train_log(60.0 + seed, trainer="LogitPrior",
                                                               dataset="eurosat", seed=seed))
    runs = results.scan(str(tmp_path))
    assert [(r.protocol, r.trainer, r.dataset, r.config) for r in runs] == \
        [("other", "LogitPrior", "eurosat", "my_experiment")] * 2
    summary = results.summarise(runs)["other"]
    stat = summary.stat(("LogitPrior", "my_experiment"), "eurosat", "accuracy")
    assert stat.values == [61.0, 62.0] and stat.seeds == [1, 2]


def test_root_can_be_a_seed_folder_or_deep(tmp_path):
    make_b2n(tmp_path)
    deep = tmp_path / "base2new" / "train_base" / "dtd" / "shots_16" / "CoCoOp" / CFG
    runs = results.scan(str(deep))
    assert sorted(r.seed for r in runs) == [1, 2, 3]
    assert {(r.protocol, r.dataset, r.role) for r in runs} == {("base2new", "dtd", "base")}
    runs = results.scan(str(deep / "seed2"))
    assert len(runs) == 1 and runs[0].result.metrics["accuracy"] == 81.0


# ---------------------------------------------------------------------------------------------------------------
# Statistics


def test_base_to_new_numbers(tmp_path):
    make_b2n(tmp_path)
    summary = results.summarise(results.scan(str(tmp_path)))["base2new"]
    method = ("CoCoOp", CFG)
    assert summary.datasets == ["dtd", "eurosat"]  # paper order: DTD before EuroSAT
    dtd_base = summary.stat(method, "dtd", "base")
    assert dtd_base.values == [80.0, 81.0, 82.0] and dtd_base.mean == pytest.approx(81.0)
    assert dtd_base.spread() == pytest.approx(math.sqrt(2 / 3))  # population std, as CoOp's np.std
    assert dtd_base.spread(ddof=1) == pytest.approx(1.0)
    assert dtd_base.spread("ci95") == pytest.approx(1.96 * math.sqrt(2 / 3) / math.sqrt(3))
    assert summary.stat(method, "dtd", "new").mean == pytest.approx(62.0)
    assert summary.value(method, "dtd", "hm") == pytest.approx(2 * 81 * 62 / (81 + 62))
    assert summary.value(method, "eurosat", "hm") == pytest.approx(80.0)  # 2*90*72/162
    average = summary.averages[method]
    assert average.values["base"] == pytest.approx(85.5)
    assert average.values["new"] == pytest.approx(67.0)
    # HM of the averages (CoCoOp's Table 1), not the mean of the per-dataset HMs.
    assert average.values["hm"] == pytest.approx(2 * 85.5 * 67 / (85.5 + 67))
    assert average.values["hm"] != pytest.approx((2 * 81 * 62 / 143 + 80.0) / 2)


def test_base_to_new_table_text(tmp_path):
    make_b2n(tmp_path)
    code, out, err = run_cli(tmp_path)
    assert code == 0 and err == ""
    assert "Base-to-new generalization: accuracy (%), mean ± std over seeds" in out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("Dataset"))
    assert re.split(r"\s{2,}", header.strip()) == ["Dataset", "CoCoOp Base", "CoCoOp New", "CoCoOp HM"]
    rows = {re.split(r"\s{2,}", line.strip())[0]: re.split(r"\s{2,}", line.strip())[1:] for line in lines
            if line.startswith(("DTD", "EuroSAT", "Average"))}
    assert rows["DTD"] == ["81.00 ± 0.82", "62.00 ± 1.63", "70.24"]
    assert rows["EuroSAT"] == ["90.00 ± 0.00", "72.00 ± 1.63", "80.00"]
    assert rows["Average"] == ["85.50", "67.00", "75.13"]


def test_fewshot_several_trainers_side_by_side_and_by_trainer(tmp_path):
    accs = {("CoOp", "dtd"): (60.0, 61.0, 65.0), ("CoOp", "eurosat"): (80.0, 84.0),
            ("BayesianPrompt", "dtd"): (62.0, 64.0, 66.0), ("BayesianPrompt", "eurosat"): (85.0, 86.0, 87.0)}
    for (trainer, dataset), values in accs.items():
        for seed, acc in enumerate(values, 1):
            write(tmp_path, f"{dataset}/{trainer}/vit_b16_ep50_16shots/nctx16_cscFalse_ctpend/seed{seed}",
                  train_log(acc, trainer, dataset, seed))
    code, out, _ = run_cli(tmp_path, "--format", "markdown")
    assert code == 0
    assert out.startswith("### Few-shot classification: accuracy (%), mean ± std over seeds\n\n| Dataset ")
    coop_dtd = f"{62.0:.2f} ± {pstd([60.0, 61.0, 65.0]):.2f}"
    assert markdown_cells(out) == [
        ["Dataset", "CoOp", "BayesianPrompt"],
        ["DTD", coop_dtd, "64.00 ± 1.63"],
        ["EuroSAT", "82.00 ± 2.00 (n=2)", "86.00 ± 0.82"],  # CoOp has 2 of 3 seeds there
        ["Average", "72.00", "75.00"],
    ]

    code, out, _ = run_cli(tmp_path, "--by", "trainer", "--format", "markdown")
    cells = markdown_cells(out)
    assert cells[0] == ["Method", "Dataset", "Accuracy"]
    assert cells[1:] == [["CoOp", "DTD", coop_dtd], ["CoOp", "EuroSAT", "82.00 ± 2.00 (n=2)"],
                         ["CoOp", "Average", "72.00"], ["BayesianPrompt", "DTD", "64.00 ± 1.63"],
                         ["BayesianPrompt", "EuroSAT", "86.00 ± 0.82"], ["BayesianPrompt", "Average", "75.00"]]


def test_configs_of_one_trainer_get_distinct_labels(tmp_path):
    for shots, acc in ((1, 40.0), (16, 60.0), (4, 50.0)):
        write(tmp_path, f"dtd/CoOp/rn50_ep50_{shots}shots/nctx16_cscFalse_ctpend/seed1", train_log(acc))
    code, out, _ = run_cli(tmp_path, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    dtd = [(r["method"], r["mean"]) for r in rows if r["dataset"] == "DTD"]
    assert dtd == [("CoOp (1shots)", "40.00"), ("CoOp (4shots)", "50.00"), ("CoOp (16shots)", "60.00")]


def test_ci95_metric_keyword_and_filters(tmp_path):
    make_b2n(tmp_path)
    make_b2n(tmp_path, trainer="CoOp", base={"dtd": (70.0, 72.0, 74.0)}, new={"dtd": (50.0, 50.0, 53.0)})
    code, out, _ = run_cli(tmp_path, "--format", "csv", "--ci95", "--trainer", "coop")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["trainer"] for r in rows} == {"CoOp"}
    base = next(r for r in rows if r["dataset"] == "DTD" and r["quantity"] == "base")
    assert base["ci95"] == f"{1.96 * pstd([70, 72, 74]) / math.sqrt(3):.2f}"
    code, out, _ = run_cli(tmp_path, "--format", "csv", "--metric", "macro_f1", "--dataset", "EuroSAT")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {(r["trainer"], r["dataset"]) for r in rows} == {("CoCoOp", "EuroSAT"), ("CoCoOp", "Average")}
    assert next(r for r in rows if r["quantity"] == "base" and r["dataset"] == "EuroSAT")["mean"] == "89.50"
    code, out, _ = run_cli(tmp_path, "--format", "csv", "--keyword", "error", "--trainer", "CoCoOp")
    rows = list(csv.DictReader(io.StringIO(out)))
    new = next(r for r in rows if r["dataset"] == "DTD" and r["quantity"] == "new")
    assert (new["metric"], new["mean"]) == ("error", "38.00")
    assert not any(r["quantity"] == "hm" for r in rows)  # HM of error rates is not defined


def test_csv_is_tidy(tmp_path):
    make_b2n(tmp_path)
    code, out, err = run_cli(tmp_path, "--format", "csv")
    assert code == 0 and err == ""
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["protocol", "dataset", "method", "trainer", "config", "metric", "quantity", "mean",
                             "std", "n_seeds", "seeds", "n_datasets"]
    got = [(r["dataset"], r["quantity"], r["mean"], r["std"], r["n_seeds"], r["seeds"], r["n_datasets"])
           for r in rows]
    assert got == [
        ("DTD", "base", "81.00", "0.82", "3", "1 2 3", ""),
        ("DTD", "new", "62.00", "1.63", "3", "1 2 3", ""),
        ("DTD", "hm", "70.24", "", "", "", ""),
        ("EuroSAT", "base", "90.00", "0.00", "3", "1 2 3", ""),
        ("EuroSAT", "new", "72.00", "1.63", "3", "1 2 3", ""),
        ("EuroSAT", "hm", "80.00", "", "", "", ""),
        ("Average", "base", "85.50", "", "", "", "2"),
        ("Average", "new", "67.00", "", "", "", "2"),
        ("Average", "hm", "75.13", "", "", "", "2"),
    ]
    assert {r["protocol"] for r in rows} == {"base2new"}


# ---------------------------------------------------------------------------------------------------------------
# Incomplete sweeps


def test_run_without_result_is_reported_and_pairs_checked(tmp_path):
    make_b2n(tmp_path, new={"dtd": B2N_NEW["dtd"]})  # EuroSAT has no test_new runs
    write(tmp_path, f"base2new/test_new/dtd/shots_16/CoCoOp/{CFG}/seed4", _crashed_eval())
    os.makedirs(tmp_path / "base2new" / "test_new" / "dtd" / "shots_16" / "CoCoOp" / CFG / "seed5")
    code, out, err = run_cli(tmp_path)
    assert code == 0
    assert "warning: 2 of 11 runs have no test result (unfinished or crashed):" in err
    assert f"base2new/test_new/dtd/shots_16/CoCoOp/{CFG}/seed4: log.txt: no '=> result' block" in err
    assert f"seed5: no log.txt" in err
    assert "no test_new results (left out of the Average)" in err
    average_row = next(line for line in out.splitlines() if line.startswith("Average"))
    # Average over DTD only, marked with * and explained under the table.
    assert re.split(r"\s{2,}", average_row.strip())[1:] == ["81.00*", "62.00*", "70.24*"]
    assert "CoCoOp: Average* over 1 of 2 datasets (missing: EuroSAT)" in out
    euro_row = next(line for line in out.splitlines() if line.startswith("EuroSAT"))
    assert re.split(r"\s{2,}", euro_row.strip())[1:] == ["90.00 ± 0.00"]


def test_cross_dataset_and_dg_tables(tmp_path):
    accs = {"imagenet": (71.0, 73.0), "eurosat": (40.0, 44.0), "dtd": (45.0, 47.0),
            "imagenetv2": (64.0, 64.4), "imagenet_sketch": (48.0, 49.0), "imagenet_a": (50.0, 51.0),
            "imagenet_r": (76.0, 77.0)}
    for dataset, values in accs.items():
        for seed, acc in enumerate(values, 1):
            write(tmp_path, f"evaluation/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1_16shots/{dataset}/seed{seed}",
                  eval_log(acc, "CoCoOp", dataset, seed))
    summaries = results.summarise(results.scan(str(tmp_path)))
    assert list(summaries) == ["xd", "dg"]
    method = ("CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1_16shots")
    assert summaries["xd"].datasets == ["imagenet", "dtd", "eurosat"]
    assert summaries["xd"].averages[method].values["accuracy"] == pytest.approx((42.0 + 46.0) / 2)  # no ImageNet
    assert summaries["dg"].averages[method].values["accuracy"] == pytest.approx((64.2 + 48.5 + 50.5 + 76.5) / 4)
    code, out, _ = run_cli(tmp_path, "--protocol", "dg")
    assert out.startswith("Domain generalization") and "Cross-dataset" not in out
    code, out, _ = run_cli(tmp_path, "--published")
    assert "Cross-dataset transfer" in out and "Average (targets)" in out
    dg = out[out.index("Domain generalization"):]
    rows = {re.split(r"\s{2,}", l.strip())[0]: re.split(r"\s{2,}", l.strip())[1:] for l in dg.splitlines()
            if l.startswith(("ImageNet", "Average"))}
    assert rows["ImageNetV2"] == ["64.20 ± 0.20", "64.07 [1]"]
    assert rows["ImageNet-R"] == ["76.50 ± 0.50", "76.18 [1]"]
    assert rows["Average"] == ["59.92", "59.88 [1]"]
    assert f"[1] {pub.SRC_BPL_DG}" in dg


# ---------------------------------------------------------------------------------------------------------------
# Published numbers


def test_published_data_integrity():
    # The base-to-new averages are consistent with their own HM, to the rounding of the papers.
    for rec in pub.records(protocol="base2new", dataset="average", quantity="hm", variant=None):
        base = pub.lookup(rec.method, "base2new", "average", "base").value
        new = pub.lookup(rec.method, "base2new", "average", "new").value
        assert 2 * base * new / (base + new) == pytest.approx(rec.value, abs=0.011), rec.method
    # BayesianPrompt Table 1: the per-dataset means of the 11 datasets give the printed Average.
    for method in ("CoOp", "CoCoOp", "ProDA", "BayesianPrompt"):
        values = [pub.lookup(method, "base2new", d, "new").value for d in pub.DATASET_ORDER[:11]]
        printed = next(pub.records(method, "base2new", "average", "new", variant=None, )).value
        assert sum(values) / 11 == pytest.approx(printed, abs=0.011), method
    for rec in pub.records():
        assert rec.source and rec.protocol in ("base2new", "dg", "xd")
        assert rec.dataset == "average" or rec.dataset in pub.DATASET_NAMES
    # Empty cells stay empty: nothing for LogitPrior or DualViewPrompt, no BayesianPrompt base accuracy.
    assert not list(pub.records(method="LogitPrior")) and not list(pub.records(method="DualViewPrompt"))
    assert pub.lookup("BayesianPrompt", "base2new", "dtd", "base") is None
    # Ablations are never picked for a table cell.
    assert pub.lookup("PBPrompt", "base2new", "caltech101", "hm").value == 96.74
    assert pub.lookup("BayesianPrompt", "base2new", "fgvc_aircraft", "new").value == 35.00
    assert pub.method_for_trainer("ZeroshotCLIP") == "CLIP zero-shot"
    assert pub.canonical_dataset("Flowers102") == "oxford_flowers"
    assert pub.canonical_dataset("imagenet-sketch") == "imagenet_sketch"


def test_published_beside_ours_base_to_new(tmp_path):
    make_b2n(tmp_path, trainer="BayesianPrompt")
    make_b2n(tmp_path, trainer="CoOp")
    code, out, err = run_cli(tmp_path, "--published", "--format", "markdown")
    assert code == 0
    table = markdown_cells(out)
    assert table[0] == ["Dataset", "CoOp Base", "CoOp New", "CoOp HM", "CoOp Base (published)",
                        "CoOp New (published)", "CoOp HM (published)", "BayesianPrompt Base",
                        "BayesianPrompt New", "BayesianPrompt HM", "BayesianPrompt New (published)"]
    rows = {row[0]: row[1:] for row in table[1:]}
    # CoOp: per-dataset new from BayesianPrompt's Table 1, averages from CoCoOp's Table 1, no invented cells.
    assert rows["DTD"][3:6] == ["", "41.18 [1]", ""]
    assert rows["Average"][3:6] == ["82.69 [2]", "63.22 [2]", "71.66 [2]"]
    assert rows["DTD"][9] == "60.80 ± 0.5 [1]"
    assert rows["EuroSAT"][9] == "75.30 ± 0.7 [1]"
    assert rows["Average"][9] == "74.94 ± 0.2 [1]"
    assert rows["Average"][6:9] == ["85.50", "67.00", "75.13"]
    assert f"- [1] {pub.SRC_BPL_T1}" in out
    assert f"- [2] {pub.SRC_COCOOP_T1}" in out
    assert "- Published averages cover 11 datasets; ours cover 2." in out

    code, out, _ = run_cli(tmp_path, "--published", "--format", "csv", "--trainer", "CoOp")
    rows = list(csv.DictReader(io.StringIO(out)))
    dtd_new = next(r for r in rows if r["dataset"] == "DTD" and r["quantity"] == "new")
    assert (dtd_new["published"], dtd_new["published_source"]) == ("41.18", pub.SRC_BPL_T1)
    dtd_base = next(r for r in rows if r["dataset"] == "DTD" and r["quantity"] == "base")
    assert dtd_base["published"] == "" and dtd_base["published_source"] == ""

    code, out, err = run_cli(tmp_path, "--published", "--metric", "error")
    assert "(published)" not in out and "not shown for error" in err


# ---------------------------------------------------------------------------------------------------------------
# Errors and the command line


def test_errors(tmp_path):
    code, out, err = run_cli(tmp_path / "missing")
    assert code == 2 and "does not exist" in err and out == ""
    code, out, err = run_cli(tmp_path)
    assert code == 1 and "no seed<N> run folders" in err
    write(tmp_path, "dtd/CoOp/vit_b16_16shots/nctx16_cscFalse_ctpend/seed1", train_log(50.0, finish=False))
    code, out, err = run_cli(tmp_path)
    assert code == 1 and "none of its 1 selected runs has a complete test result" in err
    assert "training did not finish" in err
    code, out, err = run_cli(tmp_path, "--trainer", "CoCoOp")
    assert code == 1 and "none matches the filters" in err
    code, out, err = run_cli(tmp_path, "--protocol", "fewshot,b2n")
    assert code == 2 and "unknown protocol b2n" in err


def test_list_runs_and_module_entry_point(tmp_path):
    make_b2n(tmp_path, base={"dtd": (80.0,)}, new={"dtd": (60.0,)})
    proc = subprocess.run([sys.executable, "-m", "clipbayes.results", str(tmp_path), "--list-runs"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "log.txt (after training)" in proc.stdout and "log.txt (eval-only)" in proc.stdout
    assert re.search(r"DTD\s+80\.00\s+60\.00\s+68\.57", proc.stdout)  # 2*80*60/140


# ---------------------------------------------------------------------------------------------------------------
# Compatibility with CoOp's parse_test_res.py


def coop_parse_rule(directory, keyword="accuracy", test_log=False):
    """The parsing rule of CoOp's parse_test_res.py, restated: for each DIR/<sub>/log.txt, once a stripped line
    equals the end signal ("Finish training", or "=> result" with --test-log), every later line matching
    r"\\* KEYWORD: ([\\.\\deE+-]+)%" overwrites the value; returns {sub: value} and the mean and std (np.std)."""
    signal = "=> result" if test_log else "Finish training"
    regex = re.compile(fr"\* {keyword}: ([\.\deE+-]+)%")
    found = OrderedDict()
    for sub in sorted(os.listdir(directory)):
        path = os.path.join(directory, sub, "log.txt")
        assert os.path.isfile(path)
        go = False
        with open(path) as handle:
            for line in handle:
                line = line.strip()
                if line == signal:
                    go = True
                match = regex.search(line)
                if match and go:
                    found[sub] = float(match.group(1))
    values = list(found.values())
    mean = sum(values) / len(values)
    return found, mean, pstd(values)


def test_logs_stay_readable_by_coop_parse_rule(tmp_path):
    experiment = tmp_path / "dtd" / "CoOp" / "vit_b16_ep50_16shots" / "nctx16_cscFalse_ctpend"
    for seed, acc in ((1, 64.1), (2, 65.2), (3, 66.3)):
        write(tmp_path, os.path.relpath(experiment / f"seed{seed}", tmp_path),
              train_log(acc, seed=seed, val_accs=(20.0, 30.0)))
    found, mean, std = coop_parse_rule(str(experiment))
    assert found == {"seed1": 64.1, "seed2": 65.2, "seed3": 66.3}  # the val blocks before the signal are ignored
    stat = results.summarise(results.scan(str(tmp_path)))["fewshot"].stat(
        ("CoOp", "vit_b16_ep50_16shots/nctx16_cscFalse_ctpend"), "dtd", "accuracy")
    assert (stat.mean, stat.spread()) == pytest.approx((mean, std))

    # Eval-only logs (base-to-new test_new) are read by CoOp's script with --test-log.
    make_b2n(tmp_path / "b2n")
    new_dir = tmp_path / "b2n" / "base2new" / "test_new" / "dtd" / "shots_16" / "CoCoOp" / CFG
    found, mean, _ = coop_parse_rule(str(new_dir), test_log=True)
    assert list(found.values()) == [60.0, 62.0, 64.0] and mean == pytest.approx(62.0)
    found, _, _ = coop_parse_rule(str(new_dir), keyword="macro_f1", test_log=True)
    assert list(found.values()) == [59.5, 61.5, 63.5]


def test_synthetic_block_matches_dassl_evaluator(capsys):
    """Our synthetic result block is what Dassl's own Classification evaluator prints, so the test logs above (and
    CoOp's parse rule on them) follow Dassl's real wording; if that wording changes, this fails."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    pytest.importorskip("dassl", reason="Dassl.pytorch is not installed (see README 'Set-up')")
    from clipbayes.compat import import_dassl

    import_dassl()
    from dassl.config import get_cfg_default
    from dassl.evaluation.evaluator import Classification

    cfg = get_cfg_default()
    evaluator = Classification(cfg)
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0], [1.0, 0.0]])
    evaluator.process(logits, torch.tensor([0, 1, 1, 0]))
    capsys.readouterr()
    evaluator.evaluate()
    printed = capsys.readouterr().out.splitlines()
    # 3 of 4 correct; macro F1 of y=[0,1,1,0], p=[0,1,0,0] is (0.8 + 0.6667) / 2.
    assert printed == result_block(75.0, total=4, macro_f1=100 * (0.8 + 2 / 3) / 2)


def test_a_wrapping_method_sits_beside_the_base_it_ran_around(tmp_path):
    """LogitPrior's log says which base it wrapped ("LogitPrior around MaPLe; ..."): its columns follow that base's,
    labelled with it, whatever the registry's order of the trainer names."""
    for trainer, base, acc in (("MaPLe", "", 80.0), ("LogitPrior", "MaPLe", 81.0), ("CoOp", "", 70.0),
                               ("LogitPrior", "CoOp", 72.0)):
        config = f"vit_b16_{base.lower() or trainer.lower()}"
        for role, text in (("train_base", train_log(acc, trainer)), ("test_new", eval_log(acc - 10, trainer))):
            if base:  # both the training and the eval-only run build the model and say so
                text = text.replace("Building custom CLIP", f"LogitPrior around {base}; zero-shot template(s): ['{{}}']")
            write(tmp_path, f"base2new/{role}/dtd/shots_16/{trainer}/{config}/seed1", text)
    code, out, _ = run_cli(tmp_path, "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    order = list(OrderedDict.fromkeys(row["method"] for row in rows))
    assert order == ["CoOp", "LogitPrior over CoOp", "MaPLe", "LogitPrior over MaPLe"], order


def test_a_validation_result_is_read_only_when_asked_for(tmp_path):
    """An eval-only run with TEST.SPLIT val (the toy world's validation runs) holds no test result; its val result is
    read with split_read="val", and a training log's per-epoch val blocks never count as its test result."""
    from clipbayes.results.logs import parse_log
    text = eval_log(70.0).replace("Evaluate on the *test* set", "Evaluate on the *val* set")
    path = os.path.join(write(tmp_path, "val", text), "log.txt")
    assert parse_log(path).result is None
    assert parse_log(path, split_read="val").result.metrics["accuracy"] == 70.0
    trained = os.path.join(write(tmp_path, "train", train_log(80.0, val_accs=(50.0, 60.0))), "log.txt")
    assert parse_log(trained).result.metrics["accuracy"] == 80.0
