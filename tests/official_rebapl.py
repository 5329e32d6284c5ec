"""Rerun the official ReBaPL sampler pieces: what tests/golden/rebapl_sghmc.pt stores.

The official code is not copied here. Its `trainers/optimizers.py` (SGHMC) and `trainers/distances.py` are imported
at run time from a checkout of SigmaNova/ReBaPL @ b9b4177 (they need only torch and POT) and driven as the official
trainer drives them: the learning rate of each epoch in the param groups, ``set_epoch`` after each epoch (the
counter its noise rule reads), noise from torch's global generator (``randn_like``), which a CPU run seeds from
outside. The gradients come from our MaPLe model on the tiny ViT CLIP of the golden files (the same learner, the same
inputs for both samplers): what is compared is the sampler, step by step, including the sample kept at the end of
each cycle.

Regenerate (written to the path given; compare it, or copy it over the committed one deliberately):

    python tests/official_rebapl.py --src /path/to/ReBaPL --out /tmp/rebapl_sghmc.pt
"""
from __future__ import annotations

import argparse
import importlib.util
import os.path as osp
import sys

import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
for path in (ROOT, osp.join(ROOT, "tests")):
    if path not in sys.path:
        sys.path.insert(0, path)
GOLDEN = osp.join(ROOT, "tests", "golden")

REPO, COMMIT = "SigmaNova/ReBaPL", "b9b4177faa2679d1a457fdf3926cb431ae24c96e"
# One short run: 2 cycles of 2 epochs, noise in the last epoch of each, 2 steps per epoch, the official values
# otherwise (temperature 100, momentum 0.9, weight decay 5e-4), N = 16 training images.
CYCLE, NOISE_EPOCHS, EPOCHS, STEPS, MAX_LR, WARMUP_LR = 2, 1, 4, 2, 0.002, 1e-5
MOMENTUM, WEIGHT_DECAY, TEMPERATURE, DATASET_SIZE, SEED = 0.9, 5e-4, 100.0, 16, 7


def official_module(src: str, name: str):
    """``trainers/<name>.py`` of the checkout, imported by path (not as a package: its __init__ imports Dassl)."""
    path = osp.join(src, "trainers", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"official_rebapl_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def maple_model():
    """Our MaPLe (2 tokens, depth 2) on the golden tiny ViT CLIP, its learner initialised from seed 0, and the golden
    inputs."""
    from clipbayes.compat import import_clip
    from clipbayes.config import default_cfg
    from clipbayes.registry import get_method
    from support import load_golden

    clip = import_clip()
    state = torch.load(osp.join(GOLDEN, "tiny_clip_vit.pt"), map_location="cpu", weights_only=True)
    clip_model = clip.model.build_model(dict(state)).float().eval().requires_grad_(False)
    inputs = load_golden("inputs.pt")
    cfg = default_cfg()
    cfg.TRAINER.MAPLE.update(N_CTX=2, CTX_INIT="a photo of a", PROMPT_DEPTH=2, PREC="fp32")
    torch.manual_seed(0)
    model = get_method("MaPLe").trainer.make_prompt_model(cfg, clip_model, inputs["classnames"])
    model.requires_grad_(False)
    model.learner.requires_grad_(True)
    return model, inputs["images"], inputs["labels"]


def epoch_lr(epoch: int) -> float:
    from clipbayes.sampling import cyclical_step_size
    return cyclical_step_size(epoch, MAX_LR, CYCLE, WARMUP_LR)


def run(make_optimizer, start_epoch) -> dict:
    """Losses and the learner's state after every step, with the optimizer from ``make_optimizer(params)``;
    ``start_epoch(optimizer, epoch)`` is called before each epoch, ``optimizer.set_epoch(epoch)`` (when it has one)
    after it, as the official trainer does."""
    model, images, labels = maple_model()
    params = [p for p in model.learner.parameters() if p.requires_grad]
    optimizer = make_optimizer(params)
    torch.manual_seed(SEED)
    losses, states = [], []
    for epoch in range(EPOCHS):
        for group in optimizer.param_groups:
            group["lr"] = epoch_lr(epoch)
        start_epoch(optimizer, epoch)
        for _ in range(STEPS):
            optimizer.zero_grad()
            loss = model.train_loss(images, labels).loss
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            states.append({k: v.detach().clone() for k, v in model.learner.state_dict().items()})
        if hasattr(optimizer, "set_epoch"):
            optimizer.set_epoch(epoch)
    return dict(losses=torch.stack(losses), states=states)


def ours() -> dict:
    from clipbayes.sampling import SGHMC, in_sampling_phase

    return run(lambda params: SGHMC(params, lr=MAX_LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY,
                                    temperature=TEMPERATURE, dataset_size=DATASET_SIZE),
               lambda optimizer, epoch: optimizer.set_noise(in_sampling_phase(epoch, CYCLE, NOISE_EPOCHS)))


def official(src: str) -> dict:
    optimizers = official_module(src, "optimizers")

    def make(params):
        optimizer = optimizers.SGHMC(params, lr=MAX_LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY,
                                     cycle_length=CYCLE, noise_last_epochs=NOISE_EPOCHS)
        optimizer.noise_temperature, optimizer.dataset_size = TEMPERATURE, DATASET_SIZE
        return optimizer

    return run(make, lambda optimizer, epoch: None)


def distance_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return torch.randn(5, 8, generator=generator), torch.randn(5, 8, generator=generator)


def official_distances(src: str) -> dict:
    distances = official_module(src, "distances")
    current, anchor = distance_inputs()
    return dict(mse=distances.mse_potential(current, anchor).mean(),
                wasserstein=distances.wasserstein_distance(current, anchor),
                mmd=distances.mmd_distance(current, anchor),
                procrustes=distances.procrustes_distance(current, anchor))


def golden(src: str) -> dict:
    trace = official(src)
    return dict(source=f"{REPO} @ {COMMIT[:7]}: trainers/optimizers.py SGHMC, trainers/distances.py "
                       f"(tests/official_rebapl.py)",
                losses=trace["losses"], states=trace["states"], distances=official_distances(src),
                settings=dict(cycle=CYCLE, noise_epochs=NOISE_EPOCHS, epochs=EPOCHS, steps=STEPS, max_lr=MAX_LR,
                              warmup_lr=WARMUP_LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY,
                              temperature=TEMPERATURE, dataset_size=DATASET_SIZE, seed=SEED))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", required=True, help=f"a checkout of {REPO} @ {COMMIT[:7]}")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.save(golden(args.src), args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
