"""Model-level behaviour of the baselines: evaluation caching, CoCoOp's per-image prompts, zero-shot templates."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from support import requires_dassl

pytestmark = requires_dassl

CLASSNAMES = ["abyssinian", "american_bulldog", "Boeing 737-800", "2012 BMW M3 coupe", "banded"]


def _cfg(dataset="OxfordPets"):
    from clipbayes.config import default_cfg
    cfg = default_cfg()
    cfg.DATASET.NAME = dataset
    cfg.TRAINER.COOP.N_CTX = 4
    cfg.TRAINER.COCOOP.N_CTX = 4
    return cfg


def _count_text_passes(model):
    calls = []
    original = model.text_encoder.forward
    model.text_encoder.forward = lambda *a, **k: calls.append(a[0].shape[0]) or original(*a, **k)
    return calls


def test_coop_encodes_class_prompts_once_per_evaluation(golden_clip, golden_inputs):
    from clipbayes.trainers.coop import CoOp
    model = CoOp.make_prompt_model(_cfg(), golden_clip, CLASSNAMES)
    calls = _count_text_passes(model)
    images = golden_inputs["images"]
    with torch.no_grad(), model.evaluation_cache():
        batched = [model.predict(images[i:i + 1]) for i in range(3)]
    assert calls == [5]  # one pass over the C prompts for the whole evaluation
    with torch.no_grad():
        torch.testing.assert_close(torch.cat(batched), model.predict(images))
    assert calls == [5, 5]  # outside an evaluation nothing is cached (parameters may change between steps)


def test_cocoop_meta_net_shapes_and_per_image_prompts(golden_clip, golden_inputs):
    from clipbayes.trainers.cocoop import CoCoOp
    torch.manual_seed(0)
    model = CoCoOp.make_prompt_model(_cfg(), golden_clip, CLASSNAMES)
    meta = model.learner.meta_net
    assert (meta.linear1.in_features, meta.linear1.out_features, meta.linear2.out_features) == (64, 4, 64)
    images = golden_inputs["images"]
    features = model.encode_images(images)
    ctx = model.learner(features)
    assert ctx.shape == (3, 1, 4, 64)  # (B, K=1, M, D): every image its own context, shared by the classes
    torch.testing.assert_close(ctx[1, 0], model.learner.ctx + meta(features[1]))
    calls = _count_text_passes(model)
    logits = model.predict(images)
    assert calls == [3 * 5]  # all B x C prompts in one text pass
    per_image = torch.stack([model.scale() * model.encode_prompts(ctx[b]) @ features[b] for b in range(3)])
    torch.testing.assert_close(logits, per_image, rtol=1e-5, atol=1e-4)


def test_zeroshot_dataset_template_fallback_and_ensemble(golden_clip, golden_inputs):
    from clipbayes.modeling.text import tokenize
    from clipbayes.trainers.zeroshot import ZeroshotCLIP, zeroshot_templates

    def restated(templates):
        feats = []
        for t in templates:
            texts = [t.format(n.replace("_", " ")) for n in CLASSNAMES]
            feats.append(F.normalize(golden_clip.encode_text(tokenize(texts)), dim=-1))
        return F.normalize(torch.stack(feats).mean(0), dim=-1)

    assert zeroshot_templates(_cfg("OxfordPets")) == ["a photo of a {}, a type of pet."]
    assert zeroshot_templates(_cfg("MyOwnData")) == ["a photo of a {}."]
    own = _cfg("ImageFolderDataset")
    own.DATASET.PROMPT_TEMPLATE = "a microscope image of {}."
    assert zeroshot_templates(own) == ["a microscope image of {}."]
    assert zeroshot_templates(own, template="{} cells.") == ["{} cells."]
    for cfg in (_cfg("OxfordPets"), _cfg("DescribableTextures")):
        model = ZeroshotCLIP.make_prompt_model(cfg, golden_clip, CLASSNAMES)
        torch.testing.assert_close(model.class_features, restated(zeroshot_templates(cfg)), rtol=1e-5, atol=1e-6)
    cfg = _cfg("ImageNet")
    cfg.TRAINER.ZEROSHOT_CLIP.ENSEMBLE = True
    model = ZeroshotCLIP.make_prompt_model(cfg, golden_clip, CLASSNAMES)
    templates = zeroshot_templates(cfg, ensemble=True)
    assert len(templates) == 7
    torch.testing.assert_close(model.class_features, restated(templates), rtol=1e-5, atol=1e-6)
    calls = _count_text_passes(model)
    model.predict(golden_inputs["images"])
    assert calls == []  # zero-shot text features are computed once, at construction
