"""clipbayes-sweep: the expansion of the shipped descriptions equals what scripts/ run; the local runner, the GPU
pool (fake device ids), submitit's local executor, and a sweep killed midway and started again."""
from __future__ import annotations

import json
import os
import os.path as osp
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest
import yaml

from clipbayes.sweep.expand import SweepError, expand, load_description
from support import ROOT, requires_dassl

# A stand-in for python that records each train.py call (argv after "train.py") and, for a training call, leaves
# the checkpoint a finished run has, so that the scripts go on to their test runs. It never runs train.py.
RECORDER = """#!{python}
import json, os, sys, yaml
args = sys.argv[1:]
if args[:1] != ["train.py"]:
    sys.exit(0)
args = args[1:]
with open(os.environ["RECORD"], "a") as f:
    f.write(json.dumps(args) + "\\n")
if "--eval-only" not in args:
    opts = dict(zip(args[::2], args[1::2]))
    epochs = [args[i + 1] for i in range(len(args) - 1) if args[i] == "OPTIM.MAX_EPOCH"]
    if not epochs:
        with open(opts["--config-file"]) as c:
            epochs = [yaml.safe_load(c)["OPTIM"]["MAX_EPOCH"]]
    folder = os.path.join(opts["--output-dir"], "prompt_learner")
    os.makedirs(folder, exist_ok=True)
    open(os.path.join(folder, f"model.pth.tar-{{epochs[-1]}}"), "w").close()
"""

XD_TARGETS = ("caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101 "
              "imagenetv2 imagenet_sketch imagenet_a imagenet_r").split()
LOGIT_PRIOR_DATASETS = XD_TARGETS[:10]


@pytest.fixture(scope="module")
def script_runs(tmp_path_factory):
    """Every train.py call of the scripts for seed 1, recorded in a copy of scripts/ and configs/."""
    repo = tmp_path_factory.mktemp("repo")
    for folder in ("scripts", "configs"):
        shutil.copytree(osp.join(ROOT, folder), repo / folder)
    recorder = repo / "python"
    recorder.write_text(RECORDER.format(python=sys.executable))
    recorder.chmod(recorder.stat().st_mode | stat.S_IEXEC)
    (repo / "data").mkdir()

    def record(name, commands, **env):
        log = repo / f"{name}.jsonl"
        for command in commands:
            subprocess.run(["bash", "-c", command], cwd=repo, check=False, capture_output=True, env={
                **os.environ, "PYTHON": str(recorder), "DATA": "data", "SEEDS": "1", "RECORD": str(log), **env})
        return sorted(tuple(json.loads(line)) for line in log.read_text().splitlines())

    xd = ["bash scripts/{0}/xd_train.sh 1"] + [f"bash scripts/{{0}}/xd_test.sh {d} 1" for d in XD_TARGETS]
    runs = {
        "bayesian_prompt": record("bp", ["bash scripts/bayesian_prompt/run_all.sh"]),
        "coop": record("coop", ["bash scripts/sweep.sh coop"] + [c.format("coop") for c in xd]),
        "cocoop": record("cocoop", ["bash scripts/sweep.sh cocoop"] + [c.format("cocoop") for c in xd]),
        "zsclip": record("zsclip", ["bash scripts/sweep.sh zsclip"]),
        "dual_view": record("dual_view", ["bash scripts/dual_view/run_all.sh"]),
        "logit_prior": sorted(
            run for base in ("CoOp", "CoCoOp", "BayesianPrompt") for run in record(
                f"lp_{base}", [f"bash scripts/sweep.sh logit_prior {' '.join(LOGIT_PRIOR_DATASETS)}"]
                + [c.format("logit_prior") for c in xd], BASE=base)),
    }
    return repo, runs


@pytest.mark.parametrize("name", ["bayesian_prompt", "coop", "cocoop", "zsclip", "logit_prior", "dual_view"])
def test_expansion_equals_the_scripts_runs(script_runs, name):
    repo, recorded = script_runs
    description = load_description(osp.join(ROOT, "configs", "sweeps", f"{name}.yaml"))
    runs = expand({**description, "seeds": [1]}, str(repo), data="data")
    assert recorded[name], f"the scripts of {name} ran nothing"
    assert sorted(run.args for run in runs) == recorded[name]
    by_key = {run.key: run for run in runs}
    for run in runs:  # every test run evaluates a training run of the sweep, at its last epoch
        if run.kind == "test":
            assert by_key[run.needs].kind == "train" and by_key[run.needs].epochs == run.epochs
            assert run.args[run.args.index("--model-dir") + 1] == run.needs


def test_bad_descriptions_name_the_key(tmp_path):
    good = {"protocols": {"base2new": {"datasets": ["dtd"]}}, "methods": [{"trainer": "CoOp", "config": "tiny"}]}
    assert len(expand(good, ROOT)) == 6
    cases = [({**good, "protocol": {}}, "sweep: unknown key(s) ['protocol']"),
             ({**good, "methods": [{"trainer": "CoOp", "config": "nope"}]}, "configs/trainers/CoOp/nope.yaml"),
             ({**good, "protocols": {"base2new": {"datasets": ["nodata"]}}}, "Unknown dataset 'nodata'"),
             ({**good, "seeds": [-1]}, "seeds must be non-negative integers"),
             ({**good, "methods": [{"trainer": "CoOp", "config": "tiny", "overides": {}}]}, "['overides']")]
    for description, message in cases:
        with pytest.raises(SweepError) as err:
            expand(description, ROOT)
        assert message in str(err.value)


# --- running sweeps on the tiny CLIP and a miniature dataset --------------------------------------------------------

def _sweep_file(tmp_path, methods, seeds=(1,)) -> str:
    from tests.datasets.miniature import build_miniature

    data = tmp_path / "data"
    if not data.exists():
        build_miniature(str(data), "OxfordPets")
    description = {"output": str(tmp_path / "output"), "data": str(data), "seeds": list(seeds), "shots": 1,
                   "protocols": {"base2new": {"datasets": ["oxford_pets"]}}, "methods": methods,
                   "overrides": {"OPTIM.MAX_EPOCH": 1, "DATALOADER.TEST.BATCH_SIZE": 64}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(description))
    return str(path)


TINY = {"trainer": "CoOp", "config": "tiny"}


def _env(tmp_path):
    return {**os.environ, "PYTHONPATH": ROOT, "CLIPBAYES_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1"}


def _sweep(env, *args, **kwargs):
    return subprocess.run([sys.executable, "-m", "clipbayes.sweep", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, **kwargs)


def _logs(folder) -> list:
    return sorted(f for f in os.listdir(folder) if f.startswith("log.txt"))


@requires_dassl
def test_pool_runs_one_per_device_reports_a_failure_and_goes_on(tmp_path):
    record = tmp_path / "devices.txt"
    python = tmp_path / "python"
    python.write_text(f"#!/bin/bash\necho \"$1 $CUDA_VISIBLE_DEVICES $$ $(date +%s.%N) start\" >> {record}\n"
                      f"{sys.executable} \"$@\"\nstatus=$?\n"
                      f"echo \"$1 $CUDA_VISIBLE_DEVICES $$ $(date +%s.%N) end\" >> {record}\nexit $status\n")
    python.chmod(0o755)
    sweep = _sweep_file(tmp_path, [TINY, {**TINY, "overrides": {"OPTIM.NO_SUCH_KEY": 1}, "seeds": [5]}])
    proc = _sweep(_env(tmp_path), "run", sweep, "--runner", "pool", "--gpus", "7,9", "--python", str(python))
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "output" / "base2new"
    assert "* accuracy:" in open(out / "test_new" / "oxford_pets" / "shots_1" / "CoOp" / "tiny" / "seed1" /
                                 "log.txt").read()
    assert "failed (exit status 2)" in proc.stderr and "seed5" in proc.stderr
    assert "not run, its model" in proc.stderr  # the failed training run's test is not started
    events = [line.split()[1:] for line in record.read_text().splitlines() if line.startswith("train.py ")]
    assert len(events) == 2 * 3  # start and end of: seed 1's training and test, seed 5's failing training
    assert {device for device, *_ in events} == {"7", "9"}  # every run saw exactly one of the fake devices
    spans = {}
    for device, pid, when, what in events:
        spans.setdefault(pid, {})[what] = (float(when), device)
    for device in ("7", "9"):  # never two runs at once on one device
        mine = sorted((s["start"][0], s["end"][0]) for s in spans.values() if s["start"][1] == device)
        assert all(end <= next_start for (_, end), (next_start, _) in zip(mine, mine[1:]))
    status = _sweep(_env(tmp_path), "status", sweep)
    assert "2 done, 0 running, 1 failed, 1 pending" in status.stdout, status.stdout
    assert "blocked" in status.stdout
    assert "oxford_pets" in proc.stdout  # the results tables at the end


@requires_dassl
def test_killed_sweep_started_again_reruns_nothing_finished(tmp_path):
    env = _env(tmp_path)
    sweep = _sweep_file(tmp_path, [TINY], seeds=(1, 2))
    out = tmp_path / "output" / "base2new"
    first_train = out / "train_base" / "oxford_pets" / "shots_1" / "CoOp" / "tiny" / "seed1"
    second_state = tmp_path / "output" / ".sweep" / "state" / "base2new+train_base+oxford_pets+shots_1+CoOp+tiny+seed2.json"
    process = subprocess.Popen([sys.executable, "-m", "clipbayes.sweep", "run", sweep], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not (second_state.exists() and json.loads(second_state.read_text())["state"] == "running"):
        assert process.poll() is None and time.time() < deadline, "the sweep ended before its third run"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the sweep and the run it started
    process.wait()
    status = _sweep(env, "status", sweep).stdout
    assert "2 done, 0 running, 1 failed, 1 pending" in status, status
    assert "interrupted" in status
    before = {path: open(first_train / path, "rb").read() for path in _logs(first_train)}

    again = _sweep(env, "run", sweep)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count("finished, skipped") == 2
    assert {path: open(first_train / path, "rb").read() for path in _logs(first_train)} == before
    assert "4 done, 0 running, 0 failed, 0 pending" in _sweep(env, "status", sweep).stdout


@requires_dassl
def test_submitit_local_executor_runs_a_two_run_sweep(tmp_path):
    env = _env(tmp_path)
    sweep = _sweep_file(tmp_path, [TINY])
    dry = _sweep(env, "run", sweep, "--runner", "slurm", "--dry-run", "--partition", "gpu", "--time-min", "30")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "would submit a job array of 1 task(s)" in dry.stdout and "'slurm_partition': 'gpu'" in dry.stdout
    assert not (tmp_path / "output" / ".sweep" / "slurm").exists()
    proc = _sweep(env, "run", sweep, "--runner", "slurm", "--cluster", "local", "--gpus-per-job", "0",
                  "--time-min", "10", "--wait")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 done" in _sweep(env, "status", sweep).stdout
    logs = [f for f in os.listdir(tmp_path / "output" / ".sweep" / "slurm") if not f.startswith(".")]
    assert logs, "submitit wrote no job folder"
    again = _sweep(env, "run", sweep, "--runner", "slurm", "--cluster", "local", "--wait")
    assert "nothing to submit" in again.stdout


def test_dry_run_prints_commands_and_runs_nothing(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(textwrap.dedent(f"""\
        output: {tmp_path / 'out'}
        protocols: {{base2new: {{datasets: [dtd]}}}}
        methods: [{{trainer: CoOp, config: tiny}}]
        """))
    proc = _sweep({**os.environ, "PYTHONPATH": ROOT}, "run", str(sweep), "--dry-run", "--set", "OPTIM.LR", "0.1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("train.py --root") == 6 and "OPTIM.LR 0.1" in proc.stdout
    assert not (tmp_path / "out").exists()


def test_slurm_chains_group_each_training_run_with_its_tests_and_requeue_the_same_chain(tmp_path):
    import submitit

    from clipbayes.sweep.runners import Sweep
    from clipbayes.sweep.slurm import ChainJob, Resources, chains

    description = {"output": str(tmp_path / "out"), "seeds": [1, 2],
                   "protocols": {"base2new": {"datasets": ["dtd"]}, "xd": {"targets": ["dtd", "eurosat"]}},
                   "methods": [{"trainer": "CoOp", "config": "tiny"},
                               {"trainer": "ZeroshotCLIP", "config": "tiny", "eval_only": True, "seeds": [1]}]}
    sweep = Sweep(expand(description, ROOT), ROOT, str(tmp_path / "out"))
    work = chains(sweep)
    trained = [chain for chain in work if chain[0].kind == "train"]
    assert len(trained) == 4  # base2new and xd training, 2 seeds
    assert all(all(run.needs == chain[0].key for run in chain[1:]) for chain in trained)
    assert sorted(len(chain) for chain in trained) == [2, 2, 3, 3]
    assert sum(len(chain) for chain in work) == len(sweep.runs)
    assert all(len(chain) == 1 for chain in work if chain[0].kind == "eval")
    # a finished chain is not submitted again
    first = trained[0]
    for run in first:
        folder = tmp_path / "out" / osp.relpath(run.output_dir, str(tmp_path / "out"))
        (folder / "prompt_learner").mkdir(parents=True)
        (folder / "prompt_learner" / f"model.pth.tar-{run.epochs}").write_text("")
        (folder / "log.txt").write_text("* accuracy: 50.0%\n")
    assert first not in chains(sweep) and len(chains(sweep)) == len(work) - 1
    # on preemption submitit requeues the same callable on the same chain
    job = ChainJob(sweep)
    requeued = job.checkpoint(first)
    assert isinstance(requeued, submitit.helpers.DelayedSubmission)
    assert requeued.function is job and requeued.args == (first,)
    parameters = Resources(partition="gpu", gpus_per_job=2, time_min=60, account="lab").parameters()
    assert parameters["slurm_partition"] == "gpu" and parameters["gpus_per_node"] == 2
    assert parameters["timeout_min"] == 60 and parameters["slurm_additional_parameters"] == {"account": "lab"}
