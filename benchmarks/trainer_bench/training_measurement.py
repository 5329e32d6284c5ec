"""The training step: its text-pass variants interleaved step by step in one process, the text tokens of a step
counted five ways, the base learner's own step for a wrapper, and the token floor.

Variants of the text pass (``--variants``): ``shared`` (length buckets, each shared prompt prefix encoded once:
the default, clipbayes/modeling/shared_prefix.py), ``bucketed`` (length buckets, every prompt whole: the encoding
before prefix sharing) and ``one_length`` (every prompt whole and padded to the longest: before length buckets).
A learner without class prompts (DeepVPT: frozen hand-crafted text features, no text pass in a step) has one
variant and no text part in its floor.
"""
from __future__ import annotations

import torch

from trainer_bench.building import prompt_model_of
from trainer_bench.measurement import timed_call
from trainer_bench.token_counting import image_token_cost, image_tokens_per_image, text_token_cost

VARIANTS = ("shared", "bucketed", "one_length")


def parse_variants(text: str) -> tuple[str, ...]:
    """``--variants``: comma-separated names from VARIANTS, the first one the row's s/step."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in VARIANTS]
    if not names or unknown:
        raise ValueError(f"--variants {text!r}: give a comma-separated list of {', '.join(VARIANTS)}")
    return names


class TextPassVariant:
    """Makes the text passes of a prompt model use one variant: its length buckets and prefix sharing."""

    def __init__(self, prompt_model):
        from clipbayes.modeling.text import LengthBuckets

        self.model, self.prompts = prompt_model, prompt_model.prompts
        self.default = (self.prompts.buckets if self.prompts is not None else None,
                        prompt_model.text_encoder.share_prefixes)
        self.buckets = None if self.prompts is None else {
            "shared": self.prompts.buckets, "bucketed": self.prompts.buckets,
            "one_length": LengthBuckets(self.prompts.eot, max_buckets=1)}

    def use(self, name: str | None) -> None:
        """Switch to variant ``name`` (None: back to the model's own settings)."""
        buckets, share = self.default if name is None else (self.buckets and self.buckets[name], name == "shared")
        if self.prompts is not None:
            self.prompts.buckets = buckets
        self.model.text_encoder.share_prefixes = share


def variant_names(prompt_model, chosen: tuple[str, ...]) -> tuple[str, ...]:
    """The variants timed: ``chosen``, or its first one alone when there are no class prompts."""
    return chosen if prompt_model.prompts is not None else chosen[:1]


def measure_training(args, config: str, model, step, meter, device, stat) -> dict:
    """Step times per variant (``args.warmup`` untimed, then ``args.steps`` interleaved), the step's text tokens,
    and for a wrapper (LogitPrior) its base learner's step timed right after in the same process (the first
    variant)."""
    prompt_model = prompt_model_of(model)
    switch = TextPassVariant(prompt_model)
    variants = variant_names(prompt_model, parse_variants(args.variants))
    for name in variants:
        switch.use(name)
        for _ in range(args.warmup):
            step()
    times = {name: [] for name in variants}
    tokens = {}
    for _ in range(args.steps):
        for name in variants:
            switch.use(name)
            meter.reset()
            times[name].append(timed_call(step, device))
            if name != "one_length":  # the counts of the class set's own buckets
                tokens = dict(meter.counts)
    if not tokens:
        tokens = dict(meter.counts)
    switch.use(variants[0])
    base_times = []
    if hasattr(model, "base"):  # the base learner's own step, timed in the same process right after
        base_times = [timed_call(lambda: step(model.base), device) for _ in range(args.steps)]
    loss = step()
    switch.use(None)
    if not torch.isfinite(loss):
        raise RuntimeError(f"{config}: non-finite loss {loss.item()}")
    step.optim.zero_grad(set_to_none=True)
    prompts = prompt_model.prompts
    return dict(times=times, tokens=tokens, base_times=base_times,
                buckets=None if prompts is None else dict(lengths=prompts.buckets.lengths,
                                                          sizes=prompts.buckets.sizes))


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
        floor = tokens["distinct"] * (text_cost or 0.0) + args.batch * per_image * image_cost
    return dict(text_s_per_token=text_cost, image_s_per_token=image_cost,
                image_tokens_per_step=args.batch * per_image if per_image else None, floor_s=floor)
