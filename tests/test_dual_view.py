"""DualViewPrompt: the InfoNCE bound against a slow per-pair re-statement, the critic's gradient, class-wise Mixup
(labels, classes, the Beta draws), the hand-crafted views encoded once, the reduction to CoOp, configs and scripts.
"""
from __future__ import annotations

import math
import os
import os.path as osp
import subprocess

import pytest
import torch
import torch.nn.functional as F

from support import ROOT, ScriptSandbox, method_node, model_cfg, requires_dassl

from clipbayes.modeling.mixup import ClassFeatureBank, beta_lambdas, mix_features, same_class_partners
from clipbayes.objectives import critic_scores, symmetric_infonce


def views(n_classes=6, dim=8, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    soft = F.normalize(torch.randn(n_classes, dim, generator=generator, dtype=dtype), dim=-1)
    handcrafted = F.normalize(torch.randn(n_classes, dim, generator=generator, dtype=dtype), dim=-1)
    weight = torch.eye(dim, dtype=dtype) + 0.3 * torch.randn(dim, dim, generator=generator, dtype=dtype)
    return soft, handcrafted, weight


def slow_infonce(soft, handcrafted, temperature, weight=None):
    """(1/2C) sum_c [-log p(h_c | t_c) - log p(t_c | h_c)], every critic value computed pair by pair."""
    n = soft.shape[0]

    def critic(a, b):
        return (a @ (b if weight is None else weight @ b)) / temperature

    total = 0.0
    for c in range(n):
        row = torch.stack([critic(soft[c], handcrafted[k]) for k in range(n)])
        column = torch.stack([critic(soft[k], handcrafted[c]) for k in range(n)])
        total = total - (row[c] - torch.logsumexp(row, 0)) - (column[c] - torch.logsumexp(column, 0))
    return total / (2 * n)


# --- the MI bound ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bilinear", [False, True])
def test_infonce_equals_slow_per_pair_restatement(bilinear):
    soft, handcrafted, weight = views()
    weight = weight if bilinear else None
    ours = symmetric_infonce(critic_scores(soft, handcrafted, 0.1, weight))
    torch.testing.assert_close(ours, slow_infonce(soft, handcrafted, 0.1, weight))


@pytest.mark.parametrize("temperature", [0.07, 0.5, 2.0])
def test_infonce_at_perfectly_aligned_views(temperature):
    n_classes, dim = 5, 8
    orthonormal = torch.linalg.qr(torch.randn(dim, n_classes, dtype=torch.float64,
                                              generator=torch.Generator().manual_seed(1)))[0].t()
    loss = symmetric_infonce(critic_scores(orthonormal, orthonormal, temperature))
    # S = I / tau: each row is -log(e^{1/tau} / (e^{1/tau} + C - 1)) in both directions
    expected = math.log1p((n_classes - 1) * math.exp(-1 / temperature))
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float64))
    assert 0 < math.log(n_classes) - loss.item() <= math.log(n_classes)  # the bound on I(t; h)
    same = F.normalize(torch.ones(n_classes, dim, dtype=torch.float64), dim=-1)  # indistinguishable views
    torch.testing.assert_close(symmetric_infonce(critic_scores(same, same, temperature)),
                               torch.tensor(math.log(n_classes), dtype=torch.float64))


def test_infonce_is_symmetric_in_the_two_views():
    soft, handcrafted, weight = views(seed=2)
    forward = symmetric_infonce(critic_scores(soft, handcrafted, 0.07))
    torch.testing.assert_close(forward, symmetric_infonce(critic_scores(handcrafted, soft, 0.07)))
    bilinear = symmetric_infonce(critic_scores(soft, handcrafted, 0.07, weight))
    torch.testing.assert_close(bilinear, symmetric_infonce(critic_scores(handcrafted, soft, 0.07, weight.t())))
    one_way = F.cross_entropy(critic_scores(soft, handcrafted, 0.07, weight), torch.arange(6))
    assert not torch.allclose(bilinear, one_way)  # both directions count


def test_critic_gradient():
    soft, handcrafted, weight = views(seed=3)
    temperature, n = 0.2, soft.shape[0]
    weight = weight.clone().requires_grad_(True)
    loss = symmetric_infonce(critic_scores(soft, handcrafted, temperature, weight))
    (grad,) = torch.autograd.grad(loss, weight)
    # dL/dS = (softmax_rows(S) - I + softmax_columns(S) - I) / 2C, S = t W h^T / tau  =>  dL/dW = t^T (dL/dS) h / tau
    scores = soft @ weight.detach() @ handcrafted.t() / temperature
    eye = torch.eye(n, dtype=scores.dtype)
    d_scores = (scores.softmax(1) - eye + scores.softmax(0) - eye) / (2 * n)
    torch.testing.assert_close(grad, soft.t() @ d_scores @ handcrafted / temperature)
    assert torch.autograd.gradcheck(
        lambda w: symmetric_infonce(critic_scores(soft, handcrafted, temperature, w)), (weight.detach().clone()
                                                                                       .requires_grad_(True),))


def test_infonce_refuses_non_square_scores():
    with pytest.raises(ValueError, match="square"):
        symmetric_infonce(torch.zeros(3, 4))


# --- class-wise Mixup --------------------------------------------------------------------------------------------
def test_batch_partners_stay_within_the_class_and_skip_singletons():
    labels = torch.tensor([3, 1, 3, 0, 3, 1, 2, 3])  # classes 0 and 2 have one row each: skipped
    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(8, 8)
    for _ in range(3000):
        rows, partners = same_class_partners(labels, generator)
        assert rows.tolist() == [0, 1, 2, 4, 5, 7]
        assert torch.equal(labels[partners], labels[rows]) and bool((partners != rows).all())
        counts[rows, partners] += 1
    # each row of class 3 picks each of its 3 class mates with probability 1/3; class 1 rows pick each other
    share = counts[[0, 2, 4, 7]][:, [0, 2, 4, 7]] / 3000
    off_diagonal = share[~torch.eye(4, dtype=torch.bool)]
    assert (off_diagonal - 1 / 3).abs().max() < 0.04
    assert counts[1, 5] == counts[5, 1] == 3000
    rows, partners = same_class_partners(torch.arange(5))
    assert rows.numel() == partners.numel() == 0  # no pair in the batch: no mixed rows


def test_bank_pairs_are_two_distinct_images_of_the_asked_class():
    labels = torch.tensor([2, 0, 1, 2, 0, 2, 1, 0, 2])
    features = torch.eye(9)  # feature k identifies image k
    bank = ClassFeatureBank(features, labels, num_classes=3)
    asked = torch.tensor([2, 0, 1]).repeat(4000)
    generator = torch.Generator().manual_seed(0)
    first, second = bank.pairs(asked, generator)
    a, b = first.argmax(-1), second.argmax(-1)
    assert torch.equal(labels[a], asked) and torch.equal(labels[b], asked) and bool((a != b).all())
    class_two = asked == 2  # 4 images: 12 ordered pairs, each 1/12
    pair_ids = a[class_two] * 9 + b[class_two]
    frequencies = torch.bincount(pair_ids, minlength=81).float() / class_two.sum()
    assert (frequencies > 0).sum() == 12 and (frequencies[frequencies > 0] - 1 / 12).abs().max() < 0.02


@pytest.mark.parametrize("labels,message", [(torch.tensor([0, 0, 1, 2, 2]), r"classes 1 \(1 image\)"),
                                            (torch.tensor([0, 0, 2, 2]), r"classes 1 \(0 images\)")])
def test_bank_refuses_a_class_without_a_pair(labels, message):
    with pytest.raises(ValueError, match=message) as error:
        ClassFeatureBank(torch.randn(labels.numel(), 4), labels, num_classes=3)
    assert "DATASET.NUM_SHOTS" in str(error.value) and "MIXUP" in str(error.value)


def test_bank_refuses_bad_shapes_and_labels():
    with pytest.raises(ValueError, match="features"):
        ClassFeatureBank(torch.randn(4, 3), torch.zeros(5, dtype=torch.long), num_classes=1)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        ClassFeatureBank(torch.randn(4, 3), torch.tensor([0, 0, 2, 2]), num_classes=2)


@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_lambda_follows_the_configured_beta(alpha):
    from scipy import stats

    torch.manual_seed(0)
    lam = beta_lambdas(20000, alpha).double().numpy()
    assert stats.kstest(lam, stats.beta(alpha, alpha).cdf).pvalue > 0.01
    assert stats.kstest(lam, stats.beta(2 * alpha, 2 * alpha).cdf).pvalue < 1e-6  # the check can tell a wrong a
    assert abs(lam.var() - 1 / (4 * (2 * alpha + 1))) < 0.005


def test_mixed_features_are_unit_norm_convex_combinations():
    generator = torch.Generator().manual_seed(0)
    first = F.normalize(torch.randn(5, 8, generator=generator), dim=-1)
    second = F.normalize(torch.randn(5, 8, generator=generator), dim=-1)
    lam = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    mixed = mix_features(first, second, lam)
    torch.testing.assert_close(mixed.norm(dim=-1), torch.ones(5))
    torch.testing.assert_close(mixed[0], second[0])
    torch.testing.assert_close(mixed[-1], first[-1])
    direction = lam[:, None] * first + (1 - lam[:, None]) * second
    torch.testing.assert_close(mixed, direction / direction.norm(dim=-1, keepdim=True))


# --- the model ---------------------------------------------------------------------------------------------------
def build(clip_model, classnames, seed=0, **overrides):
    from clipbayes.trainers.dual_view import KEYS, build_dual_view_model
    torch.manual_seed(seed)
    return build_dual_view_model(model_cfg(dataset="OxfordPets"), method_node(KEYS, PREC="fp32", **overrides),
                                 clip_model, classnames)


def build_coop(clip_model, classnames, seed=0, **overrides):
    from clipbayes.trainers.coop import KEYS, build_coop_model
    torch.manual_seed(seed)
    return build_coop_model(model_cfg(dataset="OxfordPets"), method_node(KEYS, PREC="fp32", **overrides),
                            clip_model, classnames)


def perturb(model, seed=1, scale=0.05):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.learner.parameters():
            param.add_(scale * torch.randn(param.shape, generator=generator))


def learner_grads(model, loss):
    params = dict(model.learner.named_parameters())
    return dict(zip(params, torch.autograd.grad(loss, list(params.values()))))


def random_batch(clip_model, labels, seed=0):
    size = clip_model.visual.input_resolution
    images = torch.randn(len(labels), 3, size, size, generator=torch.Generator().manual_seed(seed))
    return images, torch.tensor(labels)


@pytest.fixture
def text_passes(monkeypatch):
    """The number of sequences of every text-encoder call, for models built after the fixture."""
    from clipbayes.modeling.text import TextEncoder
    sequences = []
    forward = TextEncoder.forward

    def counting(self, embeddings, eot, *args, **kwargs):
        sequences.append(embeddings.shape[0])
        return forward(self, embeddings, eot, *args, **kwargs)

    monkeypatch.setattr(TextEncoder, "forward", counting)
    return sequences


@requires_dassl
def test_gamma_zero_without_mixup_is_coop(golden_clip, golden_inputs):
    classnames, images, labels = golden_inputs["classnames"], golden_inputs["images"], golden_inputs["labels"]
    dual = build(golden_clip, classnames, GAMMA=0.0, MIXUP="none")
    coop = build_coop(golden_clip, classnames, N_CTX=4, CTX_INIT="a photo of a")
    perturb(dual)
    with torch.no_grad():
        coop.learner.ctx.copy_(dual.learner.ctx)
    ours, theirs = dual.train_loss(images, labels), coop.train_loss(images, labels)
    assert torch.equal(ours.loss, theirs.loss) and torch.equal(ours.scores, theirs.scores)
    ours_grad, coop_grad = learner_grads(dual, ours.loss), learner_grads(coop, theirs.loss)
    assert set(ours_grad) == set(coop_grad) == {"ctx"}
    assert torch.equal(ours_grad["ctx"], coop_grad["ctx"]) and ours_grad["ctx"].abs().sum() > 0
    with torch.no_grad():
        assert torch.equal(dual.predict(images), coop.predict(images))


@requires_dassl
@pytest.mark.parametrize("critic", ["cosine", "bilinear"])
def test_loss_is_ce_on_real_and_mixed_rows_plus_gamma_mi(golden_clip, golden_inputs, critic):
    classnames = golden_inputs["classnames"]
    model = build(golden_clip, classnames, GAMMA=0.5, MI_TEMPERATURE=0.1, CRITIC=critic, MIXUP_ALPHA=0.7)
    perturb(model)
    images, labels = random_batch(golden_clip, [0, 3, 0, 1, 3, 0, 2])  # classes 1 and 2: no partner
    torch.manual_seed(5)
    out = model.train_logits(images, labels)
    torch.manual_seed(5)
    rows, partners = same_class_partners(labels)
    lam = beta_lambdas(rows.numel(), 0.7)
    with torch.no_grad():
        features = model.encode_images(images)
    assert rows.tolist() == [0, 1, 2, 4, 5]
    assert torch.equal(out.labels, torch.cat([labels, labels[rows]]))
    torch.testing.assert_close(out.image_features, torch.cat([features, mix_features(features[rows],
                                                                                     features[partners], lam)]))
    soft = model.class_features()
    weight = model.learner.critic
    assert (weight is not None) == (critic == "bilinear")
    mi = slow_infonce(soft.double(), model.handcrafted_features.double(), 0.1,
                      None if weight is None else weight.double())
    torch.testing.assert_close(out.regularisers["mi"].double(), 0.5 * mi)
    torch.testing.assert_close(out.logits, model.scale() * out.image_features @ soft.t())
    torch.manual_seed(5)
    total = model.train_loss(images, labels)
    torch.testing.assert_close(total.loss, F.cross_entropy(out.logits, out.labels) + out.regularisers["mi"])
    grads = learner_grads(model, total.loss)
    assert set(grads) == ({"ctx", "critic"} if critic == "bilinear" else {"ctx"})
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads.values())


@requires_dassl
def test_batch_without_a_pair_adds_no_rows(golden_clip, golden_inputs):
    model = build(golden_clip, golden_inputs["classnames"])
    images, labels = random_batch(golden_clip, [0, 1, 2])
    out = model.train_logits(images, labels)
    assert out.logits.shape == (3, 5) and torch.equal(out.labels, labels)
    with pytest.raises(ValueError, match="labels"):
        model.train_logits(images)
    assert build(golden_clip, golden_inputs["classnames"], MIXUP="none").train_logits(images).labels is None


@requires_dassl
def test_bank_mixup_pairs_two_images_of_each_rows_class(golden_clip, golden_inputs):
    classnames = golden_inputs["classnames"]
    model = build(golden_clip, classnames, MIXUP="bank")
    images, labels = random_batch(golden_clip, [4, 1, 1])
    assert model.wants_train_features and not build(golden_clip, classnames).wants_train_features
    with pytest.raises(RuntimeError, match="attach_train_features"):
        model.train_logits(images, labels)
    with pytest.raises(ValueError, match=r"classes 3 \(1 image\)"):
        model.attach_train_features(torch.randn(9, 16), torch.tensor([0, 0, 1, 1, 2, 2, 3, 4, 4]))
    bank_labels = torch.tensor([0, 1, 2, 3, 4] * 3)
    bank_features = F.normalize(torch.randn(15, golden_clip.visual.output_dim), dim=-1)
    model.attach_train_features(bank_features, bank_labels)
    torch.manual_seed(3)
    out = model.train_logits(images, labels)
    torch.manual_seed(3)
    first, second = model.bank.pairs(labels)
    lam = beta_lambdas(3, 1.0)
    assert torch.equal(out.labels, torch.cat([labels, labels]))
    torch.testing.assert_close(out.image_features[3:], mix_features(first, second, lam))
    # each mixed row comes from two distinct bank images of its row's class
    for row, (a, b) in enumerate(zip(first, second)):
        source = [int((bank_features - z).abs().sum(-1).argmin()) for z in (a, b)]
        assert source[0] != source[1] and bank_labels[source].tolist() == [labels[row].item()] * 2


@requires_dassl
def test_handcrafted_views_are_encoded_once_per_class_set(golden_clip, golden_inputs, text_passes):
    from clipbayes.datasets.templates import ENSEMBLE_TEMPLATES
    from clipbayes.modeling.prompt_clip import handcrafted_text_features
    classnames, images, labels = golden_inputs["classnames"], golden_inputs["images"], golden_inputs["labels"]
    n_classes = len(classnames)
    model = build(golden_clip, classnames, ENSEMBLE=True, PREDICTION="ensemble")
    assert text_passes == [n_classes] * len(ENSEMBLE_TEMPLATES)  # at construction, one pass per template
    text_passes.clear()
    for _ in range(2):
        model.train_loss(images, labels)
    assert text_passes == [n_classes, n_classes]  # one pass of the C soft prompts per step, nothing else
    text_passes.clear()
    with torch.no_grad(), model.evaluation_cache():
        model.predict(images)
        model.predict(images[:1])
    assert text_passes == [n_classes]  # the soft prompts once per evaluation; the hand-crafted views are stored
    expected = handcrafted_text_features(model.text_encoder, classnames, ENSEMBLE_TEMPLATES)
    torch.testing.assert_close(model.handcrafted_features, expected)
    text_passes.clear()
    new_classes = ["sphynx", "pug"]
    build(golden_clip, new_classes, TEMPLATE="a photo of a {}, a type of pet.")
    assert text_passes == [len(new_classes)]  # another class set: its views, once


@requires_dassl
def test_ensemble_prediction_averages_soft_and_handcrafted_logits(golden_clip, golden_inputs):
    classnames, images = golden_inputs["classnames"], golden_inputs["images"]
    soft = build(golden_clip, classnames)
    ensemble = build(golden_clip, classnames, PREDICTION="ensemble", HANDCRAFTED_WEIGHT=0.25)
    with torch.no_grad():
        ensemble.learner.ctx.copy_(soft.learner.ctx)
        features = soft.encode_images(images)
        handcrafted = soft.scale() * features @ soft.handcrafted_features.t()
        torch.testing.assert_close(ensemble.predict_features(features),
                                   0.75 * soft.predict_features(features) + 0.25 * handcrafted)


@requires_dassl
@pytest.mark.parametrize("overrides,message", [
    ({"CRITIC": "bilinear", "GAMMA": 0.0}, "CRITIC 'bilinear' is trained only through the MI term"),
    ({"MIXUP": "pairs"}, "TRAINER.DUAL_VIEW.MIXUP must be one of batch | bank | none; got 'pairs'"),
    ({"MIXUP_ALPHA": 0.0}, "TRAINER.DUAL_VIEW.MIXUP_ALPHA must be a number > 0; got 0.0"),
    ({"MI_TEMPERATURE": -1.0}, "TRAINER.DUAL_VIEW.MI_TEMPERATURE must be a number > 0"),
    ({"GAMMA": -0.5}, "TRAINER.DUAL_VIEW.GAMMA must be a number >= 0"),
    ({"HANDCRAFTED_WEIGHT": 1.5}, "TRAINER.DUAL_VIEW.HANDCRAFTED_WEIGHT must be a number in [0, 1]"),
    ({"TEMPLATE": "a photo"}, "TRAINER.DUAL_VIEW.TEMPLATE must be"),
])
def test_impossible_settings_are_refused(overrides, message):
    from clipbayes.config import ConfigError, check_cfg, default_cfg
    cfg = default_cfg()
    cfg.TRAINER.DUAL_VIEW.update(overrides)
    with pytest.raises(ConfigError) as error:
        check_cfg(cfg)
    assert message in str(error.value)


# --- configs and scripts -----------------------------------------------------------------------------------------
CONFIG_DIR = osp.join(ROOT, "configs", "trainers", "DualViewPrompt")
BASE2NEW = ["imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft",
            "sun397", "dtd", "eurosat", "ucf101"]
TRANSFER_TARGETS = BASE2NEW[1:] + ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
LONG, SHORT = "vit_b16_c4_ep200_batch32_ctxv1", "vit_b16_c4_ep50_batch32_ctxv1"

# Stand-in for python: records its arguments; a training run writes its last checkpoint, every run a test result.
_STUB = """#!/bin/bash
echo "$*" >> "$STUB_LOG"
[[ $1 == train.py ]] || exit 0
args=("$@")
for i in "${!args[@]}"; do
    case ${args[i]} in
        --output-dir) out=${args[i+1]} ;;
        --config-file) cfg=${args[i+1]} ;;
    esac
done
epochs=$(sed -n 's/^ *MAX_EPOCH: *//p' "$cfg")
mkdir -p "$out/prompt_learner"
[[ " $* " == *" --eval-only "* ]] || touch "$out/prompt_learner/model.pth.tar-$epochs"
echo "* accuracy: 50.0%" >> "$out/log.txt"
"""


@requires_dassl
def test_configs_merge_with_coop_schedules():
    from clipbayes.config import default_cfg
    merged = {}
    for name in ("tiny", LONG, SHORT):
        cfg = default_cfg()
        cfg.merge_from_file(osp.join(CONFIG_DIR, f"{name}.yaml"))
        merged[name] = cfg
    assert sorted(os.listdir(CONFIG_DIR)) == sorted(f"{name}.yaml" for name in merged)
    assert merged["tiny"].MODEL.BACKBONE.NAME == "tiny-vit" and merged["tiny"].TRAINER.DUAL_VIEW.PREC == "fp32"
    for name, epochs in ((LONG, 200), (SHORT, 50)):
        cfg = merged[name]
        node = cfg.TRAINER.DUAL_VIEW
        assert cfg.MODEL.BACKBONE.NAME == "ViT-B/16" and cfg.OPTIM.MAX_EPOCH == epochs
        assert (cfg.OPTIM.NAME, cfg.OPTIM.LR, cfg.OPTIM.LR_SCHEDULER, cfg.OPTIM.WARMUP_EPOCH,
                cfg.OPTIM.WARMUP_CONS_LR, cfg.DATALOADER.TRAIN_X.BATCH_SIZE) == ("sgd", 0.002, "cosine", 1, 1e-5, 32)
        assert (node.N_CTX, node.CTX_INIT, node.PREC, node.GAMMA, node.MI_TEMPERATURE, node.MIXUP) == \
            (4, "a photo of a", "fp16", 1.0, 0.07, "batch")


def script_sandbox(tmp_path):
    return ScriptSandbox(tmp_path, "dual_view", _STUB, cleared=("CFG", "SEEDS", "PYTHON", "LOADEP"))


def test_scripts_layout_and_skip_rules(tmp_path):
    box = script_sandbox(tmp_path)
    for dataset, cfg, epochs in (("dtd", LONG, 200), ("imagenet", SHORT, 50)):
        rc, out = box.run("base2new_test.sh", dataset, "2")
        assert rc == 1 and "base2new_train.sh" in out  # no model yet
        assert box.run("base2new_train.sh", dataset, "2", "TRAINER.DUAL_VIEW.MIXUP", "bank")[0] == 0
        assert box.run("base2new_test.sh", dataset, "2")[0] == 0
        train, test = box.calls()[-2:]
        run_dir = f"output/base2new/train_base/{dataset}/shots_16/DualViewPrompt/{cfg}/seed2"
        assert f"--trainer DualViewPrompt --dataset-config-file configs/datasets/{dataset}.yaml --config-file " \
               f"configs/trainers/DualViewPrompt/{cfg}.yaml --output-dir {run_dir} " in train
        assert train.endswith("DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base TRAINER.DUAL_VIEW.MIXUP bank")
        assert f"--output-dir {run_dir.replace('train_base', 'test_new')} --model-dir {run_dir} " \
               f"--load-epoch {epochs} --eval-only DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES new" in test
        for script in ("base2new_train.sh", "base2new_test.sh"):
            rc, out = box.run(script, dataset, "2")
            assert rc == 0 and "Skip this job" in out
    assert box.run("xd_train.sh", "3")[0] == 0
    assert box.run("xd_test.sh", "imagenet_r", "3")[0] == 0
    train, test = box.calls()[-2:]
    model_dir = f"output/imagenet/DualViewPrompt/{SHORT}_16shots/seed3"
    assert f"--config-file configs/trainers/DualViewPrompt/{SHORT}.yaml --output-dir {model_dir} " in train
    assert f"--output-dir output/evaluation/DualViewPrompt/{SHORT}_16shots/imagenet_r/seed3 " \
           f"--model-dir {model_dir} --load-epoch 50 --eval-only" in test
    rc, out = box.run("base2new_train.sh", "dtd")
    assert rc == 2 and "Usage:" in out
    rc, out = box.run("base2new_train.sh", "nosuchset", "1")
    assert rc == 2 and "configs/datasets/nosuchset.yaml" in out


def test_run_all_covers_every_protocol_for_seeds(tmp_path):
    box = script_sandbox(tmp_path)
    box.env["SEEDS"] = "1 3"
    assert box.run("run_all.sh")[0] == 0
    outputs = [call.split("--output-dir ")[1].split()[0] for call in box.calls() if call.startswith("train.py")]
    expected = []
    for seed in (1, 3):
        for dataset in BASE2NEW:
            cfg = SHORT if dataset == "imagenet" else LONG
            expected += [f"output/base2new/{split}/{dataset}/shots_16/DualViewPrompt/{cfg}/seed{seed}"
                         for split in ("train_base", "test_new")]
        expected.append(f"output/imagenet/DualViewPrompt/{SHORT}_16shots/seed{seed}")
        expected += [f"output/evaluation/DualViewPrompt/{SHORT}_16shots/{d}/seed{seed}" for d in TRANSFER_TARGETS]
    assert outputs == expected
    assert box.calls()[-1] == "-m clipbayes.results output"
    assert box.run("run_all.sh")[0] == 0  # everything finished: nothing runs again
    assert sum(call.startswith("train.py") for call in box.calls()) == len(expected)


# --- end to end --------------------------------------------------------------------------------------------------
def train_py(env, *args):
    import sys
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"train.py {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@requires_dassl
def test_train_base_eval_new_and_results_table(tmp_path):
    """Train on the base classes (bank Mixup, bilinear critic), evaluate on the new ones, then the table."""
    import csv
    import io
    import re
    import sys
    from tests.datasets.miniature import build_miniature

    build_miniature(str(tmp_path / "data"), "OxfordPets")  # 5 classes: 3 base, 2 new
    env = {**os.environ, "CLIPBAYES_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    flags = ["--root", str(tmp_path / "data"), "--seed", "1", "--trainer", "DualViewPrompt",
             "--dataset-config-file", "configs/datasets/oxford_pets.yaml",
             "--config-file", "configs/trainers/DualViewPrompt/tiny.yaml"]
    opts = ["DATASET.NUM_SHOTS", "2", "TRAINER.DUAL_VIEW.MIXUP", "bank", "TRAINER.DUAL_VIEW.CRITIC", "bilinear"]
    run = "oxford_pets/shots_2/DualViewPrompt/tiny/seed1"
    base_dir, new_dir = (str(tmp_path / "output" / "base2new" / split / run) for split in ("train_base", "test_new"))
    trained = train_py(env, *flags, "--output-dir", base_dir, *opts, "DATASET.SUBSAMPLE_CLASSES", "base")
    assert "Finish training" in trained and re.search(r"\bmi [\d.]+", trained)
    assert osp.isfile(osp.join(base_dir, "prompt_learner", "model.pth.tar-2"))
    tested = train_py(env, *flags, "--output-dir", new_dir, "--model-dir", base_dir, "--load-epoch", "2",
                      "--eval-only", *opts, "DATASET.SUBSAMPLE_CLASSES", "new", "TRAINER.DUAL_VIEW.PREDICTION",
                      "ensemble")
    assert "* accuracy:" in tested
    table = subprocess.run([sys.executable, "-m", "clipbayes.results", str(tmp_path / "output"), "--format", "csv"],
                           cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    rows = {row["quantity"]: row for row in csv.DictReader(io.StringIO(table))
            if row["trainer"] == "DualViewPrompt" and row["dataset"] == "OxfordPets"}
    assert set(rows) == {"base", "new", "hm"}, table
    accuracy = [float(x) for x in re.findall(r"\* accuracy: ([\d.]+)%", trained + tested)]
    assert [float(rows["base"]["mean"]), float(rows["new"]["mean"])] == pytest.approx(accuracy[-2:], abs=0.01)

    one_shot = subprocess.run([sys.executable, "train.py", *flags, "--output-dir", str(tmp_path / "one_shot"), *opts,
                               "DATASET.NUM_SHOTS", "1", "OPTIM.MAX_EPOCH", "1"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert one_shot.returncode == 2 and "Traceback" not in one_shot.stderr, one_shot.stderr[-2000:]
    assert "error: class-wise Mixup from the feature bank needs at least 2 training images per class" in \
        one_shot.stderr
