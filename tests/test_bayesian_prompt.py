"""BayesianPrompt: the official golden vectors, slow re-statements of the official computation, batching, sampling.

The references below re-state the official code path (saic-fi/Bayesian-Prompt-Learning, trainers/vpt.py) with
CLIP's own modules: full 77-token prompts, one text pass per Monte Carlo sample, r = mu + eps * sqrt(exp(l)), the
KL from torch.distributions.
"""
from __future__ import annotations

import glob
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from support import (ROOT, ScriptSandbox, assert_gradients_reach_exactly_the_learner, load_golden, method_node,
                     model_cfg, requires_dassl)

pytestmark = requires_dassl

L = 4
CONFIG_DIR = osp.join(ROOT, "configs", "trainers", "BayesianPrompt")
SCRIPT_DIR = osp.join(ROOT, "scripts", "bayesian_prompt")


def _node(**overrides):
    from clipbayes.trainers.bayesian_prompt import KEYS
    return method_node(KEYS, **{"N_SAMPLES_TRAIN": L, "N_SAMPLES_TEST": L, **overrides})


def build(clip_model, classnames, seed=0, chunk_size=0, **overrides):
    from clipbayes.trainers.bayesian_prompt import build_bayesian_prompt_model
    torch.manual_seed(seed)
    return build_bayesian_prompt_model(model_cfg(chunk_size), _node(**overrides), clip_model, classnames)


def perturb(model, seed=1, scale=0.05):
    """Move every learned parameter away from its initial value, so no gradient or term vanishes by symmetry."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.learner.parameters():
            param.add_(scale * torch.randn(param.shape, generator=generator))


def train_loss(model, images, labels, noise):
    """The trainer's loss (the shared likelihood loss on ``train_logits``) with the residual noise ``noise``."""
    from clipbayes.modeling.prompt_clip import likelihood_loss
    out = model.train_logits(images, noise=noise)
    return likelihood_loss(out.logits, labels, out.regularisers)


def learner_grads(model, loss):
    params = dict(model.learner.named_parameters())
    return dict(zip(params, torch.autograd.grad(loss, list(params.values()))))


def count_text_sequences(model, monkeypatch):
    """A list that receives the number of sequences of every text-encoder call of ``model``."""
    sequences = []
    encode = model.text_encoder.forward

    def counting(embeddings, eot, *args, **kwargs):
        sequences.append(embeddings.shape[0])
        return encode(embeddings, eot, *args, **kwargs)

    monkeypatch.setattr(model.text_encoder, "forward", counting)
    return sequences


def assert_close(actual, expected, rtol=1e-4, atol=1e-5):
    torch.testing.assert_close(actual.float(), expected.float(), rtol=rtol, atol=atol)


# --- the official computation, re-stated slowly ------------------------------------------------------------------
def official_text_features(clip_model, classnames, ctx):
    """Unit-norm (C, E) features of "[SOS] ctx (M, D) name." with all 77 tokens, as the official TextEncoder."""
    from clipbayes.compat import import_clip
    names = [name.replace("_", " ") for name in classnames]
    tokens = import_clip().tokenize([f"{' '.join(['X'] * ctx.shape[0])} {name}." for name in names])
    embedding = clip_model.token_embedding(tokens)
    x = torch.cat([embedding[:, :1], ctx.expand(len(names), -1, -1), embedding[:, 1 + ctx.shape[0]:]], dim=1)
    x = x + clip_model.positional_embedding
    x = clip_model.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
    x = clip_model.ln_final(x)
    return F.normalize(x[torch.arange(len(names)), tokens.argmax(-1)] @ clip_model.text_projection, dim=-1)


def official_objective(clip_model, classnames, images, labels, ctx, mu, log_var, eps, kl_weight=1e-3):
    """-(1/B) sum_b log((1/L) sum_l p_l(y_b | x_b)) + kl_weight * mean_d KL, one sample at a time.

    mu, log_var: (S, D) with S = 1 (unconditional, shared by the batch) or S = B = 1 (conditional); eps (L, D).
    """
    image_features = F.normalize(clip_model.encode_image(images), dim=-1)
    probs = []
    for eps_l in eps:
        residual = mu + eps_l * log_var.exp().sqrt()  # (1, D), added to every context token
        text = official_text_features(clip_model, classnames, ctx + residual)
        logits = clip_model.logit_scale.exp() * image_features @ text.t()
        probs.append(logits.softmax(-1)[torch.arange(len(labels)), labels])
    nll = -torch.stack(probs).mean(0).log().mean()
    kl = kl_divergence(Normal(mu, log_var.exp().sqrt()), Normal(torch.zeros_like(mu), torch.ones_like(mu)))
    return nll + kl_weight * kl.mean(-1).mean()


def official_inference_block(net, features):
    """The official InferenceBlock: Linear - ELU - Linear - ELU - Linear, applied with ``net``'s weights."""
    first, second, third = (layer for layer in net if isinstance(layer, torch.nn.Linear))
    hidden = F.elu(F.linear(features, first.weight, first.bias))
    hidden = F.elu(F.linear(hidden, second.weight, second.bias))
    return F.linear(hidden, third.weight, third.bias)


def official_conditional_objective(model, clip_model, classnames, image, label, eps):
    """The official cocoopvpt training loss at batch 1 (image (1, 3, H, W)), with the learner's weights."""
    features = F.normalize(clip_model.encode_image(image), dim=-1)
    mu = official_inference_block(model.learner.mean_net, features)
    log_var = official_inference_block(model.learner.log_var_net, features)
    return official_objective(clip_model, classnames, image, label, model.learner.ctx, mu, log_var, eps)


# --- golden vectors ----------------------------------------------------------------------------------------------
def test_unconditional_reproduces_official_golden(golden_clip, golden_inputs):
    case = load_golden("bpl_uncond_L3.pt")
    conf = case["config"]
    assert conf["VPT_TYPE"] == "coopvpt" and conf["KL_WEIGHT"] == 1e-3
    model = build(golden_clip, golden_inputs["classnames"], N_CTX=conf["N_CTX"], CTX_INIT=conf["CTX_INIT"],
                  N_SAMPLES_TRAIN=conf["L"], N_SAMPLES_TEST=conf["L"])
    official_names = {"ctx": "ctx", "mu": "mean_posterior", "log_var": "std_posterior"}
    model.learner.load_state_dict({ours: case["params"][theirs] for ours, theirs in official_names.items()})

    eps_train = case["noise_train"][0].transpose(0, 1)  # official (L, 1, D) -> ours (S=1, L, D)
    loss, _, _ = train_loss(model, case["images"], case["labels"], noise=eps_train)
    assert_close(loss, case["expected"]["loss"])
    grads = learner_grads(model, loss)
    for ours, theirs in official_names.items():
        assert_close(grads[ours], case["expected"]["grads"][theirs])

    with torch.no_grad():
        log_probs = model.predict(case["images"], noise=case["noise_eval"][0].transpose(0, 1))
    assert_close(log_probs, case["expected"]["eval_log_probs"])


# --- the objective against the slow official re-statement ---------------------------------------------------------
def test_unconditional_loss_equals_slow_official_objective(golden_clip, golden_inputs):
    classnames, images, labels = golden_inputs["classnames"], golden_inputs["images"], golden_inputs["labels"]
    model = build(golden_clip, classnames, INIT_LOGVAR_RANGE=(-3.0, -1.0))
    perturb(model)
    eps = torch.randn(1, L, model.learner.mu.shape[-1], generator=torch.Generator().manual_seed(5))

    loss, scores, parts = train_loss(model, images, labels, noise=eps)
    learner = model.learner
    expected = official_objective(golden_clip, classnames, images, labels, learner.ctx, learner.mu,
                                  learner.log_var, eps[0])
    assert images.shape[0] == 3 and scores.shape == (3, len(classnames))
    assert_close(loss, expected)
    assert_close(loss, torch.tensor(parts["nll"] + parts["kl"]))  # "kl" is the weighted KL, 1e-3 * KL (floats)
    ours, reference = learner_grads(model, loss), learner_grads(model, expected)
    for name in ("ctx", "mu", "log_var"):
        assert ours[name].abs().sum() > 0
        assert_close(ours[name], reference[name])


def test_conditional_at_batch_one_equals_official_path(golden_clip, golden_inputs):
    classnames = golden_inputs["classnames"]
    image, label = golden_inputs["images"][:1], golden_inputs["labels"][:1]
    model = build(golden_clip, classnames, POSTERIOR="conditional")
    eps = torch.randn(1, L, model.learner.ctx.shape[-1], generator=torch.Generator().manual_seed(3))

    loss, _, _ = train_loss(model, image, label, noise=eps)
    expected = official_conditional_objective(model, golden_clip, classnames, image, label, eps[0])
    assert_close(loss, expected)
    ours, reference = learner_grads(model, loss), learner_grads(model, expected)
    assert set(ours) == {f"{net}.{i}.{kind}" for net in ("mean_net", "log_var_net") for i in (0, 2, 4)
                         for kind in ("weight", "bias")} | {"ctx"}
    for name in ours:
        assert_close(ours[name], reference[name])


@pytest.mark.parametrize("chunk_size", [0, 7])
def test_conditional_batch_equals_separate_images(golden_clip, golden_inputs, chunk_size):
    classnames, images, labels = golden_inputs["classnames"], golden_inputs["images"], golden_inputs["labels"]
    model = build(golden_clip, classnames, chunk_size=chunk_size, POSTERIOR="conditional")
    batch = images.shape[0]
    eps = torch.randn(batch, L, model.learner.ctx.shape[-1], generator=torch.Generator().manual_seed(4))

    loss, scores, _ = train_loss(model, images, labels, noise=eps)
    singles = [train_loss(model, images[b:b + 1], labels[b:b + 1], noise=eps[b:b + 1]) for b in range(batch)]
    assert_close(loss, torch.stack([single[0] for single in singles]).mean())
    assert_close(scores, torch.cat([single[1] for single in singles]))
    batch_grads = learner_grads(model, loss)
    single_grads = [learner_grads(model, single[0]) for single in singles]
    for name, grad in batch_grads.items():
        assert_close(grad, torch.stack([g[name] for g in single_grads]).mean(0))

    with torch.no_grad():
        predicted = model.predict(images, noise=eps)
        separately = torch.cat([model.predict(images[b:b + 1], noise=eps[b:b + 1]) for b in range(batch)])
    assert_close(predicted, separately)


# --- what is learned ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("posterior", ["unconditional", "conditional"])
def test_gradients_reach_exactly_the_learned_parameters(golden_clip, golden_inputs, posterior):
    model = build(golden_clip, golden_inputs["classnames"], POSTERIOR=posterior)
    loss, _, _ = model.train_loss(golden_inputs["images"], golden_inputs["labels"])
    loss.backward()
    assert_gradients_reach_exactly_the_learner(model)


def test_initial_posterior(golden_clip, golden_inputs):
    official = build(golden_clip, golden_inputs["classnames"])
    assert torch.equal(official.learner.mu, torch.zeros_like(official.learner.mu))
    log_var = official.learner.log_var
    assert log_var.shape == (1, official.learner.ctx.shape[-1])
    assert 0 <= log_var.min() < log_var.max() < 1  # U[0, 1), the official init
    constant = build(golden_clip, golden_inputs["classnames"], INIT_LOGVAR_RANGE=(-10.0, -10.0))
    assert torch.equal(constant.learner.log_var, torch.full_like(log_var, -10.0))
    conditional = build(golden_clip, golden_inputs["classnames"], POSTERIOR="conditional")
    vis_dim = golden_clip.visual.output_dim
    assert conditional.learner.mean_net[0].weight.shape == (vis_dim // 2, vis_dim)


@pytest.mark.parametrize("overrides", [dict(POSTERIOR="amortised"), dict(PREDICTION="mode"),
                                       dict(N_SAMPLES_TRAIN=0), dict(INIT_LOGVAR_RANGE=(1.0, 0.0))])
def test_invalid_settings_are_refused(overrides):
    from clipbayes.config import ConfigError, check_cfg, default_cfg
    cfg = default_cfg()
    cfg.TRAINER.BAYESIAN_PROMPT.update(overrides)
    (key,) = overrides
    with pytest.raises(ConfigError, match=f"TRAINER.BAYESIAN_PROMPT.{key} must be"):
        check_cfg(cfg)


# --- prediction ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("posterior", ["unconditional", "conditional"])
def test_mc_prediction_is_log_mean_of_fresh_samples(golden_clip, golden_inputs, posterior):
    images, n_classes = golden_inputs["images"], len(golden_inputs["classnames"])
    model = build(golden_clip, golden_inputs["classnames"], POSTERIOR=posterior)
    with torch.no_grad():
        torch.manual_seed(11)
        first, second = model.predict(images), model.predict(images)
        torch.manual_seed(11)
        again = model.predict(images)
        assert first.shape == (images.shape[0], n_classes)
        assert not torch.allclose(first, second)  # each call draws new residuals
        assert torch.equal(first, again)  # ... from the seeded generator

        groups = images.shape[0] if posterior == "conditional" else 1
        eps = torch.randn(groups, L, model.learner.ctx.shape[-1])
        mixture = model.predict(images, noise=eps)
        per_sample = torch.stack([model.predict(images, noise=eps[:, l:l + 1]) for l in range(L)])
    assert_close(per_sample.exp().sum(-1), torch.ones(L, images.shape[0]))
    assert_close(mixture, per_sample.exp().mean(0).log())


@pytest.mark.parametrize("posterior", ["unconditional", "conditional"])
def test_one_text_pass_per_batch(golden_clip, golden_inputs, posterior, monkeypatch):
    images, labels, n_classes = golden_inputs["images"], golden_inputs["labels"], len(golden_inputs["classnames"])
    model = build(golden_clip, golden_inputs["classnames"], POSTERIOR=posterior, N_SAMPLES_TEST=L + 1)
    sequences = count_text_sequences(model, monkeypatch)
    groups = images.shape[0] if posterior == "conditional" else 1
    model.train_loss(images, labels)
    assert sequences == [groups * L * n_classes]
    sequences.clear()
    with torch.no_grad(), model.evaluation_cache():
        model.predict(images)
        model.predict(images[:2])
    per_batch = [2 * (L + 1) * n_classes] if posterior == "conditional" else [(L + 1) * n_classes]
    assert sequences == [groups * (L + 1) * n_classes] + per_batch


def test_posterior_mean_prediction_unconditional(golden_clip, golden_inputs, monkeypatch):
    images = golden_inputs["images"]
    model = build(golden_clip, golden_inputs["classnames"])
    perturb(model)
    zero = torch.zeros(1, 1, model.learner.ctx.shape[-1])
    with torch.no_grad():
        mc_at_mean = model.predict(images, noise=zero)  # MC mode with eps = 0 is r = mu
        model.prediction = "mean"
        sequences = count_text_sequences(model, monkeypatch)
        with model.evaluation_cache():
            first, second = model.predict(images), model.predict(images[1:])
    assert_close(first, mc_at_mean)
    # the same class features serve both batches (counted below); the image tower's batch of 2 and of 3 may round
    # differently in the last bits (BLAS kernels chosen by batch size)
    assert_close(second, first[1:], rtol=1e-6, atol=1e-6)
    assert sequences == [len(golden_inputs["classnames"])]  # the C prompts at r = mu, once per evaluation


def test_posterior_mean_prediction_conditional(golden_clip, golden_inputs):
    images = golden_inputs["images"]
    model = build(golden_clip, golden_inputs["classnames"], POSTERIOR="conditional", PREDICTION="mean")
    with torch.no_grad():
        mean = model.predict(images)
        per_image = torch.cat([model.predict(images[b:b + 1]) for b in range(images.shape[0])])
        model.prediction = "mc"  # MC mode with eps = 0 is r = mu_phi(x)
        mc_at_mean = model.predict(images, noise=torch.zeros(images.shape[0], 1, model.learner.ctx.shape[-1]))
    assert_close(mean, per_image)
    assert_close(mean, mc_at_mean)


# --- configs and scripts ------------------------------------------------------------------------------------------
def _merged(config_file):
    from yacs.config import CfgNode as CN
    from clipbayes.compat import import_dassl
    from clipbayes.config import default_node
    from clipbayes.trainers.bayesian_prompt import KEYS
    import_dassl()
    from dassl.config import get_cfg_default
    cfg = get_cfg_default()
    cfg.TRAINER.BAYESIAN_PROMPT = default_node(KEYS)
    cfg.merge_from_file(config_file)
    return cfg


def test_configs_merge_and_official_setup():
    files = sorted(glob.glob(osp.join(CONFIG_DIR, "*.yaml")))
    assert [osp.basename(f) for f in files] == ["tiny.yaml", "vit_b16_c4_ep10_batch1_ctxv1.yaml",
                                                "vit_b16_c4_ep10_batch1_ctxv1_cond.yaml",
                                                "vit_b16_c4_ep10_batch4_ctxv1_cond.yaml"]
    tiny, official, cond1, cond4 = (_merged(f) for f in files)
    assert (tiny.MODEL.BACKBONE.NAME, tiny.TRAINER.BAYESIAN_PROMPT.PREC) == ("tiny-vit", "fp32")
    node = official.TRAINER.BAYESIAN_PROMPT
    assert (node.POSTERIOR, node.N_CTX, node.CTX_INIT, node.PREC, node.N_SAMPLES_TRAIN, node.KL_WEIGHT) == \
        ("unconditional", 4, "a photo of a", "fp16", 10, 0.001)
    assert tuple(node.INIT_LOGVAR_RANGE) == (0.0, 1.0) and node.PREDICTION == "mc"
    assert official.MODEL.BACKBONE.NAME == "ViT-B/16"
    assert (official.OPTIM.NAME, official.OPTIM.LR, official.OPTIM.MOMENTUM, official.OPTIM.WEIGHT_DECAY) == \
        ("sgd", 0.002, 0.9, 5e-4)
    assert (official.OPTIM.LR_SCHEDULER, official.OPTIM.WARMUP_EPOCH, official.OPTIM.WARMUP_TYPE,
            official.OPTIM.WARMUP_CONS_LR) == ("cosine", 1, "constant", 1e-5)
    assert official.DATALOADER.TRAIN_X.BATCH_SIZE == official.DATALOADER.TEST.BATCH_SIZE == 1
    assert list(official.INPUT.TRANSFORMS) == ["random_resized_crop", "random_flip", "normalize"]
    assert cond1.TRAINER.BAYESIAN_PROMPT.POSTERIOR == cond4.TRAINER.BAYESIAN_PROMPT.POSTERIOR == "conditional"
    assert cond1.DATALOADER.TRAIN_X.BATCH_SIZE == 1 and cond4.DATALOADER.TRAIN_X.BATCH_SIZE == 4


PAPER_SETTINGS = {"caltech101": (20, 20), "oxford_pets": (40, 20), "stanford_cars": (20, 40),
                  "oxford_flowers": (10, 40), "food101": (20, 20), "fgvc_aircraft": (10, 10), "sun397": (20, 10),
                  "dtd": (40, 10), "eurosat": (20, 60), "ucf101": (5, 20), "imagenet": (10, 10)}
TRANSFER_TARGETS = ["caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft",
                    "sun397", "dtd", "eurosat", "ucf101", "imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]

# Stand-in for python: records its arguments; a training run writes its last checkpoint, every run a test result.
_STUB = """#!/bin/bash
echo "$*" >> "$STUB_LOG"
[[ $1 == train.py ]] || exit 0
args=("$@")
for i in "${!args[@]}"; do
    case ${args[i]} in
        --output-dir) out=${args[i+1]} ;;
        OPTIM.MAX_EPOCH) epochs=${args[i+1]} ;;
    esac
done
mkdir -p "$out/prompt_learner"
[[ " $* " == *" --eval-only "* ]] || touch "$out/prompt_learner/model.pth.tar-$epochs"
echo "* accuracy: 50.0%" >> "$out/log.txt"
"""


def script_sandbox(tmp_path):
    return ScriptSandbox(tmp_path, "bayesian_prompt", _STUB, cleared=("CFG", "SAMPLES", "EPOCHS", "SEEDS", "PYTHON"))


def test_scripts_use_the_paper_settings_and_layout(tmp_path):
    box = script_sandbox(tmp_path)
    cfg = "vit_b16_c4_ep10_batch1_ctxv1"
    for dataset, (samples, epochs) in PAPER_SETTINGS.items():
        rc, out = box.run("base2new_test.sh", dataset, "2")
        assert rc == 1 and "base2new_train.sh" in out  # no model yet
        for script in ("base2new_train.sh", "base2new_test.sh"):
            assert box.run(script, dataset, "2")[0] == 0
        train, test = box.calls()[-2:]
        run_dir = f"output/base2new/train_base/{dataset}/shots_16/BayesianPrompt/{cfg}/seed2"
        assert f"--config-file configs/trainers/BayesianPrompt/{cfg}.yaml --output-dir {run_dir} " in train
        assert train.endswith(f"DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base OPTIM.MAX_EPOCH {epochs} "
                              f"TRAINER.BAYESIAN_PROMPT.N_SAMPLES_TRAIN {samples} "
                              f"TRAINER.BAYESIAN_PROMPT.N_SAMPLES_TEST {samples}")
        assert f"--output-dir {run_dir.replace('train_base', 'test_new')} --model-dir {run_dir} " \
               f"--load-epoch {epochs} --eval-only" in test
        assert test.endswith(f"DATASET.SUBSAMPLE_CLASSES new TRAINER.BAYESIAN_PROMPT.N_SAMPLES_TEST {samples}")
        for script in ("base2new_train.sh", "base2new_test.sh"):
            rc, out = box.run(script, dataset, "2")
            assert rc == 0 and "Skip this job" in out
    assert len(box.calls()) == 2 * len(PAPER_SETTINGS)

    assert box.run("xd_train.sh", "3", "TRAINER.BAYESIAN_PROMPT.PREDICTION", "mean")[0] == 0
    assert box.run("xd_test.sh", "imagenet_r", "3")[0] == 0
    train, test = box.calls()[-2:]
    model_dir = f"output/imagenet/BayesianPrompt/{cfg}_16shots/seed3"
    assert f"--dataset-config-file configs/datasets/imagenet.yaml --config-file configs/trainers/BayesianPrompt/" \
           f"{cfg}.yaml --output-dir {model_dir} " in train
    assert train.endswith("OPTIM.MAX_EPOCH 10 TRAINER.BAYESIAN_PROMPT.N_SAMPLES_TRAIN 10 "
                          "TRAINER.BAYESIAN_PROMPT.N_SAMPLES_TEST 10 TRAINER.BAYESIAN_PROMPT.PREDICTION mean")
    assert f"--output-dir output/evaluation/BayesianPrompt/{cfg}_16shots/imagenet_r/seed3 " \
           f"--model-dir {model_dir} --load-epoch 10 --eval-only" in test

    rc, out = box.run("base2new_train.sh", "dtd")
    assert rc == 2 and "Usage:" in out
    rc, out = box.run("base2new_train.sh", "nosuchset", "1")
    assert rc == 2 and "configs/datasets/nosuchset.yaml" in out
    assert len(box.calls()) == 2 * len(PAPER_SETTINGS) + 2


def test_run_all_covers_every_table(tmp_path):
    box = script_sandbox(tmp_path)
    box.env["SEEDS"] = "1 2"
    assert box.run("run_all.sh")[0] == 0
    runs = [call for call in box.calls() if call.startswith("train.py")]
    outputs = [run.split("--output-dir ")[1].split()[0] for run in runs]
    cfg = "vit_b16_c4_ep10_batch1_ctxv1"
    expected = []
    for seed in (1, 2):
        for dataset in ["imagenet"] + [d for d in PAPER_SETTINGS if d != "imagenet"]:
            for split in ("train_base", "test_new"):
                expected.append(f"output/base2new/{split}/{dataset}/shots_16/BayesianPrompt/{cfg}/seed{seed}")
        expected.append(f"output/imagenet/BayesianPrompt/{cfg}_16shots/seed{seed}")
        expected += [f"output/evaluation/BayesianPrompt/{cfg}_16shots/{d}/seed{seed}" for d in TRANSFER_TARGETS]
    assert outputs == expected
    assert box.calls()[-1] == "-m clipbayes.results output"
    assert box.run("run_all.sh")[0] == 0  # everything finished: nothing runs again
    assert sum(call.startswith("train.py") for call in box.calls()) == len(expected)


# --- posterior draws once per evaluation (TEST.MC_DRAWS) -----------------------------------------------------------
def test_per_evaluation_draws_are_encoded_once_and_shared_by_every_image(golden_clip, golden_inputs, monkeypatch):
    images, n_classes = golden_inputs["images"], len(golden_inputs["classnames"])
    model = build(golden_clip, golden_inputs["classnames"])
    perturb(model)
    sequences = count_text_sequences(model, monkeypatch)
    with torch.no_grad():
        torch.manual_seed(11)
        eps = torch.randn(1, L, model.learner.mu.shape[-1])  # what the first draw takes from the seeded RNG
        shared = model.predict(images, noise=eps)
        sequences.clear()
        torch.manual_seed(11)
        with model.evaluation_cache("per_evaluation"):
            first, rest = model.predict(images[:1]), model.predict(images[1:])
        assert sequences == [L * n_classes]  # the L x C prompts once for the whole evaluation
        torch.manual_seed(11)
        with model.evaluation_cache("per_batch"):
            batch_first, batch_rest = model.predict(images[:1]), model.predict(images[1:])
    assert_close(torch.cat([first, rest]), shared)  # every image uses the same L draws, whatever its batch
    assert_close(batch_first, first)  # the first batch takes the same draws in both modes
    assert not torch.allclose(batch_rest, rest)  # per_batch draws afresh for the next batch


def test_per_evaluation_leaves_image_conditioned_and_mean_prediction_alone(golden_clip, golden_inputs,
                                                                             monkeypatch):
    images, n_classes = golden_inputs["images"], len(golden_inputs["classnames"])
    conditional = build(golden_clip, golden_inputs["classnames"], POSTERIOR="conditional")
    sequences = count_text_sequences(conditional, monkeypatch)
    with torch.no_grad(), conditional.evaluation_cache("per_evaluation"):
        torch.manual_seed(3)
        per_evaluation = conditional.predict(images)
        conditional.predict(images[:2])
    with torch.no_grad(), conditional.evaluation_cache("per_batch"):
        torch.manual_seed(3)
        per_batch = conditional.predict(images)
    assert sequences[:2] == [images.shape[0] * L * n_classes, 2 * L * n_classes]  # q(r | x): draws per image
    assert torch.equal(per_evaluation, per_batch)
    mean = build(golden_clip, golden_inputs["classnames"], PREDICTION="mean")
    with torch.no_grad():
        with mean.evaluation_cache("per_evaluation"):
            a = mean.predict(images)
        with mean.evaluation_cache("per_batch"):
            b = mean.predict(images)
    assert torch.equal(a, b)


def test_unknown_mc_draws_mode_is_refused(golden_clip, golden_inputs):
    model = build(golden_clip, golden_inputs["classnames"])
    with pytest.raises(ValueError, match="TEST.MC_DRAWS must be one of"):
        with model.evaluation_cache("per_image"):
            pass
