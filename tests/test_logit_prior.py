"""LogitPrior composed with each base learner: the loss is the tested OVE-PG objective on the base's logits and
zero-shot logits of the same image features, plus the base's own regulariser; only the learner gets gradients."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from support import requires_dassl

pytestmark = requires_dassl


def _cfg(base: str, lambda_1=0.2):
    from clipbayes.config import default_cfg
    cfg = default_cfg()
    cfg.DATASET.NAME = "OxfordPets"
    cfg.TRAINER.LOGIT_PRIOR.BASE = base
    cfg.TRAINER.LOGIT_PRIOR.LAMBDA_1 = lambda_1
    cfg.TRAINER.COOP.N_CTX = 4
    cfg.TRAINER.COCOOP.N_CTX = 4
    cfg.TRAINER.BAYESIAN_PROMPT.N_SAMPLES_TRAIN = 3
    return cfg


def _model(cfg, clip_model, classnames):
    from clipbayes.trainers.logit_prior import LogitPrior
    torch.manual_seed(0)
    return LogitPrior.make_prompt_model(cfg, clip_model, classnames)


def _zeroshot_logits_restated(clip_model, images, classnames):
    """Zero-shot CLIP written with CLIP's own functions and the OxfordPets template."""
    from clipbayes.modeling.text import tokenize
    texts = [f"a photo of a {n.replace('_', ' ')}, a type of pet." for n in classnames]
    with torch.no_grad():
        text = F.normalize(clip_model.encode_text(tokenize(texts)), dim=-1)
        image = F.normalize(clip_model.encode_image(images), dim=-1)
    return clip_model.logit_scale.exp() * image @ text.t()


@pytest.mark.parametrize("base", ["CoOp", "CoCoOp", "BayesianPrompt"])
def test_loss_is_ove_pg_on_base_logits_plus_base_regularisers(golden_clip, golden_inputs, base):
    from clipbayes.objectives import ove_pg_loss
    classnames, images, labels = golden_inputs["classnames"], golden_inputs["images"], golden_inputs["labels"]
    model = _model(_cfg(base), golden_clip, classnames)
    torch.testing.assert_close(model.zeroshot_logits(model.base.encode_images(images)),
                               _zeroshot_logits_restated(golden_clip, images, classnames), rtol=1e-5, atol=1e-4)
    torch.manual_seed(1)
    loss, scores, parts = model.train_loss(images, labels)
    torch.manual_seed(1)  # same draws, same order: the base's residuals (if any), then the OVE-PG noise
    logits, regularisers = (out := model.base.train_logits(images)).logits, out.regularisers
    expected, _ = ove_pg_loss(logits, _zeroshot_logits_restated(golden_clip, images, classnames), labels,
                              alpha=1.0, lambda_1=0.2, omega_formula="official", num_samples=1)
    expected = expected + sum(regularisers.values())
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    assert scores.shape == (3, 5)
    assert ("kl" in parts) == (base == "BayesianPrompt") and {"nll", "reg"} <= set(parts)


def test_gradients_reach_only_the_learner(golden_clip, golden_inputs):
    model = _model(_cfg("CoOp"), golden_clip, golden_inputs["classnames"])
    model.requires_grad_(False)
    model.learner.requires_grad_(True)
    loss, _, _ = model.train_loss(golden_inputs["images"], golden_inputs["labels"])
    loss.backward()
    assert model.learner.ctx.grad is not None and model.learner.ctx.grad.abs().sum() > 0
    others = [n for n, p in model.named_parameters() if p.grad is not None and not n.startswith("base.learner.")]
    assert others == []
    assert not model.zeroshot_features.requires_grad


def test_lambda_zero_keeps_only_the_likelihood(golden_clip, golden_inputs):
    model = _model(_cfg("CoOp", lambda_1=0.0), golden_clip, golden_inputs["classnames"])
    torch.manual_seed(3)
    loss, _, parts = model.train_loss(golden_inputs["images"], golden_inputs["labels"])
    assert loss.item() == pytest.approx(parts["nll"], rel=1e-6)  # the logged part is a plain float


def test_zero_shot_text_is_encoded_once_not_per_step(golden_clip, golden_inputs):
    model = _model(_cfg("CoOp"), golden_clip, golden_inputs["classnames"])
    calls = []
    original = model.base.text_encoder.forward
    model.base.text_encoder.forward = lambda *a, **k: calls.append(a[0].shape[0]) or original(*a, **k)
    for _ in range(2):
        model.train_loss(golden_inputs["images"], golden_inputs["labels"])
    assert calls == [5, 5]  # one pass over the C learned prompts per step; no zero-shot re-encoding


def test_bad_base_and_omega_are_rejected():
    from clipbayes.config import ConfigError, check_cfg
    with pytest.raises(ConfigError, match="BASE must be one of .*BayesianPrompt.*MaPLe.*; got 'MMRL'"):
        check_cfg(_cfg("MMRL"))
    with pytest.raises(ConfigError, match="BASE must be one of .*; got 'ZeroshotCLIP'"):
        check_cfg(_cfg("ZeroshotCLIP"))  # nothing to train
    cfg = _cfg("CoOp")
    cfg.TRAINER.LOGIT_PRIOR.OMEGA = "approx"
    with pytest.raises(ConfigError, match="OMEGA must be one of official | exact"):
        check_cfg(cfg)


def test_any_registered_learner_is_a_base():
    from clipbayes.registry import base_learners
    assert {"CoOp", "CoCoOp", "BayesianPrompt"} <= set(base_learners())
    assert "ZeroshotCLIP" not in base_learners() and "LogitPrior" not in base_learners()


def test_draws_once_per_evaluation_reach_the_base(golden_clip, golden_inputs):
    cfg = _cfg("BayesianPrompt")
    model = _model(cfg, golden_clip, golden_inputs["classnames"])
    calls = []
    original = model.base.text_encoder.forward
    model.base.text_encoder.forward = lambda *a, **k: calls.append(a[0].shape[0]) or original(*a, **k)
    n_samples, n_classes = cfg.TRAINER.BAYESIAN_PROMPT.N_SAMPLES_TEST, len(golden_inputs["classnames"])
    with torch.no_grad():
        for mode, expected in (("per_evaluation", [n_samples * n_classes]),
                               ("per_batch", [n_samples * n_classes] * 2)):
            calls.clear()
            with model.evaluation_cache(mode):
                model.predict(golden_inputs["images"][:1])
                model.predict(golden_inputs["images"][1:])
            assert calls == expected, mode
