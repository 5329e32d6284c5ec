"""One configuration's row: built, trained and evaluated in its own Python process (clean peak-memory counters).

``run_isolated`` starts ``benchmarks/bench_trainers.py --_child NAME`` and reads back the JSON row that
``run_config`` (or, for ``OFFICIAL_MAPLE``, the official MaPLe comparison) writes there.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import torch

from trainer_bench.building import (TrainingStep, benchmark_classnames, build_clip, build_prompt_model,
                                    prepare_sampler, prompt_model_of, synthetic_inputs)
from trainer_bench.configurations import CONFIGS, make_cfg
from trainer_bench.measurement import STATISTICS, CudaPeak, peak_rss_mib, sync
from trainer_bench.prediction_measurement import measure_prediction
from trainer_bench.token_counting import TextPassMeter, vision_prompt_tokens
from trainer_bench.training_measurement import measure_training, token_floor

ENTRY_POINT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench_trainers.py")
OFFICIAL_MAPLE = "official-MaPLe"  # the child name of the --compare-official-maple row
# options handed to a child; one the caller's namespace lacks is left at the child's default
CHILD_OPTIONS = ("backbone", "classes", "batch", "samples", "steps", "warmup", "device", "prec", "text_chunk",
                 "test_batch", "test_batches", "test_reps", "seed", "variants", "mc_draws", "reference", "floor_reps",
                 "statistic")


def run_config(args, config: str) -> dict:
    """Training step, token floor and prediction of ``config`` (bench_trainers.py's docstring), as one row."""
    from clipbayes.modeling.precision import apply_precision, resolve_precision

    torch.manual_seed(args.seed)
    stat = STATISTICS[args.statistic]
    device = torch.device(args.device)
    prec = resolve_precision(args.prec, device)
    classnames = benchmark_classnames(args.classes, args.official_names)
    clip_model = apply_precision(build_clip(args.backbone), prec)
    model = build_prompt_model(make_cfg(args, config, prec), config, clip_model, classnames, device)
    inputs = synthetic_inputs(args, clip_model.visual.input_resolution, device)
    step = TrainingStep(model, inputs.images, inputs.labels, prec, device)
    sampled = CONFIGS[config][0] == "ReBaPL"
    if sampled:
        prepare_sampler(model, step, args.classes, clip_model.visual.input_resolution, device, args.seed)
    meter = TextPassMeter(prompt_model_of(model).text_encoder)

    sync(device)
    rss_base = peak_rss_mib()
    cuda_peak = CudaPeak(device)
    cuda_peak.start()
    training = measure_training(args, config, model, step, meter, device, stat)
    train_mem = cuda_peak.mib()
    floor = token_floor(args, model, inputs.images, training["tokens"], prec, device, stat)
    cuda_peak.start()
    prediction, modes = measure_prediction(args, config, model, meter, clip_model, classnames, inputs.test_images,
                                           prec, device, stat)
    test_mem = cuda_peak.mib()

    times = training["times"]
    row = dict(config=config, steps={name: stat(t) for name, t in times.items()}, step_times=times,
               s_per_step=stat(times[next(iter(times))]), img_per_s=prediction[modes[0]]["img_per_s"],
               tokens=training["tokens"], **floor, prediction=prediction,
               trainable_params=sum(p.numel() for p in step.params), precision=prec, buckets=training["buckets"])
    n_vision = vision_prompt_tokens(prompt_model_of(model))
    if n_vision:  # only in the rows of vision-prompted learners
        row["vision_prompt_tokens"] = n_vision
    if training["base_times"]:
        base = stat(training["base_times"])
        row.update(base_s_per_step=base, base_step_times=training["base_times"],
                   overhead_over_base=row["s_per_step"] / base)
    if sampled:  # the K samples' own memory, as held in the model and in each checkpoint
        row["samples_mib"] = model.learner.samples.numel() * model.learner.samples.element_size() / 2 ** 20
    if device.type == "cuda":
        row.update(train_peak_mib=train_mem, test_peak_mib=test_mem)
    else:
        row.update(rss_growth_mib=peak_rss_mib() - rss_base, peak_rss_mib=peak_rss_mib())
    return row


def run_child(args) -> dict:
    """The row of the child named ``args._child``."""
    if args._child == OFFICIAL_MAPLE:
        from trainer_bench.official_maple import compare_official_maple

        return compare_official_maple(args)
    return run_config(args, args._child)


def run_isolated(args, config: str) -> dict:
    """Run one configuration (or ``OFFICIAL_MAPLE``) in a fresh Python process; its row, or {config, error}."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        out = tmp.name
    argv = [sys.executable, ENTRY_POINT, "--_child", config, "--_child-out", out]
    for key in CHILD_OPTIONS:
        if hasattr(args, key):
            argv += ["--" + key.replace("_", "-"), str(getattr(args, key))]
    for key in ("official_names", "compare_official_maple"):
        if getattr(args, key, ""):
            argv += ["--" + key.replace("_", "-"), getattr(args, key)]
    if args.checkpointing:
        argv.append("--checkpointing")
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    try:
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()
            return dict(config=config, error=tail[-1] if tail else f"exit status {proc.returncode}")
        with open(out) as f:
            row = json.load(f)
        row["wall_s"] = time.perf_counter() - started
        return row
    finally:
        os.remove(out)
