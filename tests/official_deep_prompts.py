"""Rerun the official deep-prompt code on the tiny 3-layer CLIP: what tests/golden/{maple,ivlp,ivlp_lang_only,vpt,
apex}.pt store.

The official code is not copied here. It is imported at run time from a checkout (muzairkhattak/multimodal-prompt-
learning @ 69bce21 for maple, ivlp, ivlp_lang_only and vpt; MingyuKim87/BP_CLIP @ 4aae072 for apex) and driven through
its own trainer methods: check_cfg, build_model, forward_backward, model_inference and, for APEX's new classes,
load_model. The patches it needs on a CPU with current torch (the ones each golden file's config["patches"] lists;
PATCHES below) are applied in this process only and undone on exit; Dassl stays unpatched on disk.

Regenerate a golden file (written to the path given; compare it, or copy it over the committed one deliberately):

    python tests/official_deep_prompts.py --src /path/to/multimodal-prompt-learning --case maple --out /tmp/maple.pt
    python tests/official_deep_prompts.py --src /path/to/BP_CLIP --case apex --out /tmp/apex.pt
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import importlib.util
import os
import os.path as osp
import shlex
import subprocess
import sys
import tempfile
import types
from dataclasses import dataclass
from types import SimpleNamespace

import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
GOLDEN = osp.join(ROOT, "tests", "golden")

MAPLE_REPO, MAPLE_COMMIT = "muzairkhattak/multimodal-prompt-learning", "69bce21ae8eda80ad6187534b2dce09cf6c59e17"
BP_CLIP_REPO, BP_CLIP_COMMIT = "MingyuKim87/BP_CLIP", "4aae0722f2ee7672815f2af6aeb13488d60b5a2f"
TINY_WIDTH = 64  # every width of the tiny CLIP (vision, text, embedding)
VIT_B16_VISION_WIDTH, VIT_B16_TEXT_WIDTH = 768, 512  # hard-coded in the official maple.py
NEW_CLASSNAMES = ["pug", "Airbus A320", "striped", "sphynx", "abyssinian"]  # APEX's ensemble; the last one is trained
CHECKOUT_PACKAGES = ("clip", "clip_apex", "clip_coca")  # the checkouts' top-level packages (shadow the installed clip)
PROMPT_FREE = {"trainer": "IVLP", "vision_depth": 0, "language_depth": 0, "vision_ctx": 0, "language_ctx": 0}


@dataclass(frozen=True)
class Variant:
    """An expectation set: the official Tensor.half casts kept or made the identity; APEX's second CLIP as built
    officially (with random prompts) or prompt-free."""
    half_cast: bool
    clean_frozen: bool = False


@dataclass(frozen=True)
class Case:
    """One official run: the trainer, its config file and overrides, its seeds and expectation sets."""
    repo: str
    commit: str
    trainer_file: str
    trainer_class: str
    node: str
    config_file: str
    settings: dict
    build_seed: int
    perturb_seed: int
    expectation_sets: dict

    @property
    def is_apex(self) -> bool:
        return self.trainer_class == "APEX"

    def overrides(self) -> list:
        """The command-line overrides (yacs merge_from_list) after the config file."""
        pairs = [("INPUT.SIZE", "(224, 224)"), ("MODEL.BACKBONE.NAME", "ViT-B/16")]
        pairs += [(f"TRAINER.{self.node}.{key}", str(value)) for key, value in self.settings.items()]
        return [item for pair in pairs for item in pair]


HALF_SETS = {"expected": Variant(half_cast=True), "expected_no_half_cast": Variant(half_cast=False)}
APEX_SETS = {"expected": Variant(half_cast=True), "expected_fp32_nohalf": Variant(half_cast=False),
             "expected_clean_frozen": Variant(half_cast=False, clean_frozen=True)}
IVLP_CONFIG = "configs/trainers/IVLP/vit_b16_c2_ep5_batch4_{}.yaml"
CASES = {
    "maple": Case(MAPLE_REPO, MAPLE_COMMIT, "trainers/maple.py", "MaPLe", "MAPLE",
                  "configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml",
                  dict(N_CTX=2, CTX_INIT="a photo of a", PREC="fp32", PROMPT_DEPTH=2), 0, 100, HALF_SETS),
    "ivlp": Case(MAPLE_REPO, MAPLE_COMMIT, "trainers/independentVL.py", "IVLP", "IVLP", IVLP_CONFIG.format("2+2ctx"),
                 dict(N_CTX_VISION=2, N_CTX_TEXT=2, CTX_INIT="a photo of a", PREC="fp32", PROMPT_DEPTH_VISION=2,
                      PROMPT_DEPTH_TEXT=2), 0, 100, HALF_SETS),
    "ivlp_lang_only": Case(MAPLE_REPO, MAPLE_COMMIT, "trainers/independentVL.py", "IVLP", "IVLP",
                           IVLP_CONFIG.format("4ctx_language_only"),
                           dict(N_CTX_VISION=0, N_CTX_TEXT=4, CTX_INIT="a photo of a", PREC="fp32",
                                PROMPT_DEPTH_VISION=0, PROMPT_DEPTH_TEXT=2), 0, 100, HALF_SETS),
    "vpt": Case(MAPLE_REPO, MAPLE_COMMIT, "trainers/vpt.py", "VPT", "VPT",
                "configs/trainers/VPT/vit_b16_c2_ep5_batch4_4.yaml",
                dict(N_CTX_VISION=4, CTX_INIT="a photo of a", PREC="fp32", PROMPT_DEPTH_VISION=2), 0, 100, HALF_SETS),
    "apex": Case(BP_CLIP_REPO, BP_CLIP_COMMIT, "trainers/apex.py", "APEX", "APEX",
                 "configs/trainers/APEX/vit_b16_c4_ep10_batch4+2ctx.yaml",
                 dict(N_CTX_VISION=2, N_CTX_TEXT=2, PREC="fp32", PROMPT_DEPTH_VISION=2, PROMPT_DEPTH_TEXT=2),
                 1, 12345, APEX_SETS),
}

PATCHES = [
    "sys.modules: Dassl's `wilds` and CLIP's `pkg_resources` stand-ins (clipbayes.compat.prepare_imports)",
    "sys.modules: the checkout's clip packages shadow the installed clip while the official code runs; its trainer "
    "file is imported under a private name; Dassl's TRAINER_REGISTRY is restored afterwards",
    "dassl.optim.lr_scheduler._BaseWarmupScheduler.__init__: torch's LRScheduler.__init__ called without the removed "
    "`verbose` argument (the SGD step of forward_backward runs at WARMUP_CONS_LR = 1e-5 and is undone afterwards)",
    "the checkout's clip._download returns a temporary file holding {**tiny_clip_vit.pt, **tiny_clip_deep_extra.pt} "
    "(fp16): the official load_clip_to_cpu takes its `except RuntimeError: torch.load` branch",
    "trainer object = object.__new__(trainer class) + TrainerBase.__init__, given cfg (Dassl defaults, the "
    "checkout's own extend_cfg from train.py, the config file, the overrides), dm.dataset.classnames and device cpu",
    "torch.Tensor.cuda is the identity (CPU)",
    "the trainer module's `F` answers cross_entropy by recording its input and output (the training logits and loss)",
    "maple.py: nn.Linear(in, 768) -> nn.Linear(in, 64) (proj, compound_prompt_projections), proj.half() a no-op "
    "(PREC fp32 otherwise crashes: fp32 ctx @ fp16 weight), torch.empty(n_ctx, 512) -> torch.empty(n_ctx, 64)",
    "apex.py: adapter set to I(64) / zeros(1, 64) after build_model (512 hard-coded); the module's torch.exp records "
    "the ensemble weight alpha",
    "expectation sets without half casts: Tensor.half is the identity during forward and backward (for apex also "
    "during build_model: its second CLIP stays fp32); expected_clean_frozen: clip_model_temp = the checkout's "
    "build_model(tiny, all prompt depths 0).float()",
    "torch.set_num_threads(1) while the official code runs (the golden command ran with OMP_NUM_THREADS=1)",
]
PERTURB = ("every trainable tensor of the freshly built official model += 0.02 * N(0, 1) from "
           "torch.Generator().manual_seed({seed}), in named_parameters order (APEX: sorted names, its second CLIP's "
           "prompts left at their init), then all of them rounded onto the fp16 grid (p.half().float())")


class Overlay(types.ModuleType):
    """A stand-in for a module in the official code's namespace: answers like `base` but for the names given."""

    def __init__(self, base: types.ModuleType, **replaced):
        super().__init__(base.__name__)
        self.__dict__.update(replaced)
        self._base = base

    def __getattr__(self, name):
        return getattr(self._base, name)


class VisionWidthLinear(torch.nn.Linear):
    """maple.py's nn.Linear: ViT-B/16's vision width 768 as the tiny CLIP's; half() a no-op (keeps proj fp32)."""

    def __init__(self, in_features, out_features, *args, **kwargs):
        width = TINY_WIDTH if out_features == VIT_B16_VISION_WIDTH else out_features
        super().__init__(in_features, width, *args, **kwargs)

    def half(self):
        return self


def text_width_empty(*size, **kwargs):
    """maple.py's torch.empty: ViT-B/16's text width 512 as the tiny CLIP's."""
    return torch.empty(*(TINY_WIDTH if s == VIT_B16_TEXT_WIDTH else s for s in size), **kwargs)


def tiny_state() -> dict:
    """The fp16 state dict of the 3-layer tiny CLIP (tests/golden/README.md)."""
    parts = [torch.load(osp.join(GOLDEN, f), map_location="cpu", weights_only=True)
             for f in ("tiny_clip_vit.pt", "tiny_clip_deep_extra.pt")]
    return {**parts[0], **parts[1]}


def load_inputs() -> dict:
    return torch.load(osp.join(GOLDEN, "inputs.pt"), map_location="cpu", weights_only=False)


def checkout_commit(src: str) -> str | None:
    """HEAD of the checkout, or None when src is not the top of a git work tree."""
    try:
        top, head = subprocess.run(["git", "-C", src, "rev-parse", "--show-toplevel", "HEAD"], capture_output=True,
                                   text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head if osp.realpath(top) == osp.realpath(src) else None


def official_function(path: str, name: str):
    """A top-level function of an official file, without running the rest of the file (train.py imports every
    dataset and trainer at its top)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    tree.body = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == name]
    namespace = {}
    exec(compile(tree, path, "exec"), namespace)
    return namespace[name]


def official_cfg(src: str, case: Case):
    """Dassl's defaults, the checkout's extend_cfg, its config file for the case and the case's overrides."""
    from dassl.config import get_cfg_default
    cfg = get_cfg_default()
    official_function(osp.join(src, "train.py"), "extend_cfg")(cfg)
    cfg.merge_from_file(osp.join(src, case.config_file))
    cfg.merge_from_list(case.overrides())
    cfg.freeze()
    return cfg


def set_attr(stack: contextlib.ExitStack, owner, name: str, value) -> None:
    """owner.name = value until the stack closes."""
    stack.callback(setattr, owner, name, getattr(owner, name))
    setattr(owner, name, value)


def warmup_init_without_verbose(self, optimizer, successor, warmup_epoch, last_epoch=-1, verbose=False):
    """Dassl's _BaseWarmupScheduler.__init__ for current torch, whose LRScheduler takes no `verbose`."""
    self.successor = successor
    self.warmup_epoch = warmup_epoch
    torch.optim.lr_scheduler.LRScheduler.__init__(self, optimizer, last_epoch)


@contextlib.contextmanager
def shadowed_packages(src: str):
    """The checkout's clip packages importable under their own names (the installed clip set aside), with APEX's
    unused CoCa import answered by a stand-in (it needs open_clip); everything restored on exit."""
    saved = {name: sys.modules.pop(name) for name in list(sys.modules) if name.split(".")[0] in CHECKOUT_PACKAGES}
    coca = types.ModuleType("clip_coca.coca_model")
    coca.CoCa = type("CoCa", (), {})  # isinstance(OpenAI CLIP, CoCa) is False, as with the real class
    sys.modules.update({"clip_coca": types.ModuleType("clip_coca"), "clip_coca.coca_model": coca})
    sys.path.insert(0, src)
    try:
        yield
    finally:
        sys.path.remove(src)
        for name in [n for n in sys.modules if n.split(".")[0] in CHECKOUT_PACKAGES]:
            del sys.modules[name]
        sys.modules.update(saved)


@contextlib.contextmanager
def official_code(src: str, case: Case):
    """The official trainer class with PATCHES applied; everything undone on exit. Yields a namespace: module,
    trainer_class, cfg, case and tape (the recorded cross-entropy calls and, for APEX, torch.exp outputs)."""
    from clipbayes.compat import import_dassl
    import_dassl()
    from dassl.engine import TRAINER_REGISTRY
    from dassl.optim import lr_scheduler

    tape = SimpleNamespace(cross_entropy=[], exp=[])

    def recorded_cross_entropy(logits, labels, *args, **kwargs):
        loss = torch.nn.functional.cross_entropy(logits, labels, *args, **kwargs)
        tape.cross_entropy.append((logits.detach().clone(), loss.detach().clone()))
        return loss

    def recorded_exp(x, *args, **kwargs):
        out = torch.exp(x, *args, **kwargs)
        tape.exp.append(out.detach().clone())
        return out

    ours = dict(TRAINER_REGISTRY._obj_map)
    with contextlib.ExitStack() as stack:
        stack.enter_context(shadowed_packages(src))
        stack.callback(lambda: (TRAINER_REGISTRY._obj_map.clear(), TRAINER_REGISTRY._obj_map.update(ours)))
        TRAINER_REGISTRY._obj_map.clear()
        spec = importlib.util.spec_from_file_location(f"official_{case.trainer_class.lower()}",
                                                      osp.join(src, case.trainer_file))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)

        tiny_file = osp.join(stack.enter_context(tempfile.TemporaryDirectory()), "tiny_clip.pt")
        torch.save(tiny_state(), tiny_file)
        module.clip._download = lambda url, *args, **kwargs: tiny_file  # the checkout's fresh module object
        module.F = Overlay(torch.nn.functional, cross_entropy=recorded_cross_entropy)
        if case.trainer_class == "MaPLe":
            module.nn = Overlay(torch.nn, Linear=VisionWidthLinear)
            module.torch = Overlay(torch, empty=text_width_empty)
        if case.is_apex:
            module.torch = Overlay(torch, exp=recorded_exp)
        set_attr(stack, torch.Tensor, "cuda", lambda self, *args, **kwargs: self)
        set_attr(stack, lr_scheduler._BaseWarmupScheduler, "__init__", warmup_init_without_verbose)
        stack.callback(torch.set_num_threads, torch.get_num_threads())
        torch.set_num_threads(1)
        yield SimpleNamespace(module=module, trainer_class=getattr(module, case.trainer_class),
                              cfg=official_cfg(src, case), case=case, tape=tape)


@contextlib.contextmanager
def half_is_identity():
    """Tensor.half as the identity: the official code in pure fp32."""
    with contextlib.ExitStack() as stack:
        set_attr(stack, torch.Tensor, "half", lambda self, *args, **kwargs: self)
        yield


def build_trainer(official, classnames, variant: Variant):
    """The official build_model on a bare trainer object (Dassl's data loaders are not built), after the case's
    seed; for APEX the adapter at the tiny identity and, for a clean-frozen set, a prompt-free second CLIP."""
    from dassl.engine.trainer import TrainerBase
    from dassl.utils import set_random_seed
    set_random_seed(official.case.build_seed)
    trainer = object.__new__(official.trainer_class)
    TrainerBase.__init__(trainer)
    trainer.cfg, trainer.device = official.cfg, torch.device("cpu")
    trainer.dm = SimpleNamespace(dataset=SimpleNamespace(classnames=list(classnames)))
    trainer.check_cfg(trainer.cfg)
    trainer.build_model()
    if official.case.is_apex:
        trainer.model.VPT_adapter_text_matrix.data = torch.eye(TINY_WIDTH)
        trainer.model.VPT_adapter_text_bias.data = torch.zeros(1, TINY_WIDTH)
        if variant.clean_frozen:
            trainer.model.clip_model_temp = official.module.clip.build_model(tiny_state(), PROMPT_FREE).float()
    return trainer


def recipe_params(official) -> dict:
    """The golden params: the freshly built official model's trainable tensors (named_parameters order), each
    += 0.02 N(0, 1) from a seeded generator (APEX: in sorted name order, its second CLIP's prompts left at their
    init), then all rounded onto the fp16 grid."""
    model = build_trainer(official, load_inputs()["classnames"], Variant(half_cast=True)).model
    learnable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    names = sorted(n for n in learnable if not n.startswith("clip_model_temp.")) if official.case.is_apex \
        else list(learnable)
    generator = torch.Generator().manual_seed(official.case.perturb_seed)
    with torch.no_grad():
        for name in names:
            learnable[name].add_(0.02 * torch.randn(learnable[name].shape, generator=generator))
        return {name: p.half().float() for name, p in learnable.items()}


def load_params(trainer, params: dict) -> None:
    """Copy params in under their official names (a prompt-free second CLIP has no prompts to take)."""
    named = dict(trainer.model.named_parameters())
    with torch.no_grad():
        for name, value in params.items():
            if name in named:
                named[name].copy_(value)
            elif not name.startswith("clip_model_temp."):
                raise KeyError(f"the official model has no parameter {name}")


def train_step(official, trainer, images, labels):
    """One official forward_backward (mid-epoch: no scheduler step): the training logits and loss, and the
    gradient of every parameter that got one. The SGD step it takes is undone: all outputs are at the params."""
    named = dict(trainer.model.named_parameters())
    before = {name: p.detach().clone() for name, p in named.items()}
    trainer.batch_idx, trainer.num_batches = 0, 2
    trainer.set_model_mode("train")
    official.tape.cross_entropy.clear()
    trainer.forward_backward({"img": images, "label": labels})
    [(logits, loss)] = official.tape.cross_entropy
    grads = {name: p.grad.detach().clone() for name, p in named.items() if p.grad is not None}
    with torch.no_grad():
        for name, value in before.items():
            named[name].copy_(value)
    return logits, loss, grads


def eval_logits(trainer, images):
    """The official model_inference in eval mode, as Dassl's test loop runs it."""
    trainer.set_model_mode("eval")
    with torch.no_grad():
        return trainer.model_inference(images)


def apex_new_classes(official, trainer, images, variant: Variant):
    """APEX's test flow on NEW_CLASSNAMES: a model built with the new names, the official load_model of the
    trained model's checkpoint (which brings the training classes' tokens), its logits and ensemble weights."""
    with tempfile.TemporaryDirectory() as directory:
        [name] = trainer.get_model_names()
        os.makedirs(osp.join(directory, name))
        torch.save({"state_dict": trainer.model.state_dict(), "epoch": 1},
                   osp.join(directory, name, "model-best.pth.tar"))
        new = build_trainer(official, NEW_CLASSNAMES, variant)
        new.load_model(directory)
    official.tape.exp.clear()
    logits = eval_logits(new, images)
    return logits, official.tape.exp[-1].view(-1)


def expectation_set(official, params: dict, variant: Variant) -> dict:
    """One expectation set of the golden file, rerun at params."""
    inputs = load_inputs()
    images, labels = inputs["images"], inputs["labels"]
    without_half = contextlib.nullcontext if variant.half_cast else half_is_identity
    with without_half() if official.case.is_apex else contextlib.nullcontext():
        trainer = build_trainer(official, inputs["classnames"], variant)
        load_params(trainer, params)
        with without_half():
            logits, loss, grads = train_step(official, trainer, images, labels)
            result = {"logits": logits, "loss": loss, "grads": grads}
            if not official.case.is_apex:
                return {**result, "eval_logits": eval_logits(trainer, images)}
            new_logits, alpha = apex_new_classes(official, trainer, images, variant)
            return {**result, "eval_logits_base": eval_logits(trainer, images), "eval_logits_new": new_logits,
                    "alpha": alpha}


def rerun(src: str, case_name: str, params: dict | None = None) -> dict:
    """Every expectation set of the case from the checkout at src, at params (official names; made by the golden
    recipe when None). Returns {"params": ..., set name: {"logits", "loss", "grads", ...}}."""
    case = CASES[case_name]
    with official_code(src, case) as official:
        params = recipe_params(official) if params is None else params
        return {"params": params, **{name: expectation_set(official, params, variant)
                                     for name, variant in case.expectation_sets.items()}}


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def describe(src: str, case_name: str, command: str) -> dict:
    """The golden file's config: what was run, on what, with which patches."""
    case = CASES[case_name]
    inputs = load_inputs()
    return {
        "official_repo": case.repo, "official_commit": checkout_commit(src) or "unknown (not a git checkout)",
        "command": command, "generator": "tests/official_deep_prompts.py", "trainer_file": case.trainer_file,
        "trainer_class": case.trainer_class, "config_file": case.config_file, "overrides": case.overrides(),
        "tiny_clip": {f: sha256(osp.join(GOLDEN, f)) for f in ("tiny_clip_vit.pt", "tiny_clip_deep_extra.pt")},
        "inputs": {"file": "tests/golden/inputs.pt", "sha256": sha256(osp.join(GOLDEN, "inputs.pt")),
                   "labels": inputs["labels"].tolist(), "classnames": inputs["classnames"],
                   **({"new_classnames": NEW_CLASSNAMES} if case.is_apex else {})},
        "seed": f"dassl set_random_seed({case.build_seed}) before every official build_model",
        "perturb": PERTURB.format(seed=case.perturb_seed),
        "patches": PATCHES,
        "expectation_sets": {name: vars(variant) for name, variant in case.expectation_sets.items()},
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", required=True, help="checkout of the official repository of the case")
    parser.add_argument("--case", required=True, choices=sorted(CASES))
    parser.add_argument("--out", required=True, help="file to write (not under tests/golden)")
    args = parser.parse_args(argv)
    if osp.dirname(osp.abspath(args.out)) == GOLDEN:
        parser.error("write elsewhere and compare: the committed golden files are replaced only deliberately")
    command = shlex.join(["python", "tests/official_deep_prompts.py", "--src", args.src, "--case", args.case,
                          "--out", args.out])
    golden = {"config": describe(args.src, args.case, command), **rerun(args.src, args.case)}
    torch.save(golden, args.out)
    print(f"wrote {args.out}: {', '.join(golden)}")


if __name__ == "__main__":
    main()
