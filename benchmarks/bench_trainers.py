#!/usr/bin/env python
"""Speed and memory of the prompt learners on one frozen CLIP with synthetic inputs (a benchmark, not a test).

Per configuration (each in its own Python process, so the CPU memory peaks do not mix) it measures
  * s/step    forward + backward + SGD step of the learner only (the rest of CLIP frozen), as
              ``PromptTrainer.forward_backward`` does it: median of --steps timed steps after --warmup untimed ones,
              with length-bucketed text passes and with one-length passes (every sequence padded to the longest,
              the encoding before bucketing), the two interleaved step by step in one process (--buckets);
  * floor     what the step would cost if each tower processed only the tokens actually needed: the text tokens
              of every sampled prompt at its own length (EOT index + 1) times the measured seconds per text token
              (forward + backward to the input, on as many sequences all of the mean needed length, the cheapest
              of one pass or 2, 4, 8 chunks), plus the image tokens (patches + 1 per image) times the measured
              seconds per image token (forward);
              "step / floor" is the measured bucketed step over it;
  * tokens    text tokens per training step counted by a hook on the text encoder, four ways: 77 x sequences
              (official: full-length prompts), longest x sequences (one-length pass), bucketed, needed;
  * img/s     test images per second, ``predict`` under ``torch.no_grad()`` inside one ``model.evaluation_cache``
              block per evaluation of --test-batches batches of --test-batch images, for each TEST.MC_DRAWS mode
              (--mc-draws) and for CoOp built on the same CLIP in the same process (--reference), the evaluations
              interleaved --test-reps times: steady (median of batches 2..), whole evaluation, and the one-off
              extra of batch 1 (the once-per-evaluation text encodings), with the text sequences of batches 1 and 2;
  * peak mem  CUDA: ``torch.cuda.max_memory_allocated`` (train and test separately); CPU: growth of the peak resident
              set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) over the process's peak after setup.
LogitPrior rows also give their s/step over that of their base learner alone: its step timed in the same process
(robust to load drift on a shared machine), and over the base configuration's own row.
``--official-names [DATASET]`` uses the first --classes real class names of DATASET (default imagenet) from
``benchmarks/classnames.json`` (sources in that file) instead of "class 0" ... "class C-1": the savings of the
length buckets depend on the name lengths.

``--compare-official-ove`` adds the OVE-PG objective alone (forward + backward): ours
(``clipbayes.objectives.ove_pg_loss``, O(B x C)) against a dense re-statement of the official algorithm written
below (B x C x C difference tensors, a Python loop over the C classes, a dense B(C-1) x B(C-1) precision matrix,
solve and inverse per class). The dense one is measured at small C and its growth extrapolated to C = 1000.

Examples
    python benchmarks/bench_trainers.py --backbone tiny-vit --classes 1000 --compare-official-ove
    python benchmarks/bench_trainers.py --classes 1000 --official-names --trainers CoOp BayesianPrompt-uncond
    python benchmarks/bench_trainers.py --backbone vit-b16-random --device cuda --prec bf16 --classes 1000 \
        --batch 4 --samples 10 --text-chunk 2000 --checkpointing --json bench_cuda.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# name -> (trainer, BayesianPrompt posterior or None, LogitPrior base or None, base configuration name or None)
CONFIGS = {
    "CoOp": ("CoOp", None, None, None),
    "CoCoOp": ("CoCoOp", None, None, None),
    "BayesianPrompt-uncond": ("BayesianPrompt", "unconditional", None, None),
    "BayesianPrompt-cond": ("BayesianPrompt", "conditional", None, None),
    "LogitPrior-CoOp": ("LogitPrior", None, "CoOp", "CoOp"),
    "LogitPrior-CoCoOp": ("LogitPrior", None, "CoCoOp", "CoCoOp"),
    "LogitPrior-BayesianPrompt-uncond": ("LogitPrior", "unconditional", "BayesianPrompt", "BayesianPrompt-uncond"),
    "LogitPrior-BayesianPrompt-cond": ("LogitPrior", "conditional", "BayesianPrompt", "BayesianPrompt-cond"),
    "DualViewPrompt": ("DualViewPrompt", None, None, None),  # MIXUP batch
    "DualViewPrompt-bank": ("DualViewPrompt", None, None, None),  # MIXUP bank: B mixed rows per step
    "PBPrompt": ("PBPrompt", None, None, None),
}

VIT_B16 = dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=16,
               context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8,
               transformer_layers=12)


# ----------------------------------------------------------------------------------------------------------------
# building
# ----------------------------------------------------------------------------------------------------------------
def build_clip(backbone: str):
    from clipbayes.compat import import_clip
    from clipbayes.modeling.clip_loader import build_tiny_clip

    if backbone == "tiny-vit":
        return build_tiny_clip("tiny-vit")
    if backbone == "vit-b16-random":
        clip = import_clip()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = clip.model.CLIP(**VIT_B16)
        return model.float().eval()
    raise ValueError(f"unknown backbone {backbone}")


def make_cfg(args, config: str, prec: str):
    from clipbayes.config import default_cfg

    trainer, posterior, base, _ = CONFIGS[config]
    cfg = default_cfg()
    cfg.DATASET.NAME = "ImageNet"  # zero-shot template of LogitPrior
    cfg.MODEL.CLIP.TEXT_CHUNK_SIZE = args.text_chunk
    cfg.MODEL.CLIP.TEXT_CHECKPOINTING = args.checkpointing
    for key in ("COOP", "COCOOP", "BAYESIAN_PROMPT"):
        node = cfg.TRAINER[key]
        node.N_CTX = 4
        node.CTX_INIT = "a photo of a"
        node.PREC = prec
    bp = cfg.TRAINER.BAYESIAN_PROMPT
    bp.N_SAMPLES_TRAIN = args.samples
    bp.N_SAMPLES_TEST = args.samples
    bp.POSTERIOR = posterior or "unconditional"
    bp.PREDICTION = "mc"
    cfg.TRAINER.DUAL_VIEW.update(PREC=prec, MIXUP="bank" if config.endswith("-bank") else "batch")
    cfg.TRAINER.PBPROMPT.update(PREC=prec, N_SAMPLES_TRAIN=args.samples, N_SAMPLES_TEST=args.samples)
    if trainer == "LogitPrior":
        cfg.TRAINER.LOGIT_PRIOR.BASE = base
        cfg.TRAINER.LOGIT_PRIOR.PREC = prec
    return cfg


def text_encoder_of(model):
    return model.base.text_encoder if hasattr(model, "base") else model.text_encoder


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


# ----------------------------------------------------------------------------------------------------------------
# class names
# ----------------------------------------------------------------------------------------------------------------
CLASSNAMES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "classnames.json")


def benchmark_classnames(n_classes: int, dataset: str) -> list[str]:
    """The first ``n_classes`` real names of ``dataset`` (classnames.json), or "class 0" ... when it is empty."""
    if not dataset:
        return [f"class {i}" for i in range(n_classes)]
    with open(CLASSNAMES_FILE) as f:
        names = json.load(f)["classnames"]
    if dataset not in names:
        raise SystemExit(f"--official-names {dataset}: not in {CLASSNAMES_FILE}; choose one of {sorted(names)}")
    if n_classes > len(names[dataset]):
        raise SystemExit(f"--official-names {dataset} has {len(names[dataset])} classes, fewer than --classes "
                         f"{n_classes}")
    return names[dataset][:n_classes]


def dataset_choices() -> list[str]:
    with open(CLASSNAMES_FILE) as f:
        return sorted(json.load(f)["classnames"])


# ----------------------------------------------------------------------------------------------------------------
# one configuration (runs in a child process)
# ----------------------------------------------------------------------------------------------------------------
class TextPassMeter:
    """Forward pre-hook on the text encoder: sequences and tokens of every pass.

    Tokens are counted four ways: ``official`` (77 per sequence), ``longest`` (every sequence padded to the longest
    of its pass: one-length encoding), ``bucketed`` (each length bucket padded to its own longest member) and
    ``needed`` (each sequence at its own EOT index + 1).
    """

    KINDS = ("sequences", "official", "longest", "bucketed", "needed")

    def __init__(self, encoder):
        self.counts = dict.fromkeys(self.KINDS, 0)
        self.handle = encoder.register_forward_pre_hook(self)

    def __call__(self, module, inputs):
        from clipbayes.modeling.text import LengthBuckets

        embeddings, eot = inputs[:2]
        n = embeddings.shape[0]
        buckets = eot if isinstance(eot, LengthBuckets) else LengthBuckets(eot)
        copies = n // buckets.num_sequences
        for kind, value in (("sequences", n), ("official", 77 * n), ("longest", copies * buckets.longest_tokens),
                            ("bucketed", copies * buckets.padded_tokens), ("needed", copies * buckets.needed_tokens)):
            self.counts[kind] += value

    def reset(self):
        self.counts = dict.fromkeys(self.KINDS, 0)


def image_tokens(visual) -> int | None:
    """Tokens per image through a ViT image tower (patches + class token); None for a ResNet."""
    embedding = getattr(visual, "positional_embedding", None)
    return None if embedding is None or embedding.dim() != 2 else int(embedding.shape[0])


STATISTICS = {"median": lambda xs: statistics.median(list(xs)), "min": lambda xs: min(xs)}


def timed_call(fn, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def text_token_cost(encoder, n_sequences: int, length: int, prec, device, reps: int, stat) -> float:
    """Seconds per token of the text tower, forward + backward to its input (as in a training step), on
    ``n_sequences`` sequences all of ``length`` tokens (no padding), passed whole or in 2, 4 or 8 chunks: the cost
    per token depends on the size of a pass (cache effects on a CPU), and the floor takes the cheapest."""
    from clipbayes.modeling.precision import autocast

    width = encoder.token_embedding.weight.shape[1]
    x = (0.02 * torch.randn(n_sequences, length, width, device=device)).to(encoder.dtype).requires_grad_(True)
    eot = torch.full((n_sequences,), length - 1, device=device)
    best = math.inf
    for pieces in (1, 2, 4, 8):
        size = math.ceil(n_sequences / pieces)
        if pieces > 1 and size < 64:
            break

        def run():
            for start in range(0, n_sequences, size):
                with autocast(prec, device):
                    out = encoder(x[start:start + size], eot[start:start + size])
                out.float().sum().backward()

        run()
        best = min(best, stat(timed_call(run, device) for _ in range(reps)))
    return best / (n_sequences * length)


def image_token_cost(model, images, prec, device, reps: int, stat) -> float | None:
    """Seconds per token of the frozen image tower (forward, no gradient), on the training batch."""
    from clipbayes.modeling.precision import autocast

    tokens = image_tokens(model.image_encoder)
    if tokens is None:
        return None

    def run():
        with torch.no_grad(), autocast(prec, device):
            model.encode_images(images)

    run()
    return stat(timed_call(run, device) for _ in range(reps)) / (images.shape[0] * tokens)


def prediction_times(model, images, batches: int, mode: str, prec, device, meter) -> tuple[list[float], list[int]]:
    """Seconds and text sequences of each of ``batches`` test batches of one evaluation (one evaluation_cache
    block, as PromptTrainer.test)."""
    from clipbayes.modeling.precision import autocast

    times, sequences = [], []
    with torch.no_grad(), model.evaluation_cache(mode):
        for _ in range(batches):
            meter.reset()

            def run():
                with autocast(prec, device):
                    model.predict(images).float()

            times.append(timed_call(run, device))
            sequences.append(meter.counts["sequences"])
    return times, sequences


def run_config(args, config: str) -> dict:
    from clipbayes.compat import import_dassl

    import_dassl()
    from dassl.engine import TRAINER_REGISTRY
    from clipbayes.modeling.precision import apply_precision, autocast, resolve_precision
    from clipbayes.modeling.prompt_clip import MC_DRAWS
    from clipbayes.modeling.text import LengthBuckets

    torch.manual_seed(args.seed)
    stat = STATISTICS[args.statistic]
    device = torch.device(args.device)
    prec = resolve_precision(args.prec, device)
    cfg = make_cfg(args, config, prec)
    trainer = CONFIGS[config][0]
    classnames = benchmark_classnames(args.classes, args.official_names)

    clip_model = apply_precision(build_clip(args.backbone), prec)
    res = clip_model.visual.input_resolution
    model = TRAINER_REGISTRY.get(trainer).make_prompt_model(cfg, clip_model, classnames)
    model.requires_grad_(False)
    model.learner.requires_grad_(True)
    model.to(device)
    if model.wants_train_features:  # a training-set bank (DualViewPrompt): 16 random unit-norm features per class
        bank_labels = torch.arange(args.classes, device=device).repeat(16)
        bank = F.normalize(torch.randn(bank_labels.numel(), clip_model.visual.output_dim, device=device), dim=-1)
        model.attach_train_features(bank, bank_labels)
    params = [p for p in model.learner.parameters() if p.requires_grad]
    optim = torch.optim.SGD(params, lr=1e-4, momentum=0.9, weight_decay=5e-4)
    scaler = torch.amp.GradScaler("cuda") if prec == "amp" else None
    prompt_model = model.base if hasattr(model, "base") else model

    gen = torch.Generator().manual_seed(args.seed)
    images = torch.randn(args.batch, 3, res, res, generator=gen).to(device)
    labels = torch.randint(0, args.classes, (args.batch,), generator=gen).to(device)
    test_images = torch.randn(args.test_batch, 3, res, res, generator=gen).to(device)
    meter = TextPassMeter(prompt_model.text_encoder)

    def step(net=model):
        with autocast(prec, device):
            loss, _, _ = net.train_loss(images, labels)
        optim.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optim)
            scaler.update()
        else:
            loss.backward()
            optim.step()
        return loss

    # --- training: bucketed and one-length text passes, interleaved step by step (A/B in one process) -----------
    bucketed = prompt_model.prompts.buckets
    variants = {"bucketed": bucketed, "one_length": LengthBuckets(prompt_model.prompts.eot, max_buckets=1)}
    variants = {name: variants[name] for name in (("bucketed", "one_length") if args.buckets == "both"
                                                  else {"on": ("bucketed",), "off": ("one_length",)}[args.buckets])}
    sync(device)
    rss_base = peak_rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        cuda_base = torch.cuda.memory_allocated(device)
    for buckets in variants.values():
        prompt_model.prompts.buckets = buckets
        for _ in range(args.warmup):
            step()
    times = {name: [] for name in variants}
    counted = {}
    for _ in range(args.steps):
        for name, buckets in variants.items():
            prompt_model.prompts.buckets = buckets
            meter.reset()
            times[name].append(timed_call(lambda: step(), device))
            counted[name] = dict(meter.counts)
    tokens = counted[next(iter(variants))]
    tokens["bucketed"] = counted.get("bucketed", tokens)["bucketed"]
    prompt_model.prompts.buckets = bucketed
    base_times = []
    if trainer == "LogitPrior":  # the base learner's own step, timed in the same process right after
        base_times = [timed_call(lambda: step(model.base), device) for _ in range(args.steps)]
    loss = step()
    if not torch.isfinite(loss):
        raise RuntimeError(f"{config}: non-finite loss {loss.item()}")
    train_mem = (torch.cuda.max_memory_allocated(device) - cuda_base) / 2**20 if device.type == "cuda" else None
    optim.zero_grad(set_to_none=True)

    # --- the token floor: measured cost of one token through each tower ------------------------------------------
    mean_length = max(1, round(tokens["needed"] / tokens["sequences"]))
    text_cost = text_token_cost(prompt_model.text_encoder, tokens["sequences"], mean_length, prec, device,
                                args.floor_reps, stat)
    image_cost = image_token_cost(prompt_model, images, prec, device, args.floor_reps, stat)
    per_image = image_tokens(prompt_model.image_encoder)
    floor = (tokens["needed"] * text_cost + args.batch * per_image * image_cost) if image_cost is not None else None

    # --- prediction: each draw mode, and CoOp on the same CLIP, interleaved evaluations (A/B in one process) ------
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        cuda_base = torch.cuda.memory_allocated(device)
    modes = list(MC_DRAWS) if args.mc_draws == "both" else [args.mc_draws]
    evaluations = [(mode, model, meter, mode) for mode in modes]
    if args.reference == "CoOp" and trainer != "CoOp":
        coop = TRAINER_REGISTRY.get("CoOp").make_prompt_model(make_cfg(args, "CoOp", prec), clip_model, classnames)
        coop.requires_grad_(False)
        coop.to(device)
        evaluations.append(("CoOp", coop, TextPassMeter(coop.text_encoder), "per_batch"))
    for _, net, net_meter, mode in evaluations:  # warm-up evaluation (not timed)
        prediction_times(net, test_images, 1, mode, prec, device, net_meter)
    prediction = {name: dict(times=[], sequences=None) for name, *_ in evaluations}
    for _ in range(args.test_reps):
        for name, net, net_meter, mode in evaluations:
            batch_times, sequences = prediction_times(net, test_images, args.test_batches, mode, prec, device,
                                                      net_meter)
            prediction[name]["times"].append(batch_times)
            prediction[name]["sequences"] = sequences
    test_mem = (torch.cuda.max_memory_allocated(device) - cuda_base) / 2**20 if device.type == "cuda" else None
    for entry in prediction.values():
        first = stat(t[0] for t in entry["times"])
        later = stat(x for t in entry["times"] for x in t[1:]) if args.test_batches > 1 else first
        total = stat(sum(t) for t in entry["times"])
        entry.update(img_per_s=args.test_batch * args.test_batches / total, steady_img_per_s=args.test_batch / later,
                     one_off_s=first - later)

    row = dict(config=config, steps={name: stat(t) for name, t in times.items()}, step_times=times,
               s_per_step=stat(times[next(iter(variants))]), img_per_s=prediction[modes[0]]["img_per_s"],
               tokens=tokens,
               text_s_per_token=text_cost, image_s_per_token=image_cost, image_tokens_per_step=(
                   args.batch * per_image if per_image else None), floor_s=floor, prediction=prediction,
               trainable_params=sum(p.numel() for p in params), precision=prec,
               buckets=dict(lengths=bucketed.lengths, sizes=bucketed.sizes))
    if base_times:
        row.update(base_s_per_step=stat(base_times), base_step_times=base_times,
                   overhead_over_base=row["s_per_step"] / stat(base_times))
    if device.type == "cuda":
        row.update(train_peak_mib=train_mem, test_peak_mib=test_mem)
    else:
        row.update(rss_growth_mib=peak_rss_mib() - rss_base, peak_rss_mib=peak_rss_mib())
    return row


def run_isolated(args, config: str) -> dict:
    """Run one configuration in a fresh Python process (clean peak-memory counters)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        out = tmp.name
    argv = [sys.executable, os.path.abspath(__file__), "--_child", config, "--_child-out", out]
    for key in ("backbone", "classes", "batch", "samples", "steps", "warmup", "device", "prec", "text_chunk",
                "test_batch", "test_batches", "test_reps", "seed", "buckets", "mc_draws", "reference", "floor_reps",
                "statistic"):
        argv += ["--" + key.replace("_", "-"), str(getattr(args, key))]
    if args.official_names:
        argv += ["--official-names", args.official_names]
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


# ----------------------------------------------------------------------------------------------------------------
# OVE-PG: ours vs a dense re-statement of the official algorithm
# ----------------------------------------------------------------------------------------------------------------
def official_pg_mean(c):
    """The official PG 'mean' (b = 1): c clamped to [1e-8, 20], tanh(min(c/2, 10)) / (c + 1e-8)."""
    c = c.clamp(1e-8, 20.0)
    return torch.tanh((0.5 * c).clamp(max=10.0)) / (c + 1e-8)


def dense_official_ove_loss(f, z, y, alpha, lambda_1, noise_rows):
    """The official CoOp_OVE_PG objective, densely, one Gibbs sample (per-sample kappa, i.e. without the official
    kappa-tiling defect). f, z: (B, C); noise_rows: (C, B, C-1), the eps of row j, sample b, pair (j, h)."""
    B, C = f.shape
    diff_f = f.unsqueeze(2) - f.unsqueeze(1)  # (B, C, C): [b, j, h] = f_j - f_h
    diff_z = (z.unsqueeze(2) - z.unsqueeze(1)).detach()
    kappa = F.one_hot(y, C).to(f.dtype) - 0.5  # (B, C)
    rows = []
    for j in range(C):  # every candidate class j, as the official loop
        keep = torch.cat([torch.arange(0, j), torch.arange(j + 1, C)]).to(f.device)
        m = diff_f[:, j, keep].reshape(-1)  # (B (C-1),), sample-major
        c = diff_z[:, j, keep].reshape(-1)
        n = m.numel()
        kap = kappa[:, j].repeat_interleave(C - 1)
        precision = torch.diag(official_pg_mean(c)) + alpha * torch.eye(n, dtype=f.dtype, device=f.device)
        mean = torch.linalg.solve(precision, alpha * m + kap)
        cov = torch.linalg.inv(precision)
        psi = mean + torch.sqrt(torch.diagonal(cov)) * noise_rows[j].reshape(-1)
        rows.append(F.logsigmoid(psi).reshape(B, C - 1).sum(-1))
    log_probs = torch.stack(rows, dim=1)  # (B, C)
    return F.nll_loss(log_probs, y) + lambda_1 * (z - f).pow(2).mean()


def time_fb(fn, f, reps):
    times = []
    for _ in range(reps):
        g = f.detach().clone().requires_grad_(True)
        t0 = time.perf_counter()
        loss = fn(g)
        loss.backward()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), loss.detach()


def compare_ove(args) -> list[dict]:
    from clipbayes.objectives import ove_pg_loss

    B, alpha, lambda_1 = args.ove_batch, 1.0, 0.2
    rows = []
    sizes = sorted(set(args.ove_dense_classes) | {args.ove_classes})
    for C in sizes:
        gen = torch.Generator().manual_seed(C)
        f = torch.randn(B, C, generator=gen) * 5
        z = torch.randn(B, C, generator=gen) * 5
        y = torch.randint(0, C, (B,), generator=gen)
        noise_rows = torch.randn(C, B, C - 1, generator=gen)
        eps = torch.stack([noise_rows[int(y[b]), b] for b in range(B)]).unsqueeze(0)  # true rows, (1, B, C-1)
        ours = lambda g: ove_pg_loss(g, z, y, alpha=alpha, lambda_1=lambda_1, omega_formula="official",
                                     noise=eps)[0]
        time_fb(ours, f, 3)  # warm-up
        if C == sizes[0]:  # warm up the dense path (linear-algebra initialisation) once
            time_fb(lambda g: dense_official_ove_loss(g, z, y, alpha, lambda_1, noise_rows), f, 1)
        t_ours, l_ours = time_fb(ours, f, args.ove_reps)
        row = dict(C=C, B=B, ours_s=t_ours, ours_loss=l_ours.item(), dense_s=None, dense_loss=None,
                   dense_matrix_mib=(B * (C - 1)) ** 2 * 4 / 2**20, dense_bcc_mib=B * C * C * 4 / 2**20,
                   measured=False)
        if C in args.ove_dense_classes:
            dense = lambda g: dense_official_ove_loss(g, z, y, alpha, lambda_1, noise_rows)
            reps = 1 if C >= 100 else 3
            t_dense, l_dense = time_fb(dense, f, reps)
            row.update(dense_s=t_dense, dense_loss=l_dense.item(), measured=True)
        rows.append(row)
        print(f"  OVE-PG C={C}: ours {row['ours_s'] * 1e3:.3f} ms"
              + (f", dense {row['dense_s']:.3f} s" if row["measured"] else ""), file=sys.stderr)
    measured = [r for r in rows if r["measured"]]
    if len(measured) >= 2:  # power-law growth t = a C^k from the two largest measured sizes
        r1, r2 = measured[-2], measured[-1]
        k = math.log(r2["dense_s"] / r1["dense_s"]) / math.log(r2["C"] / r1["C"])
        for r in rows:
            if not r["measured"]:
                r["dense_s_extrapolated"] = r2["dense_s"] * (r["C"] / r2["C"]) ** k
                r["growth_exponent"] = k
    return rows


def ove_table(rows) -> str:
    from tabulate import tabulate

    table = []
    for r in rows:
        if r["measured"]:
            dense = f"{r['dense_s']:.3f}"
            ratio = f"{r['dense_s'] / r['ours_s']:.0f}x"
            agree = f"{abs(r['dense_loss'] - r['ours_loss']):.1e}"
        elif "dense_s_extrapolated" in r:
            dense = f"~{r['dense_s_extrapolated']:.0f} (extrapolated, C^{r['growth_exponent']:.1f})"
            ratio = f"~{r['dense_s_extrapolated'] / r['ours_s']:.0e}x"
            agree = "not run"
        else:
            dense, ratio, agree = "not run", "", ""
        table.append([r["C"], r["B"], f"{r['ours_s'] * 1e3:.3f}", dense, ratio, agree,
                      f"{r['dense_matrix_mib']:.1f}", f"{r['dense_bcc_mib']:.2f}"])
    return tabulate(table, headers=["C", "B", "ours ms (fwd+bwd)", "dense official s (fwd+bwd)", "dense / ours",
                                    "|loss diff|", "per-class dense matrix MiB", "B x C x C MiB"])


# ----------------------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------------------
def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def training_table(rows, cuda: bool) -> str:
    from tabulate import tabulate

    table = []
    for r in rows:
        if "error" in r:
            table.append([r["config"], "ERROR: " + r["error"][:100]])
            continue
        steps, tok = r["steps"], r["tokens"]
        ratio = (steps["one_length"] / steps["bucketed"]) if len(steps) == 2 else None
        floor = r["floor_s"]
        mem = (f"{r['train_peak_mib']:.0f} / {r['test_peak_mib']:.0f}" if cuda
               else f"{r['rss_growth_mib']:.0f} (peak {r['peak_rss_mib']:.0f})")
        table.append([r["config"], fmt(steps.get("bucketed"), ".4f"), fmt(steps.get("one_length"), ".4f"),
                      fmt(ratio, ".2f"), fmt(floor, ".4f"), fmt(r["s_per_step"] / floor if floor else None, ".2f"),
                      fmt(r.get("overhead_over_base"), ".2f"), fmt(r.get("overhead_over_base_row"), ".2f"),
                      tok["sequences"], f"{tok['official']} / {tok['longest']} / {tok['bucketed']} / {tok['needed']}",
                      fmt(r["image_tokens_per_step"], "d"), mem, r["trainable_params"]])
    return tabulate(table, headers=[
        "configuration", "s/step bucketed", "s/step one length", "one length / bucketed", "floor s/step",
        "step / floor", "x base (same process)", "x base row", "text seqs / step",
        "text tokens / step: 77 x seqs / longest x seqs / bucketed / needed", "image tokens / step",
        "train / test peak MiB" if cuda else "peak RSS growth MiB", "trainable params"])


def prediction_table(rows) -> str:
    from tabulate import tabulate

    table = []
    for r in rows:
        if "error" in r:
            continue
        pred = r["prediction"]
        coop = pred.get("CoOp")
        for mode in ("per_batch", "per_evaluation"):
            if mode not in pred:
                continue
            e = pred[mode]
            seqs = e["sequences"]
            table.append([r["config"], mode, f"{e['steady_img_per_s']:.1f}", f"{e['img_per_s']:.1f}",
                          f"{e['one_off_s']:.3f}", " / ".join(str(n) for n in seqs[:2]),
                          fmt(coop["steady_img_per_s"] if coop else None, ".1f"),
                          fmt(coop["steady_img_per_s"] / e["steady_img_per_s"] if coop else None, ".2f")])
    return tabulate(table, headers=[
        "configuration", "TEST.MC_DRAWS", "img/s (steady)", "img/s (whole evaluation)", "one-off s (batch 1 extra)",
        "text seqs test batch 1 / 2", "CoOp img/s (steady, same process)", "CoOp / this (steady)"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="tiny-vit", choices=["tiny-vit", "vit-b16-random"])
    p.add_argument("--classes", type=int, default=100, help="C, number of classes")
    p.add_argument("--batch", type=int, default=4, help="training batch B")
    p.add_argument("--samples", type=int, default=4, help="L, BayesianPrompt MC samples (train and test)")
    p.add_argument("--steps", type=int, default=5, help="timed training steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed training steps before them")
    p.add_argument("--test-batch", type=int, default=8)
    p.add_argument("--test-batches", type=int, default=3, help="test batches per evaluation")
    p.add_argument("--test-reps", type=int, default=2, help="timed evaluations per draw mode (interleaved)")
    p.add_argument("--mc-draws", default="both", choices=["both", "per_batch", "per_evaluation"],
                   help="TEST.MC_DRAWS modes to time (both: interleaved in the same process)")
    p.add_argument("--reference", default="CoOp", choices=["CoOp", "none"],
                   help="also time CoOp's prediction on the same CLIP in the same process")
    p.add_argument("--buckets", default="both", choices=["both", "on", "off"],
                   help="length-bucketed text passes, one-length passes, or both interleaved step by step")
    p.add_argument("--floor-reps", type=int, default=3, help="timed passes per tower for the per-token cost")
    p.add_argument("--statistic", default="median", choices=list(STATISTICS),
                   help="of repeated timings; min: the least disturbed run, for a machine shared with other jobs "
                        "(they only add time)")
    p.add_argument("--official-names", nargs="?", const="imagenet", default="", metavar="DATASET",
                   help="real class names (the first --classes of DATASET in benchmarks/classnames.json, default "
                        "imagenet) instead of 'class i'")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--prec", default="fp32", choices=["fp32", "fp16", "bf16", "amp"],
                   help="non-fp32 needs CUDA (the CPU runs fp32)")
    p.add_argument("--trainers", nargs="+", default=list(CONFIGS), choices=list(CONFIGS), metavar="NAME",
                   help=f"configurations to run, from {list(CONFIGS)}")
    p.add_argument("--text-chunk", type=int, default=0, help="MODEL.CLIP.TEXT_CHUNK_SIZE (0 = one pass)")
    p.add_argument("--checkpointing", action="store_true", help="MODEL.CLIP.TEXT_CHECKPOINTING")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", default="", help="also write the settings and rows to this file")
    p.add_argument("--compare-official-ove", action="store_true",
                   help="also time OVE-PG alone: ours vs the dense official algorithm")
    p.add_argument("--ove-only", action="store_true", help="only the OVE-PG comparison")
    p.add_argument("--ove-classes", type=int, default=1000, help="C for ours in the OVE-PG comparison")
    p.add_argument("--ove-batch", type=int, default=4)
    p.add_argument("--ove-dense-classes", type=int, nargs="+", default=[25, 50, 100, 200],
                   help="C values at which the dense official algorithm is run")
    p.add_argument("--ove-reps", type=int, default=20)
    p.add_argument("--_child", default="", help=argparse.SUPPRESS)
    p.add_argument("--_child-out", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but CUDA is not available")
    if args._child:
        row = run_config(args, args._child)
        with open(args._child_out, "w") as f:
            json.dump(row, f)
        return 0

    from tabulate import tabulate

    settings = dict(backbone=args.backbone, classes=args.classes, batch=args.batch, samples=args.samples,
                    steps=args.steps, warmup=args.warmup, test_batch=args.test_batch,
                    test_batches=args.test_batches, device=args.device, prec=args.prec,
                    text_chunk=args.text_chunk, checkpointing=args.checkpointing, torch=torch.__version__,
                    threads=torch.get_num_threads(), cpus=os.cpu_count(),
                    gpu=torch.cuda.get_device_name() if args.device == "cuda" else None)
    result = dict(settings=settings, rows=[], ove=[])
    print("settings: " + ", ".join(f"{k}={v}" for k, v in settings.items() if v is not None))

    if not args.ove_only:
        rows = []
        for config in args.trainers:
            print(f"  running {config} ...", file=sys.stderr, flush=True)
            rows.append(run_isolated(args, config))
        by_name = {r["config"]: r for r in rows if "error" not in r}
        for r in rows:
            base = CONFIGS[r["config"]][3]
            if base and "error" not in r and base in by_name:
                r["overhead_over_base_row"] = r["s_per_step"] / by_name[base]["s_per_step"]
        cuda = args.device == "cuda"
        mem_note = ("peak memory: torch.cuda.max_memory_allocated above the allocation before the phase"
                    if cuda else "peak memory: CPU peak-RSS growth (getrusage ru_maxrss) during train+test over the "
                                 "peak after setup, one process per configuration")
        print(f"# training: {args.statistic} of {args.steps} steps per variant, bucketed and one-length steps "
              f"interleaved in one process; floor = needed text tokens x measured s/text token (fwd + bwd to the input) + image "
              f"tokens x measured s/image token (fwd); {mem_note}")
        print("# x base (same process): LogitPrior s/step over its base learner's step timed right after it in the "
              "same process; x base row: over the base configuration's own row")
        print(training_table(rows, cuda))
        print(f"\n# prediction: {args.test_reps} interleaved evaluations per mode of {args.test_batches} batches of "
              f"{args.test_batch} images (predict from images, one evaluation_cache each); steady = "
              f"{args.statistic} of batches 2..; one-off = batch 1 minus steady (the once-per-evaluation text encodings)")
        print(prediction_table(rows))
        result["rows"] = rows

    if args.compare_official_ove or args.ove_only:
        print(f"\nOVE-PG objective alone, forward + backward on (B, C) logits, CPU, fp32; ours = clipbayes.objectives.ove_pg_loss; dense official = B x C x C differences, a loop over "
              f"C classes with a dense B(C-1) x B(C-1) precision, solve and inverse each (measured at C in "
              f"{args.ove_dense_classes}; larger C extrapolated from the two largest, NOT measured)")
        result["ove"] = compare_ove(args)
        print(ove_table(result["ove"]))

    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
