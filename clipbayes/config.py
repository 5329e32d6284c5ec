"""Configuration: Dassl's defaults extended with every key this plugin reads, declared before any yaml merge.

Merge order (as CoOp's train.py): Dassl defaults -> our keys -> dataset yaml -> trainer yaml -> CLI flags ->
trailing ``KEY VALUE`` pairs, then :func:`check_cfg` validates every method key once.

A method declares its keys as a table ``{NAME: Key(default, meaning, choices=... | check=...)}`` (the pattern of
``clipbayes/datasets/config.py``) and hands it to :func:`clipbayes.registry.register_method`; the table gives the
yacs defaults under ``cfg.TRAINER.<NODE>``, the validation and the key tables of ``docs/methods/*.md``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from yacs.config import CfgNode as CN

from clipbayes import registry
from clipbayes.datasets.templates import check_template
from clipbayes.modeling.precision import LEARNER_PRECISIONS, PRECISIONS
from clipbayes.modeling.prompt_clip import MC_DRAWS
from clipbayes.modeling.text import CLASS_TOKEN_POSITIONS


class ConfigError(ValueError):
    """An impossible configuration value; the message names the key and what it accepts."""


@dataclass(frozen=True)
class Check:
    """A test of a key's value with the words that describe what passes it (``"an integer >= 1"``)."""

    accepts: Callable[[Any], bool]
    text: str


def at_least(low: float, integer: bool = True) -> Check:
    kind = "an integer" if integer else "a number"
    return Check(lambda v: (isinstance(v, int) if integer else isinstance(v, (int, float)))
                 and not isinstance(v, bool) and v >= low, f"{kind} >= {low:g}")


def above(low: float) -> Check:
    return Check(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > low, f"a number > {low:g}")


def between(low: float, high: float) -> Check:
    return Check(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high,
                 f"a number in [{low:g}, {high:g}]")


def ordered_pair() -> Check:
    def accepts(v):
        return isinstance(v, (tuple, list)) and len(v) == 2 and float(v[0]) <= float(v[1])
    return Check(accepts, "a pair (low, high) with low <= high")


@dataclass(frozen=True)
class Key:
    """One method config key: its default, a one-line meaning, and its allowed values or a check.
    ``monte_carlo``: the key is a number of Monte Carlo draws per step or per prediction (its cost grows with it;
    the toy world's budget rule caps it, clipbayes/toyworld/protocol.py)."""

    default: Any
    meaning: str
    choices: tuple | None = None
    check: Check | None = None
    monte_carlo: bool = False

    def allowed(self) -> str:
        if self.choices is not None:
            return " | ".join(str(c) for c in self.choices)
        return self.check.text if self.check is not None else ""

    def validate(self, path: str, value: Any) -> None:
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{path} must be one of {' | '.join(map(str, self.choices))}; got {value!r}")
        if self.check is not None and not self.check.accepts(value):
            raise ConfigError(f"{path} must be {self.check.text}; got {value!r}")


def check_base_learner(node: str, base: str) -> None:
    """A Bayesian treatment's ``TRAINER.<node>.BASE`` names a method it can wrap (``registry.base_learners()``)."""
    if base not in registry.base_learners():
        raise ConfigError(f"TRAINER.{node}.BASE must be one of {' | '.join(registry.base_learners())}; got {base!r}")


# --- keys several methods share ----------------------------------------------------------------------------------
def precision_key(default: str, learner: bool = True) -> dict[str, Key]:
    """PREC (the frozen CLIP's precision) and, for a method that trains a learner, LEARNER_PREC (the learner's):
    clipbayes/modeling/precision.py, docs/precision.md."""
    keys = {"PREC": Key(default, "numerical precision of the frozen CLIP (fp32 on a CPU unless "
                                 "$CLIPBAYES_CPU_LOW_PRECISION=1)", choices=PRECISIONS)}
    if learner:
        keys["LEARNER_PREC"] = Key("fp32", "precision of the learned tensors: fp32 (master weights, cast where they "
                                           "enter CLIP) or clip (the frozen CLIP's dtype, as the official CoOp / "
                                           "CoCoOp / BPL code); docs/precision.md", choices=LEARNER_PRECISIONS)
    return keys


def context_keys(n_ctx: int, ctx_init: str, position: bool = True) -> dict[str, Key]:
    """CoOp's context keys: ``N_CTX``, ``CTX_INIT`` and (optionally) ``CLASS_TOKEN_POSITION``."""
    keys = {
        "N_CTX": Key(n_ctx, "context length M when CTX_INIT is empty", check=at_least(1)),
        "CTX_INIT": Key(ctx_init, 'words initialising the context (M = their token count); "" = random '
                                  "N(0, 0.02^2)"),
    }
    if position:
        keys["CLASS_TOKEN_POSITION"] = Key("end", "where the class name sits among the context tokens",
                                           choices=CLASS_TOKEN_POSITIONS)
    return keys


def half_cast_key() -> dict[str, Key]:
    """The deep-prompt methods' switch for the official code's fp16 rounding of every inserted prompt copy."""
    return {"HALF_CAST": Key(False, "round every inserted prompt copy to fp16, as the official code does even at "
                                    "PREC fp32 (its golden outputs; docs/methods/deep_prompts.md)",
                             choices=(False, True))}


def depth_key(name: str, default: int, tower: str, minimum: int) -> dict[str, Key]:
    """A deep-prompt depth J (the official convention: it counts the input layer)."""
    none = "; 0: no prompt in this tower" if minimum == 0 else ""
    return {name: Key(default, f"J: the input layer and {tower} blocks 1 .. J-1 get fresh prompt tokens{none}",
                      check=at_least(minimum))}


def independent_prompt_keys(ctx_init: str = "a photo of a", text_depth: int = 9, vision_depth: int = 9,
                            vision_tokens: int = 2) -> dict[str, Key]:
    """The keys of independent text and vision deep prompts (IVLP, APEX), under the official names."""
    return {
        "N_CTX_TEXT": Key(2, "n_t, text context tokens (the first n_t tokens of CTX_INIT are learned)",
                          check=at_least(1)),
        "N_CTX_VISION": Key(vision_tokens, "n_v, vision prompt tokens (0: no vision prompts)", check=at_least(0)),
        "CTX_INIT": Key(ctx_init, 'words initialising the text context ("#" stands for the class name); "" = '
                                  "random N(0, 0.02^2)"),
        **depth_key("PROMPT_DEPTH_TEXT", text_depth, "text", minimum=1),
        **depth_key("PROMPT_DEPTH_VISION", vision_depth, "vision", minimum=0),
        **half_cast_key(),
    }


def _is_template(value) -> bool:
    try:
        return value == "" or check_template(value) == value
    except (ValueError, AttributeError):
        return False


def template_keys(default: str = "") -> dict[str, Key]:
    """Hand-crafted prompt keys of the methods that use zero-shot text features."""
    return {
        "TEMPLATE": Key(default, 'hand-crafted prompt template; "" = DATASET.PROMPT_TEMPLATE, else the dataset\'s, '
                                 'else "a photo of a {}."', check=Check(_is_template, '"" or a text with one "{}"')),
        "ENSEMBLE": Key(False, "average the features of the template ensemble instead", choices=(False, True)),
    }


# Keys this plugin adds to Dassl's TEST node (every method reads them).
TEST_KEYS = {
    "MC_DRAWS": Key("per_batch", "Monte Carlo prompt draws of an image-independent posterior at prediction: per "
                                 "test batch (official), or once per evaluation, shared by every test image "
                                 "(docs/mc_draws.md)", choices=MC_DRAWS),
    "SAVE_PREDICTIONS": Key(False, "write the test set's probabilities, labels and image paths (npz; "
                                   "clipbayes.evaluation)", choices=(False, True)),
    "TEMPERATURE_SCALING": Key(True, "fit a temperature on held-out data and report the scaled metrics too "
                                     "(docs/results.md)", choices=(False, True)),
}


# --- building and checking the config ------------------------------------------------------------------------------
def default_node(keys: dict) -> CN:
    """A yacs node holding the defaults of a key table."""
    node = CN()
    for name, key in keys.items():
        node[name] = key.default
    return node


def extend_cfg(cfg: CN) -> CN:
    """Add our keys to a Dassl default config (idempotent for the nodes it creates)."""
    from clipbayes.datasets.config import add_dataset_config

    add_dataset_config(cfg)
    if "CLIP" not in cfg.MODEL:
        cfg.MODEL.CLIP = CN()
        cfg.MODEL.CLIP.CACHE_DIR = ""  # where OpenAI weights are cached ("" = $CLIPBAYES_CLIP_CACHE or ~/.cache/clip)
        cfg.MODEL.CLIP.TEXT_CHUNK_SIZE = 0  # max prompts per text-encoder pass (0 = all at once)
        cfg.MODEL.CLIP.TEXT_CHECKPOINTING = False  # recompute text activations in backward (saves memory)
        cfg.MODEL.CLIP.IMAGE_FEATURE_CACHE = ""  # folder caching test-set image features ("" = off)
        # encode a prompt prefix shared by the classes once (clipbayes/modeling/shared_prefix.py; False: whole prompts)
        cfg.MODEL.CLIP.PREFIX_SHARING = True
    for name, key in TEST_KEYS.items():
        if name not in cfg.TEST:
            cfg.TEST[name] = key.default
    for method in registry.list_methods():
        if method.node not in cfg.TRAINER:
            cfg.TRAINER[method.node] = default_node(method.keys)
    return cfg


def check_cfg(cfg: CN) -> None:
    """Validate every declared method key and each method's cross-key check; raise ConfigError on the first fault."""
    for name, key in TEST_KEYS.items():
        key.validate(f"TEST.{name}", cfg.TEST[name])
    for method in registry.list_methods():
        node = cfg.TRAINER[method.node]
        for name, key in method.keys.items():
            key.validate(f"TRAINER.{method.node}.{name}", node[name])
        if method.check is not None:
            method.check(cfg, node)


def default_cfg() -> CN:
    from clipbayes.compat import import_dassl

    import_dassl()
    from dassl.config import get_cfg_default

    return extend_cfg(get_cfg_default())
