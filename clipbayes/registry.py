"""The one registration point of a method, and the list every other part reads.

    @register_method(node="COOP", keys=KEYS, build=build_coop_model)
    class CoOp(PromptTrainer):
        '''CoOp: learnable context, cross-entropy.'''

declares the trainer name (the class name, what ``--trainer`` takes), its config node ``cfg.TRAINER.<node>`` with
its key table (defaults, meanings, allowed values), the builder of its model, and registers the class in Dassl's
``TRAINER_REGISTRY``. :func:`list_methods` returns the registered methods in registration order (baselines first,
then the others): the CLI listing, the results' ordering, LogitPrior's choice of base, the
end-to-end tests and the generated docs all derive from it.

``python -m clipbayes.registry --write-docs`` rewrites the key table of each method's doc (between the markers
``<!-- keys:NODE -->`` and ``<!-- /keys -->``); ``--list`` prints the methods.
"""
from __future__ import annotations

import argparse
import importlib
import os.path as osp
import re
import sys
from dataclasses import dataclass
from typing import Callable

from clipbayes.compat import import_dassl

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@dataclass(frozen=True)
class MethodSpec:
    """A registered method. ``baseline``: one of the CoOp-family baselines (listed first); ``wraps_base``: it wraps
    another method's model (LogitPrior); ``trainable``: it has a learner to train (ZeroshotCLIP has none);
    ``vision_prompts``: it puts prompt tokens into the image transformer (a ViT backbone: the toy world runs it on
    ``toyclip-vit``). ``slug`` names its scripts folder and doc (default ``node.lower()``)."""

    name: str
    node: str
    keys: dict
    build: Callable
    trainer: type
    baseline: bool = False
    trainable: bool = True
    wraps_base: bool = False
    vision_prompts: bool = False
    check: Callable | None = None
    slug: str = ""
    doc: str = ""

    @property
    def scripts_dir(self) -> str:
        return f"scripts/{self.slug}"

    @property
    def config_dir(self) -> str:
        return f"configs/trainers/{self.name}"


_METHODS: dict[str, MethodSpec] = {}


def register_method(node: str, keys: dict, build: Callable, *, baseline: bool = False, trainable: bool = True,
                    wraps_base: bool = False, vision_prompts: bool = False, check: Callable | None = None,
                    slug: str = "", doc: str = ""):
    """Class decorator registering a PromptTrainer subclass as a method (see the module docstring).

    ``build(cfg, node_cfg, clip_model, classnames) -> model`` satisfying ``clipbayes.modeling.contract.MethodModel``;
    ``check(cfg, node_cfg)`` validates keys against each other (raise ``clipbayes.config.ConfigError``).
    ``doc`` defaults to ``docs/methods/<slug>.md``.
    """
    def register(trainer_cls: type) -> type:
        name = trainer_cls.__name__
        if name in _METHODS:
            raise KeyError(f"Method {name} is registered twice")
        if any(m.node == node for m in _METHODS.values()):
            raise KeyError(f"Config node TRAINER.{node} is declared by two methods")
        method_slug = slug or node.lower()
        spec = MethodSpec(name=name, node=node, keys=dict(keys), build=build, trainer=trainer_cls,
                          baseline=baseline, trainable=trainable, wraps_base=wraps_base,
                          vision_prompts=vision_prompts, check=check, slug=method_slug,
                          doc=doc or f"docs/methods/{method_slug}.md")
        trainer_cls.method = spec
        import_dassl()
        from dassl.engine import TRAINER_REGISTRY  # here, not at the top: listing the registry needs no Dassl

        TRAINER_REGISTRY.register(trainer_cls)
        _METHODS[name] = spec
        return trainer_cls
    return register


def list_methods() -> list[MethodSpec]:
    """Every registered method: the baselines first, then the others, each in registration order (the trainer
    modules register themselves when ``clipbayes.trainers`` imports them, in alphabetical order)."""
    importlib.import_module("clipbayes.trainers")
    return sorted(_METHODS.values(), key=lambda m: not m.baseline)


def base_learners() -> list[str]:
    """The methods a Bayesian treatment (LogitPrior, ReBaPL) can wrap: every registered method that trains a learner
    and wraps no other."""
    return [m.name for m in list_methods() if m.trainable and not m.wraps_base]


def method_names() -> list[str]:
    return [m.name for m in list_methods()]


def get_method(name: str) -> MethodSpec:
    methods = {m.name: m for m in list_methods()}
    if name not in methods:
        raise KeyError(f"Unknown method '{name}'. Registered methods: {', '.join(methods)}")
    return methods[name]


# --- generated docs ------------------------------------------------------------------------------------------------
def _cell(value) -> str:
    text = f'"{value}"' if isinstance(value, str) else str(value)
    return f"`{text}`".replace("|", "\\|")


def key_table(method: MethodSpec) -> str:
    """The Markdown table of a method's keys: key, default, allowed values, meaning."""
    rows = [f"`TRAINER.{method.node}` (generated from the method's declaration by "
            f"`python -m clipbayes.registry --write-docs`):", "",
            "| key | default | allowed | meaning |", "|---|---|---|---|"]
    for name, key in method.keys.items():
        allowed = key.allowed().replace("|", "\\|")
        rows.append(f"| `{name}` | {_cell(key.default)} | {allowed} | {key.meaning.replace('|', chr(92) + '|')} |")
    return "\n".join(rows)


def _markers(node: str) -> re.Pattern:
    return re.compile(rf"(<!-- keys:{node} -->\n)(.*?)(<!-- /keys -->)", re.S)


def documented_table(method: MethodSpec) -> str | None:
    """The key table currently in the method's doc (None without markers)."""
    path = osp.join(ROOT, method.doc)
    if not osp.isfile(path):
        return None
    found = _markers(method.node).search(open(path).read())
    return found.group(2).strip() if found else None


def write_docs() -> list[str]:
    """Rewrite the generated key tables; return the docs changed."""
    changed = []
    for method in list_methods():
        path = osp.join(ROOT, method.doc)
        text = open(path).read()
        if not _markers(method.node).search(text):
            raise SystemExit(f"{method.doc} has no '<!-- keys:{method.node} -->' ... '<!-- /keys -->' markers; "
                             f"add them where the key table of {method.name} belongs")
        new = _markers(method.node).sub(lambda m: m.group(1) + key_table(method) + "\n" + m.group(3), text)
        if new != text:
            with open(path, "w") as f:
                f.write(new)
            if method.doc not in changed:
                changed.append(method.doc)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The registered methods of clipbayes.")
    parser.add_argument("--write-docs", action="store_true", help="regenerate the key tables in the method docs")
    parser.add_argument("--list", action="store_true", help="print the registered methods")
    args = parser.parse_args(argv)
    if args.write_docs:
        changed = write_docs()
        print("updated: " + ", ".join(changed) if changed else "key tables already up to date")
    if args.list or not args.write_docs:
        for m in list_methods():
            print(f"{m.name:16s} TRAINER.{m.node:16s} {m.doc}")
    return 0


if __name__ == "__main__":
    # Run the imported module's main: the trainers register into ``clipbayes.registry``, not into ``__main__``.
    from clipbayes.registry import main as registry_main

    sys.exit(registry_main())
