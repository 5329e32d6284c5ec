"""PBPrompt: patch and token features against CLIP's own towers, the objective against a slow re-statement, the
KL, batching of the L samples, gradients, prediction, errors, configs and scripts.

The transport maths itself is tested in tests/test_transport.py.
"""
from __future__ import annotations

import glob
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from support import (ROOT, ScriptSandbox, assert_gradients_reach_exactly_the_learner, method_node, model_cfg,
                     requires_dassl)
from test_bayesian_prompt import _STUB as RECORDING_PYTHON

pytestmark = requires_dassl

L = 3
CONFIG_DIR = osp.join(ROOT, "configs", "trainers", "PBPrompt")


def _node(**overrides):
    from clipbayes.trainers.pbprompt import KEYS
    return method_node(KEYS, **{"N_SAMPLES_TRAIN": L, "N_SAMPLES_TEST": L, **overrides})


def build(clip_model, classnames, seed=0, chunk_size=0, backbone="tiny-vit", **overrides):
    from clipbayes.trainers.pbprompt import build_pbprompt_model
    torch.manual_seed(seed)
    return build_pbprompt_model(model_cfg(chunk_size, backbone), _node(**overrides), clip_model, classnames)


def perturb(model, seed=1, scale=0.05):
    """Move every learned parameter off its (partly zero) initial value, so that no gradient vanishes."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.learner.parameters():
            param.add_(scale * torch.randn(param.shape, generator=generator))


def noise_for(model, n_samples=L, seed=2):
    n_classes, width = model.name_embeddings.shape
    return torch.randn(n_classes, n_samples, width, generator=torch.Generator().manual_seed(seed))


def assert_close(actual, expected, rtol=1e-4, atol=1e-5):
    torch.testing.assert_close(actual.float(), expected.float(), rtol=rtol, atol=atol)


@pytest.fixture(scope="module")
def tiny_rn():
    from clipbayes.modeling.clip_loader import build_tiny_clip
    return build_tiny_clip("tiny-rn").requires_grad_(False)


# --- the frozen towers, read once ----------------------------------------------------------------------------------
def test_vit_patch_features_equal_a_slow_pass(golden_clip, golden_inputs):
    from clipbayes.modeling.visual import encode_image_tokens
    images = golden_inputs["images"]
    visual = golden_clip.visual
    captured = {}
    hook = visual.transformer.register_forward_hook(lambda m, i, out: captured.__setitem__("x", out))
    expected_global = visual(images)  # CLIP's own forward
    hook.remove()
    tokens = captured["x"].permute(1, 0, 2)  # (B, 1 + N, width)
    image, patches = encode_image_tokens(visual, images)
    n_patches = (visual.input_resolution // visual.conv1.kernel_size[0]) ** 2
    assert patches.shape == (images.shape[0], n_patches, visual.output_dim)
    assert_close(image, expected_global)
    for b in range(images.shape[0]):
        for i in range(n_patches):
            assert_close(patches[b, i], visual.ln_post(tokens[b, 1 + i]) @ visual.proj)


def test_resnet_spatial_features_equal_a_slow_pass(tiny_rn):
    from clipbayes.modeling.visual import encode_image_tokens
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    visual = tiny_rn.visual
    captured = {}
    hook = visual.attnpool.register_forward_hook(lambda m, inputs, out: captured.__setitem__("x", inputs[0]))
    expected_global = visual(images)
    hook.remove()
    grid = captured["x"]  # (B, C, 7, 7): the last feature map
    pool = visual.attnpool
    image, patches = encode_image_tokens(visual, images)
    assert patches.shape == (2, 49, visual.output_dim)
    assert_close(image, expected_global)
    for b in range(2):
        for i in range(49):
            token = grid[b, :, i // 7, i % 7] + pool.positional_embedding[1 + i]
            assert_close(patches[b, i], pool.c_proj(pool.v_proj(token)))


def official_prompt_features(clip_model, classnames, ctx, token_set="prompt"):
    """Unit-norm EOT features (C, E) and token features of "[SOS] ctx_c name_c." for class-specific ctx (C, b, D),
    with all 77 tokens through CLIP's own transformer, one class at a time: the prompt tokens (C, b, E), or with
    ``token_set`` "with_name" a list of each class's positions 0 .. EOT - 2 ((EOT - 1, E) each)."""
    from clipbayes.compat import import_clip
    features, tokens_out = [], []
    for c, name in enumerate(classnames):
        ids = import_clip().tokenize([f"{' '.join(['X'] * ctx.shape[1])} {name.replace('_', ' ')}."])
        emb = clip_model.token_embedding(ids)
        x = torch.cat([emb[:, :1], ctx[c:c + 1], emb[:, 1 + ctx.shape[1]:]], dim=1) + clip_model.positional_embedding
        x = clip_model.ln_final(clip_model.transformer(x.permute(1, 0, 2)).permute(1, 0, 2))[0]
        features.append(F.normalize(x[ids.argmax(-1)[0]] @ clip_model.text_projection, dim=-1))
        read = range(1, 1 + ctx.shape[1]) if token_set == "prompt" else range(int(ids.argmax(-1)) - 1)
        tokens_out.append(torch.stack([F.normalize(x[k] @ clip_model.text_projection, dim=-1) for k in read]))
    return torch.stack(features), (torch.stack(tokens_out) if token_set == "prompt" else tokens_out)


@pytest.mark.parametrize("chunk_size", [0, 4])
def test_token_features_come_from_the_same_text_pass_and_equal_a_slow_pass(golden_clip, golden_inputs, chunk_size,
                                                                           monkeypatch):
    classnames = golden_inputs["classnames"]
    model = build(golden_clip, classnames, chunk_size=chunk_size, TRANSPORT_TOKENS="prompt")
    ctx = 0.02 * torch.randn(2, len(classnames), 4, model.name_embeddings.shape[1])
    calls = []
    encode = model.text_encoder._encode
    monkeypatch.setattr(model.text_encoder, "_encode", lambda x, eot: calls.append(x.shape[0]) or encode(x, eot))
    features, tokens = model.encode_prompt_tokens(ctx)
    assert sum(calls) == 2 * len(classnames)  # each sequence through the transformer once
    for l in range(2):
        expected_features, expected_tokens = official_prompt_features(golden_clip, classnames, ctx[l])
        assert_close(features[l], expected_features)
        assert_close(tokens[l], expected_tokens)


# --- the objective ---------------------------------------------------------------------------------------------------
def slow_objective(model, clip_model, images, labels, eps, detach=True, token_set="prompt", navigator="nearest"):
    """-(1/B) sum_b log mean_l p_l(y_b) + beta KL + eta mean_{b,l} sum_c p_l(c | x_b) CT(U_b, G_{l,c}), from CLIP's
    own towers (ViT patch tokens read by a hook), one sample, image and class at a time, navigator weights
    exp(-c / tau) (nearest) or exp(-(1 - c) / tau) (farthest), tau the learner's. Returns (loss, beta KL)."""
    learner, e = model.learner, model.name_embeddings
    tau = learner.navigator_temperature.log_temperature.exp()
    visual = clip_model.visual
    captured = {}
    hook = visual.transformer.register_forward_hook(lambda m, i, out: captured.__setitem__("x", out))
    f = F.normalize(visual(images), dim=-1)
    hook.remove()
    patches = F.normalize(visual.ln_post(captured["x"].permute(1, 0, 2)[:, 1:]) @ visual.proj, dim=-1)
    mu, log_var = learner.mean_net(e), learner.log_var_net(e)
    probs, transport = [], 0.0
    for l in range(eps.shape[1]):
        r = mu + eps[:, l] * log_var.exp().sqrt()  # (C, D)
        ctx = torch.stack([learner.generator(r[c]) for c in range(len(e))])
        text, tokens = official_prompt_features(clip_model, model.classnames, ctx, token_set)
        p = (clip_model.logit_scale.exp() * f @ text.t()).softmax(-1)
        probs.append(p[torch.arange(len(labels)), labels])
        weights = p.detach() if detach else p
        for b in range(images.shape[0]):
            for c in range(len(e)):
                cost = 1 - patches[b] @ tokens[c].t()  # (N, K)
                affinity = -cost if navigator == "nearest" else cost - 1
                forward = sum((affinity[i] / tau).softmax(0) @ cost[i] for i in range(cost.shape[0])) / cost.shape[0]
                backward = sum((affinity[:, k] / tau).softmax(0) @ cost[:, k]
                               for k in range(cost.shape[1])) / cost.shape[1]
                transport = transport + weights[b, c] * (forward + backward)
    nll = -torch.stack(probs).mean(0).log().mean()
    kl = kl_divergence(Normal(mu, log_var.exp().sqrt()), Normal(e, torch.ones_like(e))).mean(-1).mean()
    n = images.shape[0] * eps.shape[1]
    return nll + model.kl_weight * kl + model.transport_weight * transport / n, model.kl_weight * kl


@pytest.mark.parametrize("detach, token_set, navigator, learned", [
    (True, "with_name", "farthest", True), (False, "with_name", "farthest", True),
    (True, "prompt", "nearest", False), (False, "prompt", "nearest", False)])
def test_loss_equals_slow_objective(golden_clip, golden_inputs, detach, token_set, navigator, learned):
    from clipbayes.objectives import likelihood_loss
    classnames, images, labels = golden_inputs["classnames"], golden_inputs["images"], golden_inputs["labels"]
    model = build(golden_clip, classnames, DETACH_CLASS_WEIGHTS=detach, TRANSPORT_WEIGHT=0.5, INIT_LOG_VAR=-4.0,
                  TRANSPORT_TOKENS=token_set, CT_NAVIGATOR=navigator, CT_LEARN_TEMPERATURE=learned)
    perturb(model)
    eps = noise_for(model)
    output = model.train_logits(images, noise=eps)
    assert output.logits.shape == (L, images.shape[0], len(classnames))
    assert set(output.regularisers) == {"kl", "transport"}
    loss = likelihood_loss(output.logits, labels, output.regularisers).loss
    expected, kl = slow_objective(model, golden_clip, images, labels, eps, detach, token_set, navigator)
    assert_close(loss, expected)
    assert_close(output.regularisers["kl"], kl)
    params = dict(model.learner.named_parameters())
    ours = torch.autograd.grad(loss, list(params.values()))
    reference = torch.autograd.grad(expected, list(params.values()))
    for a, b in zip(ours, reference):  # slack relative to the largest entry: some entries are ~0
        assert_close(a, b, rtol=1e-3, atol=1e-4 * float(b.abs().max()))


def test_kl_closed_form_against_torch_distributions(golden_clip, golden_inputs):
    model = build(golden_clip, golden_inputs["classnames"], KL_WEIGHT=1.0)
    perturb(model, scale=0.3)
    mu, log_var = model.learner.posterior(model.name_embeddings)
    e = model.name_embeddings
    expected = kl_divergence(Normal(mu, (0.5 * log_var).exp()), Normal(e, torch.ones_like(e))).mean()
    output = model.train_logits(golden_inputs["images"][:1], noise=noise_for(model))
    assert_close(output.regularisers["kl"], expected)


def test_name_embeddings_are_mean_token_embeddings(golden_clip, golden_inputs):
    from clipbayes.compat import import_clip
    classnames = golden_inputs["classnames"]
    model = build(golden_clip, classnames)
    clip = import_clip()
    for c, name in enumerate(classnames):
        ids = clip.clip._tokenizer.encode(name.replace("_", " "))
        assert_close(model.name_embeddings[c], golden_clip.token_embedding.weight[ids].mean(0))


@pytest.mark.parametrize("transport", ["ct", "sinkhorn"])
def test_l_samples_in_one_pass_equal_l_separate_passes(golden_clip, golden_inputs, transport, monkeypatch):
    classnames, images = golden_inputs["classnames"], golden_inputs["images"]
    model = build(golden_clip, classnames, chunk_size=5, TRANSPORT=transport, TRANSPORT_CLASS_CHUNK=1)
    perturb(model)
    eps = noise_for(model)
    sequences = []
    forward = model.text_encoder.forward
    monkeypatch.setattr(model.text_encoder, "forward", lambda x, eot: sequences.append(x.shape[0]) or forward(x, eot))
    together = model.train_logits(images, noise=eps)
    assert sequences == [L * len(classnames)]  # one batched text pass of L x C prompts
    singles = [model.train_logits(images, noise=eps[:, l:l + 1]) for l in range(L)]
    assert_close(together.logits, torch.cat([s.logits for s in singles]))
    assert_close(together.regularisers["transport"],
                 torch.stack([s.regularisers["transport"] for s in singles]).mean())
    assert_close(together.regularisers["kl"], singles[0].regularisers["kl"])


def test_image_features_of_the_shared_pass_equal_encode_images(golden_clip, golden_inputs):
    model = build(golden_clip, golden_inputs["classnames"])
    images = golden_inputs["images"]
    output = model.train_logits(images, noise=noise_for(model))
    assert_close(output.image_features, model.encode_images(images))


@pytest.mark.parametrize("overrides", [dict(), dict(TRANSPORT="sinkhorn"), dict(TRANSPORT="none"),
                                       dict(DETACH_CLASS_WEIGHTS=False)])
def test_gradients_reach_exactly_the_learned_parameters(golden_clip, golden_inputs, overrides):
    model = build(golden_clip, golden_inputs["classnames"], **overrides)
    model.requires_grad_(False)
    model.learner.requires_grad_(True)
    perturb(model)
    model.train_loss(golden_inputs["images"], golden_inputs["labels"]).loss.backward()
    assert_gradients_reach_exactly_the_learner(model)


def test_initial_prompts_are_ctx_init_up_to_the_posterior_noise(golden_clip, golden_inputs):
    from clipbayes.modeling.prompt_clip import initial_context
    model = build(golden_clip, golden_inputs["classnames"])
    mu, log_var = model.learner.posterior(model.name_embeddings)
    assert torch.equal(mu, torch.zeros_like(mu)) and torch.equal(log_var, torch.full_like(log_var, -8.0))
    ctx = model.learner.generator(torch.zeros_like(mu).unsqueeze(0))
    assert_close(ctx[0], initial_context(model.text_encoder, 4, "a photo of a").expand_as(ctx[0]))


def test_resnet_backbone_trains(tiny_rn, golden_inputs):
    model = build(tiny_rn, golden_inputs["classnames"], backbone="tiny-rn")
    perturb(model)
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    result = model.train_loss(images, torch.tensor([0, 1]))
    assert torch.isfinite(result.loss) and set(result.parts) >= {"nll", "kl", "transport"}


# --- prediction ----------------------------------------------------------------------------------------------------
def test_mc_prediction_is_reproducible_and_the_log_mean_of_its_samples(golden_clip, golden_inputs):
    images, n_classes = golden_inputs["images"], len(golden_inputs["classnames"])
    model = build(golden_clip, golden_inputs["classnames"], INIT_LOG_VAR=-2.0)
    perturb(model)
    with torch.no_grad():
        torch.manual_seed(11)
        first, second = model.predict(images), model.predict(images)
        torch.manual_seed(11)
        again = model.predict(images)
        assert first.shape == (images.shape[0], n_classes)
        assert not torch.allclose(first, second) and torch.equal(first, again)
        eps = noise_for(model)
        mixture = model.predict(images, noise=eps)
        per_sample = torch.stack([model.predict(images, noise=eps[:, l:l + 1]) for l in range(L)])
    assert_close(mixture.softmax(-1), per_sample.softmax(-1).mean(0))


@pytest.mark.parametrize("prediction", ["mean", "mc"])
def test_cached_predictions_encode_the_prompts_once_per_evaluation(golden_clip, golden_inputs, prediction,
                                                                   monkeypatch):
    images, n_classes = golden_inputs["images"], len(golden_inputs["classnames"])
    model = build(golden_clip, golden_inputs["classnames"], PREDICTION=prediction)
    perturb(model)
    sequences = []
    forward = model.text_encoder.forward
    monkeypatch.setattr(model.text_encoder, "forward", lambda x, eot: sequences.append(x.shape[0]) or forward(x, eot))
    with torch.no_grad(), model.evaluation_cache(mc_draws="per_evaluation"):
        whole, part = model.predict(images), model.predict(images[1:])
    assert sequences == [(1 if prediction == "mean" else L) * n_classes]
    assert_close(part, whole[1:])
    if prediction == "mean":
        model.prediction = "mc"
        zero = torch.zeros(n_classes, 1, model.name_embeddings.shape[1])
        with torch.no_grad():
            assert_close(whole, model.predict(images, noise=zero))  # MC at eps = 0 is r = mu


# --- errors ------------------------------------------------------------------------------------------------------------
def test_transport_without_patch_features_is_refused(golden_inputs):
    from clipbayes.config import ConfigError
    from clipbayes.modeling.clip_loader import build_tiny_clip

    class PlainEncoder(torch.nn.Module):
        output_dim = 64

        def forward(self, images):
            return images.flatten(1)[:, :64]

    clip_model = build_tiny_clip("tiny-vit")
    clip_model.visual = PlainEncoder()
    with pytest.raises(ConfigError, match="TRANSPORT 'ct' needs patch features"):
        build(clip_model, golden_inputs["classnames"])
    build(clip_model, golden_inputs["classnames"], TRANSPORT="none")  # fine without the regulariser


def test_generator_heads_must_divide_the_width(golden_clip, golden_inputs):
    from clipbayes.config import ConfigError
    with pytest.raises(ConfigError, match="GENERATOR_HEADS"):
        build(golden_clip, golden_inputs["classnames"], GENERATOR_HEADS=3)


# --- configs and scripts ------------------------------------------------------------------------------------------
def test_configs_reproduce_the_paper_setup():
    from clipbayes.config import default_cfg
    files = sorted(glob.glob(osp.join(CONFIG_DIR, "*.yaml")))
    assert [osp.basename(f) for f in files] == ["rn50_c4_ep10_batch1.yaml", "tiny.yaml", "vit_b16_c4_ep10_batch1.yaml"]
    merged = {}
    for path in files:
        cfg = default_cfg()
        cfg.merge_from_file(path)
        merged[osp.basename(path)] = cfg
    tiny = merged["tiny.yaml"]
    assert (tiny.MODEL.BACKBONE.NAME, tiny.TRAINER.PBPROMPT.PREC) == ("tiny-vit", "fp32")
    for name, backbone in (("vit_b16_c4_ep10_batch1.yaml", "ViT-B/16"), ("rn50_c4_ep10_batch1.yaml", "RN50")):
        cfg = merged[name]
        node = cfg.TRAINER.PBPROMPT
        assert cfg.MODEL.BACKBONE.NAME == backbone
        assert (node.N_CTX, node.N_SAMPLES_TRAIN, node.N_SAMPLES_TEST, node.TRANSPORT) == (4, 20, 20, "ct")
        assert (cfg.OPTIM.NAME, cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH, cfg.OPTIM.LR_SCHEDULER) == \
            ("sgd", 0.002, 10, "cosine")
        assert (cfg.OPTIM.WARMUP_EPOCH, cfg.OPTIM.WARMUP_TYPE, cfg.OPTIM.WARMUP_CONS_LR) == (1, "constant", 1e-5)
        assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 1


XD_TARGETS = ["caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft", "sun397",
              "dtd", "eurosat", "ucf101"]
DG_TARGETS = ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
CFG = "vit_b16_c4_ep10_batch1"


def script_sandbox(tmp_path):
    return ScriptSandbox(tmp_path, "pbprompt", RECORDING_PYTHON,
                         cleared=("CFG", "SAMPLES", "EPOCHS", "SEEDS", "PYTHON"))


def test_scripts_cover_the_four_protocols(tmp_path):
    box = script_sandbox(tmp_path)
    assert box.run("fewshot_train.sh", "dtd", "4", "2")[0] == 0
    assert box.run("base2new_train.sh", "dtd", "2")[0] == 0
    assert box.run("base2new_test.sh", "dtd", "2")[0] == 0
    assert box.run("xd_train.sh", "3")[0] == 0
    assert box.run("xd_test.sh", "imagenet_r", "3")[0] == 0
    fewshot, train, test, xd_train, xd_test = box.calls()
    assert f"--output-dir output/dtd/PBPrompt/{CFG}_4shots/seed2 " in fewshot
    assert fewshot.endswith("DATASET.NUM_SHOTS 4 OPTIM.MAX_EPOCH 10")
    run = f"dtd/shots_16/PBPrompt/{CFG}/seed2"
    assert f"--output-dir output/base2new/train_base/{run} " in train
    assert train.endswith("DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base OPTIM.MAX_EPOCH 10")
    assert f"--output-dir output/base2new/test_new/{run} --model-dir output/base2new/train_base/{run} " \
           f"--load-epoch 10 --eval-only" in test
    assert f"--output-dir output/imagenet/PBPrompt/{CFG}_16shots/seed3 " in xd_train
    assert f"--output-dir output/evaluation/PBPrompt/{CFG}_16shots/imagenet_r/seed3 " in xd_test
    assert box.run("fewshot_train.sh", "dtd", "0", "2")[0] == 2  # SHOTS must be a positive integer


def test_run_all_covers_every_table(tmp_path):
    box = script_sandbox(tmp_path)
    box.env["SEEDS"] = "1"
    assert box.run("run_all.sh")[0] == 0
    outputs = [call.split("--output-dir ")[1].split()[0] for call in box.calls() if call.startswith("train.py")]
    datasets = ["imagenet"] + XD_TARGETS
    expected = [f"output/{d}/PBPrompt/{CFG}_{k}shots/seed1" for d in datasets for k in (1, 2, 4, 8, 16)]
    for d in datasets:
        expected += [f"output/base2new/{split}/{d}/shots_16/PBPrompt/{CFG}/seed1" for split in ("train_base",
                                                                                               "test_new")]
    # the ImageNet training of the cross-dataset protocol is the 16-shot few-shot run on ImageNet: not run twice
    expected += [f"output/evaluation/PBPrompt/{CFG}_16shots/{d}/seed1" for d in XD_TARGETS + DG_TARGETS]
    assert outputs == expected
    assert box.calls()[-1] == "-m clipbayes.results output --published"


# --- end to end: train on the base classes, evaluate on the new ones, results table ----------------------------------
def test_train_base_eval_only_new_and_results(tmp_path):
    import csv
    import io
    import os
    import subprocess
    import sys

    from tests.datasets.miniature import build_miniature

    root = tmp_path / "data"
    build_miniature(str(root), "OxfordPets")
    env = {**os.environ, "CLIPBAYES_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    run = "OxfordPets/shots_2/PBPrompt/tiny/seed1"
    common = ["--root", str(root), "--seed", "1", "--trainer", "PBPrompt",
              "--dataset-config-file", "configs/datasets/oxford_pets.yaml",
              "--config-file", "configs/trainers/PBPrompt/tiny.yaml"]
    opts = ["DATASET.NUM_SHOTS", "2", "OPTIM.MAX_EPOCH", "1"]

    def train(*args):
        proc = subprocess.run([sys.executable, "train.py", *common, *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return proc.stdout

    base_dir = str(tmp_path / "out" / "base2new" / "train_base" / run)
    trained = train("--output-dir", base_dir, *opts, "DATASET.SUBSAMPLE_CLASSES", "base")
    assert "transport" in trained and "kl" in trained  # both regularisers are logged
    assert osp.isfile(osp.join(base_dir, "prompt_learner", "model.pth.tar-1"))
    tested = train("--output-dir", str(tmp_path / "out" / "base2new" / "test_new" / run), "--eval-only",
                   "--model-dir", base_dir, "--load-epoch", "1", *opts, "DATASET.SUBSAMPLE_CLASSES", "new")
    assert "* accuracy:" in tested
    table = subprocess.run([sys.executable, "-m", "clipbayes.results", str(tmp_path / "out"), "--format", "csv"],
                           cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    rows = [row for row in csv.DictReader(io.StringIO(table)) if row.get("trainer") == "PBPrompt"]
    assert rows, table
