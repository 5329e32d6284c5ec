#!/usr/bin/env python
"""Everything CUDA in one run, for the few minutes a GPU is lent: one CUDA GPU, no network, about 9 minutes.

    python benchmarks/gpu_check.py [--out DIR] [--budget-s 540]

Stages, each in its own processes with a share of the time budget (a stage with no time left is reported NOT RUN):
  tests  ``python -m pytest tests/test_cuda.py tests/test_precision.py`` on CUDA: low-precision training steps and
         predictions of every registered method against fp32, the GradScaler step, draws on the device, no
         host-device traffic in a step; and every method trained 20 steps at fp16, amp and bf16 on the toy CLIP and
         a tiny ViT CLIP (fp32 master weights: no learnable tensor left unchanged, loss finite, toy-world base
         accuracy within 5 points of fp32) plus the PBPrompt fp16 regression;
  e2e    every registered method (``clipbayes.registry.list_methods()``) through ``train.py`` on the tiny DemoShapes pipeline
         (tiny CLIP) with ``TRAINER.<NODE>.PREC`` fp16, amp and bf16: exit status 0, a test accuracy, no fallback;
  bench  ``benchmarks/bench_trainers.py`` on a randomly initialised ViT-B/16, C = 1000, B = 4, L = 10, fp16: s/step,
         test img/s and peak CUDA memory of every configuration but the conditional BayesianPrompt ones (every
         registered method with something to train must have a configuration there);
  cond   BayesianPrompt conditional at L = 10, B = 4, C = 1000 with text checkpointing: the chunk sizes of
         ``CHUNKS`` from the largest down until one fits in memory; its numbers and the chunk size;
  prefix shared prompt prefixes (clipbayes/modeling/shared_prefix.py) against whole prompts, interleaved step by
         step in one process: ``bench_trainers.py --variants shared,bucketed`` on the random ViT-B/16 at C = 100
         (FGVC Aircraft's names), fp16, for CoOp with 16 context tokens, unconditional and conditional
         BayesianPrompt and CoCoOp: training s/step and steady test img/s both ways and their ratios (reported,
         not asserted).
It prints PASS / FAIL / NOT RUN per item, a summary and a JSON of the numbers (also written to DIR/gpu_check.json);
the exit status is 1 when an item failed. Without CUDA it says so and exits 0 having run nothing.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from clipbayes.compat import dassl_available  # noqa: E402
from clipbayes.registry import list_methods  # noqa: E402

PRECISIONS = ("fp16", "amp", "bf16")
CHUNKS = (20000, 10000, 5000, 2000, 1000)  # text sequences per encoder pass; B x L x C = 40,000 conditional
# Seconds each stage may take at most (within --budget-s overall).
STAGE_CAPS = {"tests": 240, "e2e": 90, "bench": 120, "cond": 90, "prefix": 60}
PARALLEL_RUNS = 4  # train.py runs at once on the one GPU (tiny models)
BENCH = ["--backbone", "vit-b16-random", "--device", "cuda", "--prec", "fp16", "--classes", "1000", "--batch", "4",
         "--samples", "10", "--steps", "5", "--warmup", "2", "--test-batch", "16", "--test-batches", "3"]
PREFIX_BENCH = ["--classes", "100", "--official-names", "fgvc_aircraft", "--samples", "4", "--variants",
                "shared,bucketed", "--mc-draws", "per_batch", "--reference", "none", "--trainers", "CoOp-ctx16",
                "BayesianPrompt-uncond", "CoCoOp", "BayesianPrompt-cond"]


class Budget:
    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def for_stage(self, stage: str) -> float:
        return max(0.0, min(STAGE_CAPS[stage], self.left()))


class Report:
    """PASS / FAIL / NOT RUN lines as they happen, and the numbers for the JSON."""

    def __init__(self):
        self.items, self.numbers = [], {}

    def add(self, status: str, item: str, detail: str = "") -> None:
        self.items.append(dict(status=status, item=item, detail=detail))
        print(f"{status:8s} {item}" + (f": {detail}" if detail else ""), flush=True)

    def count(self, status: str) -> int:
        return sum(i["status"] == status for i in self.items)


def environment(out: str) -> dict:
    return {**os.environ, "PYTHONPATH": REPO, "PYTHONUNBUFFERED": "1", "CLIPBAYES_CACHE": osp.join(out, "cache"),
            "CLIPBAYES_TEST_DEVICE": "cuda"}


def run(argv: list[str], out: str, timeout: float, log: str) -> tuple[int | None, str]:
    """Run a command from the repository root; (exit status or None on timeout, its output), output also in log."""
    try:
        proc = subprocess.run(argv, cwd=REPO, env=environment(out), capture_output=True, text=True,
                              timeout=max(1.0, timeout))
        code, text = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        code = None
        text = "".join(s.decode() if isinstance(s, bytes) else (s or "") for s in (err.stdout, err.stderr))
    with open(log, "w") as f:
        f.write(text)
    return code, text


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


# --- stages --------------------------------------------------------------------------------------------------------
def stage_tests(report: Report, budget: Budget, out: str) -> None:
    seconds = budget.for_stage("tests")
    if seconds < 10:
        return report.add("NOT RUN", "CUDA tests", "no time left")
    xml = osp.join(out, "cuda_tests.xml")
    code, text = run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", f"--junitxml={xml}",
                      "tests/test_cuda.py", "tests/test_precision.py"], out, seconds, osp.join(out, "cuda_tests.log"))
    if code is None or not osp.isfile(xml):
        return report.add("FAIL", "CUDA tests", "timed out" if code is None else last_line(text))
    cases = ET.parse(xml).getroot().iter("testcase")
    results = {}
    for case in cases:
        outcome = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
        results[case.get("name")] = outcome
    report.numbers["cuda_tests"] = results
    for name, outcome in results.items():
        if outcome in ("failure", "error"):
            report.add("FAIL", f"CUDA test {name}", "see cuda_tests.log")
    counts = {k: sum(v == k for v in results.values()) for k in ("passed", "failure", "error", "skipped")}
    status = "PASS" if code == 0 and counts["passed"] else "FAIL"
    report.add(status, "CUDA tests", f"{counts['passed']} passed, {counts['failure'] + counts['error']} failed, "
                                     f"{counts['skipped']} skipped")


def stage_e2e(report: Report, budget: Budget, out: str) -> None:
    from clipbayes.demo import tiny_pipeline_options  # needs Dassl, checked before the stages run

    seconds = budget.for_stage("e2e")
    if seconds < 10:
        return report.add("NOT RUN", "train.py end to end", "no time left")
    os.makedirs(osp.join(out, "e2e"), exist_ok=True)
    deadline = time.monotonic() + seconds
    pending = [(m.name, m.node, prec) for m in list_methods() for prec in PRECISIONS]
    running, rows = [], []
    while pending or running:
        while pending and len(running) < PARALLEL_RUNS:
            name, node, prec = pending.pop(0)
            folder = osp.join(out, "e2e", f"{name}-{prec}")
            log = open(folder + ".log", "w")
            proc = subprocess.Popen([sys.executable, "train.py", "--trainer", name, "--output-dir", folder,
                                     *tiny_pipeline_options(), f"TRAINER.{node}.PREC", prec], cwd=REPO, env=environment(out), stdout=log,
                                    stderr=subprocess.STDOUT, text=True)
            running.append((proc, log, name, prec, time.monotonic()))
        time.sleep(0.5)
        timed_out = time.monotonic() > deadline
        for job in list(running):
            proc, log, name, prec, started = job
            if proc.poll() is None and not timed_out:
                continue
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
            running.remove(job)
            rows.append(e2e_row(name, prec, proc.returncode, timed_out, time.monotonic() - started, log.name))
        if timed_out:
            rows += [dict(trainer=n, prec=p, ok=False, error="not run: no time left") for n, _, p in pending]
            pending = []
    report.numbers["e2e"] = rows
    for row in rows:
        detail = (f"accuracy {row['accuracy']}%, {row['wall_s']:.0f} s" if row["ok"] else row["error"])
        report.add("PASS" if row["ok"] else "FAIL", f"train.py --trainer {row['trainer']} PREC {row['prec']}", detail)


def e2e_row(name: str, prec: str, code: int | None, timed_out: bool, wall: float, log: str) -> dict:
    text = open(log).read()
    accuracy = re.findall(r"\* accuracy: ([\d.]+)%", text)
    row = dict(trainer=name, prec=prec, wall_s=round(wall, 1), log=osp.basename(log),
               accuracy=float(accuracy[-1]) if accuracy else None)
    if timed_out:
        return dict(row, ok=False, error="timed out")
    if code != 0:
        return dict(row, ok=False, error=f"exit status {code}: {last_line(text)}")
    if "needs CUDA; running in fp32" in text:
        return dict(row, ok=False, error="ran in fp32: CUDA was not used")
    if not accuracy:
        return dict(row, ok=False, error="no test accuracy in the log")
    return dict(row, ok=True)


def bench_module():
    spec = importlib.util.spec_from_file_location("bench_trainers", osp.join(REPO, "benchmarks", "bench_trainers.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench_rows(report: Report, out: str, name: str, extra: list[str], timeout: float) -> list[dict] | None:
    path = osp.join(out, f"{name}.json")
    code, text = run([sys.executable, "benchmarks/bench_trainers.py", *BENCH, *extra, "--json", path], out,
                     timeout, osp.join(out, f"{name}.log"))
    if code != 0 or not osp.isfile(path):
        report.add("FAIL", f"benchmark {name}", "timed out" if code is None else last_line(text))
        return None
    with open(path) as f:
        return json.load(f)["rows"]


def stage_bench(report: Report, budget: Budget, out: str) -> None:
    configs = bench_module().CONFIGS  # name -> (trainer, ...)
    trainers = {spec[0] for spec in configs.values()}
    for method in list_methods():
        if method.trainable and method.name not in trainers:  # ZeroshotCLIP has no training step to measure
            report.add("FAIL", f"benchmark covers {method.name}",
                       "no configuration of it in benchmarks/bench_trainers.py CONFIGS")
    deadline = time.monotonic() + budget.for_stage("bench")
    report.numbers["bench_vit_b16_c1000"] = rows = []
    for config in [name for name in configs if not name.endswith("-cond")]:  # one call each: a timeout loses one
        seconds = deadline - time.monotonic()
        if seconds < 15:
            report.add("NOT RUN", f"benchmark {config}", "no time left")
            continue
        found = bench_rows(report, out, f"bench_{config}", ["--trainers", config], seconds)
        if found is None:
            continue
        row = found[0]
        rows.append(row)
        if "error" in row:
            report.add("FAIL", f"benchmark {config}", row["error"])
        else:
            report.add("PASS", f"benchmark {config}",
                       f"{row['s_per_step']:.4f} s/step, {row['img_per_s']:.0f} test img/s, peak "
                       f"{row['train_peak_mib']:.0f} / {row['test_peak_mib']:.0f} MiB (train / test)")


def stage_cond(report: Report, budget: Budget, out: str) -> None:
    item = "BayesianPrompt-cond L=10 B=4 C=1000"
    tried = []
    report.numbers["bayesian_prompt_cond"] = dict(samples=10, batch=4, classes=1000, checkpointing=True,
                                                  tried=tried, chunk=None)
    deadline = time.monotonic() + budget.for_stage("cond")
    for chunk in CHUNKS:
        seconds = deadline - time.monotonic()
        if seconds < 20:
            return report.add("NOT RUN" if not tried else "FAIL", item,
                              f"no time left (chunk sizes tried: {[t['chunk'] for t in tried]})")
        rows = bench_rows(report, out, f"bench_cond_chunk{chunk}", [
            "--trainers", "BayesianPrompt-cond", "--text-chunk", str(chunk), "--checkpointing", "--steps", "3",
            "--warmup", "1", "--test-batch", "4", "--test-batches", "2"], seconds)
        if rows is None:
            return
        row = rows[0]
        tried.append(dict(chunk=chunk, error=row.get("error")))
        if "error" not in row:
            report.numbers["bayesian_prompt_cond"].update(chunk=chunk, row=row)
            return report.add("PASS", item, f"TEXT_CHUNK_SIZE {chunk} fits: {row['s_per_step']:.3f} s/step, "
                                            f"{row['img_per_s']:.1f} test img/s, peak {row['train_peak_mib']:.0f} / "
                                            f"{row['test_peak_mib']:.0f} MiB (train / test)")
        if "out of memory" not in row["error"].lower():
            return report.add("FAIL", item, row["error"])
    report.add("FAIL", item, f"no chunk size of {CHUNKS} fits in memory")


def stage_prefix(report: Report, budget: Budget, out: str) -> None:
    rows = bench_rows(report, out, "bench_prefix", PREFIX_BENCH, budget.for_stage("prefix"))
    report.numbers["prefix_sharing_vit_b16_c100"] = rows
    for row in rows or []:
        if "error" in row:
            report.add("FAIL", f"prefix sharing {row['config']}", row["error"])
            continue
        steps, prediction = row["steps"], row["prediction"]
        whole = prediction.get("per_batch, whole prompts")
        report.add("PASS", f"prefix sharing {row['config']}",
                   f"train {steps['bucketed'] / steps['shared']:.2f}x ({steps['shared']:.4f} s/step shared, "
                   f"{steps['bucketed']:.4f} whole); predict "
                   + (f"{prediction['per_batch']['steady_img_per_s'] / whole['steady_img_per_s']:.2f}x" if whole
                      else "-") + f"; peak {row['train_peak_mib']:.0f} MiB (train)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=osp.join(REPO, "output", "gpu_check", time.strftime("%Y%m%d-%H%M%S")),
                        help="folder for the logs and gpu_check.json")
    parser.add_argument("--budget-s", type=float, default=540.0, help="total time budget in seconds")
    parser.add_argument("--stages", nargs="+", default=list(STAGE_CAPS), choices=list(STAGE_CAPS))
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("No CUDA GPU is available: nothing was run (this check needs one CUDA GPU).")
        return 0

    started = time.monotonic()
    budget = Budget(args.budget_s)
    os.makedirs(args.out, exist_ok=True)
    report = Report()
    props = torch.cuda.get_device_properties(0)
    report.numbers["machine"] = dict(gpu=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                                     torch=torch.__version__, cuda=torch.version.cuda, cpus=os.cpu_count())
    print(f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB; torch {torch.__version__}, CUDA "
          f"{torch.version.cuda}; budget {args.budget_s:.0f} s; logs in {args.out}", flush=True)
    if not dassl_available():
        report.add("FAIL", "Dassl.pytorch installed", "it is not: run README.md's set-up first")
    stages = {"tests": stage_tests, "e2e": stage_e2e, "bench": stage_bench, "cond": stage_cond,
              "prefix": stage_prefix}
    for name in args.stages:
        print(f"--- {name} ({budget.left():.0f} s left)", flush=True)
        stages[name](report, budget, args.out)

    summary = {status: report.count(status) for status in ("PASS", "FAIL", "NOT RUN")}
    result = dict(summary=summary, wall_s=round(time.monotonic() - started, 1), items=report.items,
                  numbers=report.numbers)
    with open(osp.join(args.out, "gpu_check.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"=== {summary['PASS']} PASS, {summary['FAIL']} FAIL, {summary['NOT RUN']} NOT RUN in "
          f"{result['wall_s']:.0f} s")
    print(json.dumps(dict(summary=summary, wall_s=result["wall_s"], numbers=report.numbers), indent=1))
    print(f"wrote {osp.join(args.out, 'gpu_check.json')}")
    return 1 if summary["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
