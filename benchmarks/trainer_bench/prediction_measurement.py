"""Prediction: ``predict`` under ``torch.no_grad()`` inside one ``evaluation_cache`` block per evaluation (as
``PromptTrainer.test``), for each TEST.MC_DRAWS mode, for each of them again with whole prompts (no prefix
sharing; when the variants timed include ``shared`` and ``bucketed``), and for CoOp on the same CLIP, the
evaluations interleaved.

Per evaluation of n batches: steady img/s (the statistic of batches 2..), img/s of the whole evaluation, the
one-off seconds of batch 1 over the steady ones (the once-per-evaluation text encodings), and the text sequences
of each batch (0 after batch 1 for class features encoded once per evaluation). A treatment's rows (LogitPrior,
ReBaPL) also time its base alone, in the same evaluations.
"""
from __future__ import annotations

import torch

from trainer_bench.building import build_prompt_model, prompt_model_of
from trainer_bench.configurations import CONFIGS, make_cfg
from trainer_bench.measurement import timed_call
from trainer_bench.token_counting import TextPassMeter
from trainer_bench.training_measurement import parse_variants


def prediction_times(model, images, batches: int, mode: str, prec, device, meter,
                     share: bool = True) -> tuple[list[float], list[int]]:
    """Seconds and text sequences of each of ``batches`` test batches of one evaluation (one evaluation_cache
    block, as PromptTrainer.test), with shared prompt prefixes encoded once or (``share`` False) whole prompts."""
    from clipbayes.modeling.precision import autocast

    prompt_model_of(model).text_encoder.share_prefixes = share
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


def measure_prediction(args, config: str, model, meter, clip_model, classnames, test_images, prec, device,
                       stat) -> tuple[dict, list[str]]:
    """name -> dict(times, sequences, img_per_s, steady_img_per_s, one_off_s) per draw mode (and "CoOp"), and the
    modes timed."""
    from clipbayes.modeling.prompt_clip import MC_DRAWS

    modes = list(MC_DRAWS) if args.mc_draws == "both" else [args.mc_draws]
    evaluations = [(mode, model, meter, mode, True) for mode in modes]
    variants = parse_variants(args.variants)
    if "shared" in variants and "bucketed" in variants and prompt_model_of(model).prompts is not None:
        evaluations += [(f"{mode}, whole prompts", model, meter, mode, False) for mode in modes]
    if hasattr(model, "base"):  # a treatment's base alone, in the same process
        evaluations.append(("base", model.base, meter, modes[0], True))
    if args.reference == "CoOp" and CONFIGS[config][0] != "CoOp":
        coop = build_prompt_model(make_cfg(args, "CoOp", prec), "CoOp", clip_model, classnames, device)
        coop.requires_grad_(False)
        evaluations.append(("CoOp", coop, TextPassMeter(coop.text_encoder), "per_batch", True))
    for _, net, net_meter, mode, share in evaluations:  # warm-up evaluation (not timed)
        prediction_times(net, test_images, 1, mode, prec, device, net_meter, share)
    prediction = {name: dict(times=[], sequences=None) for name, *_ in evaluations}
    for _ in range(args.test_reps):
        for name, net, net_meter, mode, share in evaluations:
            batch_times, sequences = prediction_times(net, test_images, args.test_batches, mode, prec, device,
                                                      net_meter, share)
            prediction[name]["times"].append(batch_times)
            prediction[name]["sequences"] = sequences
    prompt_model_of(model).text_encoder.share_prefixes = True
    for entry in prediction.values():
        first = stat(t[0] for t in entry["times"])
        later = stat(x for t in entry["times"] for x in t[1:]) if args.test_batches > 1 else first
        total = stat(sum(t) for t in entry["times"])
        entry.update(img_per_s=args.test_batch * args.test_batches / total, steady_img_per_s=args.test_batch / later,
                     one_off_s=first - later)
    return prediction, modes
