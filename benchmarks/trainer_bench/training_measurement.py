"""The training step: length-bucketed and one-length text passes interleaved step by step in one process, the
text tokens of a step counted four ways, the base learner's own step for a wrapper, and the token floor.

A learner without class prompts (DeepVPT: frozen hand-crafted text features, no text pass in a step) has one
variant and no text part in its floor.
"""
from __future__ import annotations

import torch

from trainer_bench.building import prompt_model_of
from trainer_bench.measurement import timed_call
from trainer_bench.token_counting import image_token_cost, image_tokens_per_image, text_token_cost

VARIANTS = {"both": ("bucketed", "one_length"), "on": ("bucketed",), "off": ("one_length",)}


def length_variants(prompts, choice: str) -> dict:
    """name -> the LengthBuckets its text passes use (``--buckets``): the class set's own buckets, or one bucket
    padded to the longest sequence; {first name: None} when there are no class prompts."""
    from clipbayes.modeling.text import LengthBuckets

    names = VARIANTS[choice]
    if prompts is None:
        return {names[0]: None}
    buckets = {"bucketed": prompts.buckets, "one_length": LengthBuckets(prompts.eot, max_buckets=1)}
    return {name: buckets[name] for name in names}


def use_buckets(prompts, buckets) -> None:
    """Make the class prompts' text passes use ``buckets`` (nothing to do without class prompts)."""
    if prompts is not None:
        prompts.buckets = buckets


def measure_training(args, config: str, model, step, meter, device, stat) -> dict:
    """Step times per variant (``args.warmup`` untimed, then ``args.steps`` interleaved), the step's text tokens,
    and for a wrapper (LogitPrior) its base learner's step timed right after in the same process."""
    prompts = prompt_model_of(model).prompts
    variants = length_variants(prompts, args.buckets)
    default = prompts.buckets if prompts is not None else None
    for buckets in variants.values():
        use_buckets(prompts, buckets)
        for _ in range(args.warmup):
            step()
    times = {name: [] for name in variants}
    counted = {}
    for _ in range(args.steps):
        for name, buckets in variants.items():
            use_buckets(prompts, buckets)
            meter.reset()
            times[name].append(timed_call(step, device))
            counted[name] = dict(meter.counts)
    tokens = counted[next(iter(variants))]
    tokens["bucketed"] = counted.get("bucketed", tokens)["bucketed"]
    use_buckets(prompts, default)
    base_times = []
    if hasattr(model, "base"):  # the base learner's own step, timed in the same process right after
        base_times = [timed_call(lambda: step(model.base), device) for _ in range(args.steps)]
    loss = step()
    if not torch.isfinite(loss):
        raise RuntimeError(f"{config}: non-finite loss {loss.item()}")
    step.optim.zero_grad(set_to_none=True)
    return dict(times=times, tokens=tokens, base_times=base_times,
                buckets=None if default is None else dict(lengths=default.lengths, sizes=default.sizes))


def token_floor(args, model, images, tokens: dict, prec, device, stat) -> dict:
    """The floor of a step (module docstring of token_counting) from the measured cost per token of each tower."""
    prompt_model = prompt_model_of(model)
    text_cost = None
    if tokens["sequences"]:
        mean_length = max(1, round(tokens["needed"] / tokens["sequences"]))
        text_cost = text_token_cost(prompt_model.text_encoder, tokens["sequences"], mean_length, prec, device,
                                    args.floor_reps, stat)
    image_cost = image_token_cost(prompt_model, images, prec, device, args.floor_reps, stat)
    per_image = image_tokens_per_image(prompt_model)
    floor = None
    if image_cost is not None:
        floor = tokens["needed"] * (text_cost or 0.0) + args.batch * per_image * image_cost
    return dict(text_s_per_token=text_cost, image_s_per_token=image_cost,
                image_tokens_per_step=args.batch * per_image if per_image else None, floor_s=floor)
