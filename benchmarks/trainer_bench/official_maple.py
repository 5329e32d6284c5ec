"""The official MaPLe training step beside ours (``--compare-official-maple SRC``): the same CLIP weights, the same
inputs and the same starting prompts, in one process, the two steps interleaved step by step.

    official  loss = CustomCLIP(images, labels) (its cross-entropy), zero_grad, backward, SGD step
    ours      loss = MaPLe's model.train_loss(images, labels), zero_grad, backward, SGD step (TrainingStep)

Both optimisers are SGD(lr 1e-4, momentum 0.9, weight decay 5e-4) over the learner's tensors; N_CTX, CTX_INIT and
PROMPT_DEPTH come from SRC's configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml and must equal the MaPLe row's.
The official text pass runs every class prompt at 77 tokens, ours the length buckets.

The official code is imported from SRC at run time, never copied: its fork of OpenAI CLIP (``clip/``, with
``build_model(state_dict, design_details)``) as the package ``official_mpl_clip`` and ``trainers/maple.py`` as the
module ``official_mpl_maple``, so that neither replaces the installed openai-clip our code imports as ``clip``.
Runtime workarounds, in this process only (SRC is not modified):
  * trainers/maple.py runs ``from clip import clip``: while it executes, ``sys.modules["clip"]`` and its submodules
    are the fork's; the installed package is put back right after;
  * its ``@TRAINER_REGISTRY.register()`` would clash with our registered ``MaPLe``: it registers into a throw-away
    Dassl registry;
  * the fork's ``build_model`` stores the weights in fp16; as the official build_model does at PREC fp32 the model
    is cast to fp32, and our fp32 state dict is then loaded again, so the weights equal ours exactly;
  * ``MultiModalPromptLearner`` casts its Linear ``proj`` to fp16 (trainers/maple.py l. 104), which fails at PREC
    fp32 (fp32 context @ fp16 weight); it is cast back to fp32 after construction. The fork's fp16 rounding of every
    inserted prompt copy (``.half()`` in clip/model.py) is left as it is (ours runs with HALF_CAST False);
  * its ``tokenized_prompts`` (a plain attribute, not a buffer) is moved to the device by hand.
trainers/maple.py hard-codes the text width 512 and the vision width 768: a ViT-B/16-shaped CLIP
(--backbone vit-b16-random) is required, and fp32, the precision at which both codes run on a CPU.
"""
from __future__ import annotations

import importlib.util
import os
import sys

import torch

from trainer_bench.building import (TrainingStep, benchmark_classnames, build_clip, build_prompt_model,
                                    synthetic_inputs)
from trainer_bench.configurations import make_cfg
from trainer_bench.measurement import STATISTICS, timed_call
from trainer_bench.token_counting import TextPassMeter, image_tokens_per_image

OFFICIAL_CONFIG = os.path.join("configs", "trainers", "MaPLe", "vit_b16_c2_ep5_batch4_2ctx.yaml")
OFFICIAL_MAPLE_NOTE = ("ours / official s/step of the MaPLe training step (loss + backward + SGD step), same CLIP "
                       "weights, inputs and starting prompts, interleaved step by step in one process; both fp32, "
                       "the official Linear proj kept in fp32 (its proj.half() fails at PREC fp32), the official "
                       "fp16 rounding of each prompt copy kept; official text pass at 77 tokens per prompt")


def import_from_path(name: str, path: str, package_dir: str | None = None):
    """Execute the file ``path`` as the module (or, with ``package_dir``, the package) ``name``."""
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[package_dir] if package_dir else None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_official_maple(src: str):
    """(the fork's clip package, trainers/maple.py) of the checkout ``src``, under names of their own."""
    from clipbayes.compat import import_clip, import_dassl

    import_dassl()
    import_clip()  # the installed openai-clip, put back after trainers/maple.py has imported the fork
    import dassl.engine
    from dassl.utils import Registry

    fork = import_from_path("official_mpl_clip", os.path.join(src, "clip", "__init__.py"), os.path.join(src, "clip"))
    aliases = {"clip": fork, "clip.clip": fork.clip, "clip.model": fork.model,
               "clip.simple_tokenizer": fork.simple_tokenizer}
    saved = {name: sys.modules.get(name) for name in aliases}
    registry = dassl.engine.TRAINER_REGISTRY
    sys.modules.update(aliases)
    dassl.engine.TRAINER_REGISTRY = Registry("OFFICIAL_MPL_TRAINER")
    try:
        maple = import_from_path("official_mpl_maple", os.path.join(src, "trainers", "maple.py"))
    finally:
        dassl.engine.TRAINER_REGISTRY = registry
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return fork, maple


def official_cfg(src: str):
    """Dassl's default config with the official MaPLe yaml merged in (its TRAINER.MAPLE node), PREC fp32."""
    from dassl.config import get_cfg_default

    cfg = get_cfg_default()
    cfg.TRAINER.set_new_allowed(True)  # the official train.py adds TRAINER.MAPLE in extend_cfg
    cfg.merge_from_file(os.path.join(src, OFFICIAL_CONFIG))
    cfg.TRAINER.MAPLE.PREC = "fp32"
    return cfg


def build_official_model(fork, maple, cfg, clip_model, classnames, device):
    """The official CustomCLIP on a copy of ``clip_model``'s weights, trainable as in its build_model (the tensors
    named prompt_learner or VPT), on ``device``."""
    state = {name: tensor.detach().clone() for name, tensor in clip_model.state_dict().items()}
    design = dict(trainer="MaPLe", vision_depth=0, language_depth=0, vision_ctx=0, language_ctx=0,
                  maple_length=cfg.TRAINER.MAPLE.N_CTX)  # as the official load_clip_to_cpu
    official_clip = fork.model.build_model(dict(state), design).float()
    official_clip.load_state_dict(state)  # build_model stored them in fp16: the exact fp32 weights again
    model = maple.CustomCLIP(cfg, classnames, official_clip)
    model.prompt_learner.proj.float()  # the official proj.half() fails at PREC fp32 (module docstring)
    for name, param in model.named_parameters():
        param.requires_grad_("prompt_learner" in name or "VPT" in name)
    model.to(device)
    model.tokenized_prompts = model.tokenized_prompts.to(device)
    return model.train()  # Dassl's set_model_mode("train")


@torch.no_grad()
def copy_prompts(ours, official) -> None:
    """Our learner's starting values into the official one: ctx, the deep text tokens and the couplings
    (F_0 = proj, F_i = compound_prompt_projections[i - 1])."""
    if len(ours.text) != len(official.compound_prompts_text):
        raise RuntimeError(f"{len(ours.text)} deep text tokens of ours against "
                           f"{len(official.compound_prompts_text)} official ones")
    official.ctx.copy_(ours.ctx)
    for mine, theirs in zip(ours.text, official.compound_prompts_text):
        theirs.copy_(mine)
    for mine, theirs in zip(ours.couplings, [official.proj, *official.compound_prompt_projections]):
        theirs.load_state_dict(mine.state_dict())


def check_settings(cfg, node) -> None:
    """The official config's tokens and depth must be the MaPLe row's."""
    for key in ("N_CTX", "CTX_INIT", "PROMPT_DEPTH"):
        if cfg.TRAINER.MAPLE[key] != node[key]:
            raise RuntimeError(f"official {OFFICIAL_CONFIG} has {key} {cfg.TRAINER.MAPLE[key]!r}, the MaPLe row "
                               f"{node[key]!r}")


def compare_official_maple(args) -> dict:
    """Our and the official MaPLe step, ``args.warmup`` untimed then ``args.steps`` timed pairs (in alternating
    order); the first losses (same prompts, no step taken yet) and the text / image tokens of a step."""
    from clipbayes.modeling.precision import apply_precision, resolve_precision

    device = torch.device(args.device)
    prec = resolve_precision(args.prec, device)
    if prec != "fp32":
        raise SystemExit(f"--compare-official-maple runs at fp32 (the official proj.half() fails there and is kept "
                         f"fp32 by a workaround; its fp16 path is not benchmarked), not {prec}")
    torch.manual_seed(args.seed)
    stat = STATISTICS[args.statistic]
    classnames = benchmark_classnames(args.classes, args.official_names)
    clip_model = apply_precision(build_clip(args.backbone), prec)
    if clip_model.ln_final.weight.shape[0] != 512 or clip_model.visual.conv1.out_channels != 768:
        raise SystemExit("the official trainers/maple.py hard-codes text width 512 and vision width 768: use "
                         "--backbone vit-b16-random")
    cfg = make_cfg(args, "MaPLe", prec)
    ours = build_prompt_model(cfg, "MaPLe", clip_model, classnames, device)
    fork, maple = load_official_maple(args.compare_official_maple)
    theirs_cfg = official_cfg(args.compare_official_maple)
    check_settings(theirs_cfg, cfg.TRAINER.MAPLE)
    official = build_official_model(fork, maple, theirs_cfg, clip_model, classnames, device)
    copy_prompts(ours.learner, official.prompt_learner)

    inputs = synthetic_inputs(args, clip_model.visual.input_resolution, device)
    our_step = TrainingStep(ours, inputs.images, inputs.labels, prec, device)
    official_params = [p for p in official.parameters() if p.requires_grad]
    official_optim = torch.optim.SGD(official_params, lr=1e-4, momentum=0.9, weight_decay=5e-4)

    def official_step():
        loss = official(inputs.images, inputs.labels)
        official_optim.zero_grad(set_to_none=True)
        loss.backward()
        official_optim.step()
        return loss

    with torch.no_grad():
        first_losses = (float(ours.train_loss(inputs.images, inputs.labels)[0]),
                        float(official(inputs.images, inputs.labels)))
    meter = TextPassMeter(ours.text_encoder)
    for _ in range(args.warmup):
        our_step()
        official_step()
    steps = [("ours", our_step), ("official", official_step)]
    times = dict(ours=[], official=[])
    for index in range(args.steps):  # the pair's order alternates, so neither always follows the other
        meter.reset()
        for name, step in steps if index % 2 == 0 else steps[::-1]:
            times[name].append(timed_call(step, device))
    ours_s, official_s = stat(times["ours"]), stat(times["official"])
    maple_node = theirs_cfg.TRAINER.MAPLE
    return dict(config="MaPLe vs official", ours_s=ours_s, official_s=official_s,
                ours_over_official=ours_s / official_s,
                step_times=times, first_loss_ours=first_losses[0], first_loss_official=first_losses[1],
                text_tokens_ours=meter.counts["bucketed"], text_tokens_official=77 * len(classnames),
                image_tokens_per_step=args.batch * image_tokens_per_image(ours), n_ctx=maple_node.N_CTX,
                prompt_depth=maple_node.PROMPT_DEPTH, precision=prec,
                trainable_params=dict(ours=sum(p.numel() for p in our_step.params),
                                      official=sum(p.numel() for p in official_params)),
                official_source=os.path.abspath(args.compare_official_maple), note=OFFICIAL_MAPLE_NOTE)


def official_maple_table(row: dict, statistic: str) -> str:
    """The comparison's one-line table (or its error)."""
    from tabulate import tabulate

    if "error" in row:
        return tabulate([[row["config"], "ERROR: " + row["error"][:160]]], headers=["configuration", ""])
    return tabulate([[row["config"], f"{row['ours_s']:.4f}", f"{row['official_s']:.4f}",
                      f"{row['ours_over_official']:.3f}",
                      f"{row['first_loss_ours']:.5f} / {row['first_loss_official']:.5f}",
                      f"{row['text_tokens_ours']} / {row['text_tokens_official']}", row["image_tokens_per_step"],
                      f"{row['n_ctx']} / {row['prompt_depth']}",
                      f"{row['trainable_params']['ours']} / {row['trainable_params']['official']}"]],
                    headers=["configuration", f"ours s/step ({statistic})", f"official s/step ({statistic})",
                             "ours / official", "first loss ours / official", "text tokens / step ours / official",
                             "image tokens / step", "N_CTX / PROMPT_DEPTH", "trainable params ours / official"])
