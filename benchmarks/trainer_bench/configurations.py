"""The benchmarked configurations and the config each one runs with (``default_cfg()`` plus the keys below).

CoOp-family learners: N_CTX 4 with CTX_INIT "a photo of a" (CoOp-ctx16: 16 random context tokens, CoOp's
default). Deep-prompt learners: the official settings of configs/trainers/<method>/ (base-to-new): MaPLe 2 context tokens, depth 9; IVLP 2 text + 2 vision tokens, depth
12 / 12; DeepVPT 8 vision tokens, depth 12; APEX 2 + 2 tokens, text depth 1, vision depth 12, ensemble beta 4 and
threshold 0.05. Treatments (LogitPrior, ReBaPL) wrap the named base with the base's settings; ReBaPL's rows carry
K = 3 samples (the official 15 epochs) and repulse on 5 rows of the representation of 128 reference images.
"""
from __future__ import annotations

# name -> (trainer, BayesianPrompt posterior or None, the base of a treatment (LogitPrior, ReBaPL) or None, the base
# configuration's name or None)
CONFIGS = {
    "CoOp": ("CoOp", None, None, None),
    "CoOp-ctx16": ("CoOp", None, None, None),  # CoOp's own default: 16 random context tokens
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
    "MaPLe": ("MaPLe", None, None, None),
    "IVLP": ("IVLP", None, None, None),
    "DeepVPT": ("DeepVPT", None, None, None),
    "APEX": ("APEX", None, None, None),
    "LogitPrior-MaPLe": ("LogitPrior", None, "MaPLe", "MaPLe"),
    "ReBaPL-CoOp": ("ReBaPL", None, "CoOp", "CoOp"),
    "ReBaPL-MaPLe": ("ReBaPL", None, "MaPLe", "MaPLe"),
}
TREATMENT_NODES = {"LogitPrior": "LOGIT_PRIOR", "ReBaPL": "REBAPL"}
# ReBaPL rows: K samples in the ensemble, M reference images in the repulsion's representation (the official 3 and 128)
REBAPL_SAMPLES, REBAPL_REFERENCE_IMAGES = 3, 128

# config node -> the official prompt settings of the deep-prompt methods (configs/trainers/<method>/*.yaml)
DEEP_PROMPT_SETTINGS = {
    "MAPLE": dict(N_CTX=2, CTX_INIT="a photo of a", PROMPT_DEPTH=9),
    "IVLP": dict(N_CTX_TEXT=2, N_CTX_VISION=2, CTX_INIT="a photo of a", PROMPT_DEPTH_TEXT=12,
                 PROMPT_DEPTH_VISION=12),
    "DEEP_VPT": dict(N_CTX_VISION=8, PROMPT_DEPTH_VISION=12),
    "APEX": dict(N_CTX_TEXT=2, N_CTX_VISION=2, CTX_INIT="a photo of a #.", PROMPT_DEPTH_TEXT=1,
                 PROMPT_DEPTH_VISION=12, ENSEMBLE_BETA=4.0, ENSEMBLE_THRESHOLD=0.05),
}


def make_cfg(args, config: str, prec: str):
    """The config of ``config``: every learner's node at precision ``prec`` and the settings above;
    ``args.samples`` MC samples, ``args.text_chunk`` / ``args.checkpointing`` for the text passes."""
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
    if config == "CoOp-ctx16":
        cfg.TRAINER.COOP.update(N_CTX=16, CTX_INIT="")
    bp = cfg.TRAINER.BAYESIAN_PROMPT
    bp.N_SAMPLES_TRAIN = args.samples
    bp.N_SAMPLES_TEST = args.samples
    bp.POSTERIOR = posterior or "unconditional"
    bp.PREDICTION = "mc"
    cfg.TRAINER.DUAL_VIEW.update(PREC=prec, MIXUP="bank" if config.endswith("-bank") else "batch")
    cfg.TRAINER.PBPROMPT.update(PREC=prec, N_SAMPLES_TRAIN=args.samples, N_SAMPLES_TEST=args.samples)
    for key, settings in DEEP_PROMPT_SETTINGS.items():
        cfg.TRAINER[key].update(PREC=prec, **settings)
    if trainer in TREATMENT_NODES:
        cfg.TRAINER[TREATMENT_NODES[trainer]].update(BASE=base, PREC=prec)
    return cfg
