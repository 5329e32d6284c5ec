"""ReBaPL: the repulsion distances (closed forms, invariances), the sample store (checkpoint round trip, exact
restore), the official sample rule restated as the official loop, the model over every registered base learner
(loss = base loss + the repulsion's gradient; prediction = the samples' ensemble), and end to end through
train.py: training, eval-only, and a resumed run that keeps bit-identical samples."""
from __future__ import annotations

import math
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from clipbayes.sampling import REPULSION_DISTANCES, SampleChain, is_sample_step, representation_distance
from support import ROOT, requires_dassl


# --- distances -----------------------------------------------------------------------------------------------------
def test_mse_is_the_mean_squared_row_distance():
    a, b = torch.zeros(2, 3), torch.tensor([[1.0, 2.0, 2.0], [0.0, 0.0, 3.0]])
    assert representation_distance("mse", a, b).item() == pytest.approx((9 + 9) / 2)


def test_wasserstein_ignores_the_row_order_and_equals_the_matched_cost():
    torch.manual_seed(0)
    a = torch.randn(5, 4)
    shuffled = a[torch.randperm(5)]
    assert representation_distance("wasserstein", a, shuffled).item() == pytest.approx(0.0, abs=1e-6)
    shifted = a + torch.tensor([0.5, 0.0, 0.0, 0.0])  # a translation: matching row i with row i is optimal
    assert representation_distance("wasserstein", a, shifted).item() == pytest.approx(0.25, rel=1e-5)


def test_mmd_is_zero_for_equal_sets_and_grows_with_a_shift():
    torch.manual_seed(0)
    a = torch.randn(6, 3)
    assert representation_distance("mmd", a, a[torch.randperm(6)]).item() == pytest.approx(0.0, abs=1e-6)
    near, far = (representation_distance("mmd", a, a + shift).item() for shift in (0.1, 1.0))
    assert 0 < near < far
    k = lambda x, y: torch.exp(-torch.cdist(x, y) ** 2 / 2).mean()  # noqa: E731  the formula, once more
    b = a + 1.0
    assert representation_distance("mmd", a, b).item() == pytest.approx((k(a, a) + k(b, b) - 2 * k(a, b)).item(),
                                                                         rel=1e-5)


def test_procrustes_is_scipys_disparity_and_ignores_translation_rotation_and_scale():
    from scipy.spatial import procrustes
    torch.manual_seed(0)
    a, b = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    moved = 2.5 * a @ rotation + 1.0
    assert representation_distance("procrustes", a, moved).item() == pytest.approx(0.0, abs=1e-5)
    assert representation_distance("procrustes", a, b).item() == pytest.approx(procrustes(a.numpy(), b.numpy())[2],
                                                                               rel=1e-5)


@pytest.mark.parametrize("name", REPULSION_DISTANCES)
def test_every_distance_has_a_finite_gradient(name):
    torch.manual_seed(1)
    a, b = torch.randn(5, 4, requires_grad=True), torch.randn(5, 4)
    representation_distance(name, a, b).backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_a_distance_refuses_unknown_names_and_mismatched_shapes():
    with pytest.raises(ValueError, match="unknown repulsion distance 'cosine'"):
        representation_distance("cosine", torch.zeros(2, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="different shapes"):
        representation_distance("mse", torch.zeros(2, 2), torch.zeros(3, 2))


# --- the sample store ----------------------------------------------------------------------------------------------
def _chain():
    torch.manual_seed(0)
    return SampleChain(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1)))


def test_samples_are_kept_loaded_and_the_chain_restored():
    store = _chain()
    first = store.flat_parameters().clone()
    store.collect(4, torch.ones(3, 2))
    with torch.no_grad():
        for p in store.chain.parameters():
            p.add_(1.0)
    second = store.flat_parameters().clone()
    store.collect(9, 2 * torch.ones(3, 2))
    assert store.num_samples == 2 and store.sample_epochs.tolist() == [4, 9]
    torch.testing.assert_close(store.anchor, 2 * torch.ones(3, 2))
    with store.loaded(0):
        assert torch.equal(store.flat_parameters(), first)
    assert torch.equal(store.flat_parameters(), second)
    store.restart()
    assert torch.equal(store.flat_parameters(), first)


def test_a_checkpoint_loads_whatever_number_of_samples_it_holds():
    store = _chain()
    store.collect(0, torch.randn(4, 2))
    store.collect(1, torch.randn(4, 2))
    fresh = _chain()
    assert fresh.num_samples == 0
    fresh.load_state_dict(store.state_dict())
    for name, value in store.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name


def test_the_chains_own_resizable_entries_stay_resizable():
    """A base learner whose checkpoint holds class-dependent sizes (APEX's training classes) keeps that freedom."""
    learner = torch.nn.Linear(2, 2)
    learner.resizable_state = ("trained_class_tokens",)
    assert SampleChain(learner).resizable_state == ("samples", "sample_epochs", "anchor", "chain.trained_class_tokens")


# --- the official sample rule ----------------------------------------------------------------------------------------
def _official_collections(epochs, batches, cycle, noise, per_cycle):
    """(epoch, batch) of every kept sample: the official trainer's loop (csghmc_cold_restarts_maple.py), restated."""
    kept, in_cycle = [], 0
    for epoch in range(epochs):
        for batch in range(batches):
            cycle_epoch = (epoch + 1) % cycle
            if noise == 0 or per_cycle == 1:
                if cycle_epoch == 0 and batch + 1 == batches:
                    kept.append((epoch, batch))
                    in_cycle += 1
            elif cycle_epoch >= cycle - noise and in_cycle < per_cycle:
                step = cycle_epoch * batches + batch + 1
                if (step - (cycle - noise) * batches) % (noise * batches // per_cycle) == 0:
                    kept.append((epoch, batch))
                    in_cycle += 1
        if (epoch + 1) % cycle == 0:
            in_cycle = 0
    return kept


@pytest.mark.parametrize("cycle,noise,per_cycle", [(5, 3, 1), (5, 3, 3), (5, 3, 2), (4, 2, 4), (3, 0, 2)])
def test_the_sample_steps_are_the_official_ones(cycle, noise, per_cycle):
    epochs, batches = 3 * cycle, 4
    ours, counts = [], {}
    for epoch in range(epochs):
        for batch in range(batches):
            if is_sample_step(epoch, batch, batches, cycle, noise, per_cycle, counts.get(epoch // cycle, 0)):
                ours.append((epoch, batch))
                counts[epoch // cycle] = counts.get(epoch // cycle, 0) + 1
    assert ours == _official_collections(epochs, batches, cycle, noise, per_cycle)
    assert ours  # every configuration keeps samples


def test_the_documented_offset_of_several_samples_per_cycle():
    """K = 3, L = 5, S = 3: the samples come after epochs 2, 3, 4 of each cycle (1-based), one before the noise."""
    kept = [e for e in range(5) for b in range(2) if is_sample_step(e, b, 2, 5, 3, 3, 0)]
    assert kept == [1, 2, 3]


# --- parity with the official sampler (tests/official_rebapl.py, tests/golden/rebapl_sghmc.pt) -----------------------
def _golden():
    from support import load_golden
    return load_golden("rebapl_sghmc.pt")


def _assert_same_trace(actual, expected):
    torch.testing.assert_close(actual["losses"], expected["losses"], rtol=1e-5, atol=0)
    assert len(actual["states"]) == len(expected["states"])
    for step, (mine, theirs) in enumerate(zip(actual["states"], expected["states"])):
        for name, tensor in theirs.items():
            error = ((mine[name] - tensor).abs().max() / tensor.abs().max()).item()
            assert error <= 1e-5, f"step {step + 1}, {name}: relative error {error:.2e}"


@requires_dassl
def test_our_sghmc_reproduces_the_official_sampler_step_by_step():
    """Every learner tensor after every step of two short cycles (noise on, seeded), so also the samples kept at the
    ends of the cycles, within 1e-5 relative of the official optimizer's (bit for bit on this CPU)."""
    import official_rebapl
    ours = official_rebapl.ours()
    _assert_same_trace(ours, _golden())
    steps = official_rebapl.STEPS
    kept = [e * steps + b for e in range(official_rebapl.EPOCHS) for b in range(steps)
            if is_sample_step(e, b, steps, official_rebapl.CYCLE)]
    assert kept == [3, 7]  # the states compared above at these steps are the two samples
    assert not torch.equal(ours["states"][3]["ctx"], ours["states"][7]["ctx"])


def test_our_distances_are_the_official_ones_but_procrustes():
    import official_rebapl
    current, anchor = official_rebapl.distance_inputs()
    expected = _golden()["distances"]
    for name in ("mse", "wasserstein", "mmd"):
        assert representation_distance(name, current, anchor).item() == pytest.approx(expected[name].item(), rel=1e-5)
    # procrustes: the official rotation is the transpose of SciPy's (docs/methods/rebapl.md); restated here
    def standardised(z):
        z = z - z.mean(0)
        return z / torch.linalg.norm(z)
    a, b = standardised(current), standardised(anchor)
    u, s, vh = torch.linalg.svd(a.t() @ b, full_matrices=False)
    transposed = ((a - b @ (u @ vh) * s.sum()) ** 2).sum()
    assert transposed.item() == pytest.approx(expected["procrustes"].item(), rel=1e-5)
    assert representation_distance("procrustes", current, anchor).item() < transposed.item()


@pytest.mark.skipif(not os.environ.get("REBAPL_SRC"),
                    reason="set REBAPL_SRC to a checkout of SigmaNova/ReBaPL @ b9b4177 to rerun the official sampler")
@requires_dassl
def test_the_official_sampler_rerun_gives_the_committed_numbers():
    import official_rebapl
    fresh = official_rebapl.golden(os.environ["REBAPL_SRC"])
    _assert_same_trace(fresh, _golden())
    for name, value in _golden()["distances"].items():
        assert fresh["distances"][name].item() == pytest.approx(value.item(), rel=1e-6), name


# --- the model over every base -------------------------------------------------------------------------------------
def _cfg(base, **rebapl):
    from clipbayes.config import default_cfg
    cfg = default_cfg()
    cfg.DATASET.NAME = "OxfordPets"
    node = cfg.TRAINER.REBAPL
    node.BASE = base
    node.REPULSION_ROWS = -1
    for key, value in rebapl.items():
        setattr(node, key, value)
    cfg.TRAINER.COOP.N_CTX = cfg.TRAINER.COCOOP.N_CTX = 4
    cfg.TRAINER.BAYESIAN_PROMPT.update(N_SAMPLES_TRAIN=2, N_SAMPLES_TEST=2)
    for name in ("MAPLE", "IVLP", "DEEP_VPT", "APEX"):
        for key in ("PROMPT_DEPTH", "PROMPT_DEPTH_TEXT", "PROMPT_DEPTH_VISION"):
            if key in cfg.TRAINER[name]:
                setattr(cfg.TRAINER[name], key, 1)
    return cfg


def _bases():
    from clipbayes.compat import dassl_available
    if not dassl_available():
        return []
    from clipbayes.registry import base_learners
    return base_learners()


def _model(cfg, clip_model, classnames):
    from clipbayes.trainers.rebapl import ReBaPL
    torch.manual_seed(0)
    model = ReBaPL.make_prompt_model(cfg, clip_model, classnames)
    model.requires_grad_(False)
    model.learner.requires_grad_(True)
    return model


def _nudge(model, step=0.01, seed=2):
    """Move the chain's parameters by a seeded random step."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.learner.chain.parameters():
            p.add_(step * torch.randn(p.shape, generator=generator).to(p.dtype))


@requires_dassl
@pytest.mark.parametrize("base", _bases())
def test_rebapl_samples_any_base_and_predicts_with_their_ensemble(golden_clip, golden_inputs, base):
    """Over every registered base: the loss's gradient is the base's plus the repulsion's (official: autograd.grad of
    the potential added to the gradients); the prediction stacks the samples' own predictions."""
    classnames, images, labels = golden_inputs["classnames"], golden_inputs["images"], golden_inputs["labels"]
    model = _model(_cfg(base), golden_clip, classnames)
    model.attach_reference_images(images)
    model.collect_sample(0)
    _nudge(model)
    params = [p for p in model.learner.parameters() if p.requires_grad]

    torch.manual_seed(3)
    loss, _, parts = model.train_loss(images, labels)
    ours = torch.autograd.grad(loss, params, allow_unused=True)
    torch.manual_seed(3)
    base_loss = model.base.train_loss(images, labels).loss
    potential, distance = model.repulsion()
    expected = [torch.autograd.grad(base_loss, params, allow_unused=True),
                torch.autograd.grad(potential, params, allow_unused=True)]
    for got, *parts_of in zip(ours, *expected):
        want = sum(g for g in parts_of if g is not None) if any(g is not None for g in parts_of) else None
        assert (got is None) == (want is None)
        if got is not None:
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert parts["repulsion_d"] == pytest.approx(distance.item(), rel=1e-5) and distance.item() > 0
    assert torch.testing.assert_close(loss, base_loss) is None  # the potential's value is not added

    model.collect_sample(1)
    model.eval()
    with torch.no_grad():
        features = model.encode_images(images)
        torch.manual_seed(4)
        logits = model.predict_logits(features)
        members = []
        for k in range(2):
            with model.learner.loaded(k):
                torch.manual_seed(4) if k == 0 else None
                members.append(model.base.predict_logits(model.base.encode_images(images)))
    members = torch.stack(members)
    members = members.flatten(0, 1) if members.dim() == 4 else members
    assert logits.shape == members.shape and logits.shape[-2:] == (3, 5)
    if base not in ("BayesianPrompt", "PBPrompt"):  # Monte Carlo bases draw again; their shapes are checked
        torch.testing.assert_close(logits, members, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(members[0], members[-1])  # two samples, two predictions


def _two_coop_samples(golden_clip, golden_inputs):
    """ReBaPL over CoOp without repulsion, holding two samples 0.05 apart, and the golden images' features."""
    model = _model(_cfg("CoOp", REPULSION_STRENGTH=0.0), golden_clip, golden_inputs["classnames"])
    model.collect_sample(0)
    _nudge(model, 0.05)
    model.collect_sample(1)
    with torch.no_grad():
        return model, model.encode_images(golden_inputs["images"])


@requires_dassl
def test_each_sample_keeps_its_own_class_features_in_an_evaluation(golden_clip, golden_inputs):
    model, features = _two_coop_samples(golden_clip, golden_inputs)
    with torch.no_grad():
        outside = model.predict_logits(features)
        with model.evaluation_cache():
            inside, again = model.predict_logits(features), model.predict_logits(features)
    torch.testing.assert_close(inside, outside)
    torch.testing.assert_close(again, outside)
    assert not torch.allclose(outside[0], outside[1])


@requires_dassl
def test_mean_logits_prediction_is_the_mean_of_the_samples_logits(golden_clip, golden_inputs):
    model, features = _two_coop_samples(golden_clip, golden_inputs)
    with torch.no_grad():
        stacked = model.predict_logits(features)
        model.prediction = "mean_logits"
        torch.testing.assert_close(model.predict_logits(features), stacked.mean(0))


@requires_dassl
def test_the_representation_holds_only_rows_that_can_move(golden_clip, golden_inputs):
    images, classnames = golden_inputs["images"], golden_inputs["classnames"]
    frozen = _model(_cfg("CoOp"), golden_clip, classnames)
    frozen.attach_reference_images(images)
    assert frozen.representation().shape == (5, golden_clip.text_projection.shape[1])  # C text rows
    prompted = _model(_cfg("MaPLe"), golden_clip, classnames)
    prompted.attach_reference_images(images)
    assert prompted.representation().shape[0] == 3 + 5  # M image rows, then C text rows
    conditioned = _model(_cfg("CoCoOp"), golden_clip, classnames)
    conditioned.attach_reference_images(images)
    assert conditioned.representation().shape[0] == 3 * 5  # M C image-conditioned text rows


@requires_dassl
def test_a_repulsion_gradient_that_overflows_its_tensors_dtype_is_skipped_as_officially():
    from clipbayes.trainers.rebapl import finite_gradient_surrogate
    half = torch.ones(3, dtype=torch.float16, requires_grad=True)
    full = torch.ones(3, requires_grad=True)
    potential = 1e6 * (half.float() ** 2).sum() + 1e6 * (full ** 2).sum()  # dV/dtheta = 2e6: inf in fp16
    surrogate, dropped = finite_gradient_surrogate(potential, [half, full])
    assert dropped == 1 and surrogate.item() == 0
    surrogate.backward()
    assert half.grad is None or not half.grad.any()
    torch.testing.assert_close(full.grad, torch.full((3,), 2e6))


@requires_dassl
@pytest.mark.parametrize("base", ["MaPLe", "CoOp", "CoCoOp"])
def test_the_chosen_rows_are_those_of_the_whole_representation(golden_clip, golden_inputs, base):
    """MaPLe encodes only the chosen reference images; the rows are the whole representation's, in the draw's order."""
    model = _model(_cfg(base), golden_clip, golden_inputs["classnames"])
    model.attach_reference_images(golden_inputs["images"])
    model.collect_sample(0)  # the repulsion compares rows only once there is an anchor
    _nudge(model)
    with torch.no_grad():
        whole = model.representation()
        for chosen in (torch.tensor([7, 0, 2, 5]), torch.tensor([1]), torch.tensor([4, 6])):
            chosen = chosen[chosen < whole.shape[0]]
            torch.testing.assert_close(model.representation_rows(chosen), whole[chosen], rtol=1e-5, atol=1e-6)


@requires_dassl
def test_bad_rebapl_settings_are_refused_with_the_reason():
    from clipbayes.config import ConfigError
    from clipbayes.trainers.rebapl import check_rebapl
    cfg = _cfg("CoOp")
    cfg.OPTIM.MAX_EPOCH, cfg.OPTIM.WARMUP_EPOCH, cfg.OPTIM.WARMUP_TYPE, cfg.OPTIM.NAME = 7, 1, "constant", "sghmc"
    cfg.TRAINER.NAME = "CoOp"
    check_rebapl(cfg, cfg.TRAINER.REBAPL)  # another trainer's optimiser keys are not ReBaPL's business
    cfg.TRAINER.NAME = "ReBaPL"
    with pytest.raises(ConfigError, match="multiple of TRAINER.REBAPL.CYCLE_EPOCHS"):
        check_rebapl(cfg, cfg.TRAINER.REBAPL)
    cfg.OPTIM.MAX_EPOCH = 10
    cfg.TRAINER.REBAPL.BASE = "LogitPrior"
    with pytest.raises(ConfigError, match="BASE must be one of"):
        check_rebapl(cfg, cfg.TRAINER.REBAPL)
    cfg.TRAINER.REBAPL.BASE = "CoOp"
    cfg.OPTIM.WARMUP_EPOCH = 2
    with pytest.raises(ConfigError, match="one constant warm-up epoch"):
        check_rebapl(cfg, cfg.TRAINER.REBAPL)
    cfg.OPTIM.WARMUP_EPOCH = 0
    check_rebapl(cfg, cfg.TRAINER.REBAPL)  # no warm-up: allowed
    cfg.OPTIM.NAME = "adam"
    with pytest.raises(ConfigError, match="SGHMC"):
        check_rebapl(cfg, cfg.TRAINER.REBAPL)


# --- end to end ------------------------------------------------------------------------------------------------------
def _train(out, *flags, check=True):
    from clipbayes.demo import tiny_pipeline_options
    args = ["--trainer", "ReBaPL", "--seed", "1", "--output-dir", out, *flags, *tiny_pipeline_options(),
            "OPTIM.MAX_EPOCH", "4", "TRAINER.REBAPL.CYCLE_EPOCHS", "2", "TRAINER.REBAPL.NOISE_EPOCHS", "1",
            "TRAINER.REBAPL.BASE", "CoOp", "TRAINER.REBAPL.REFERENCE_IMAGES", "8", "TRAINER.COOP.N_CTX", "4",
            "TRAIN.CHECKPOINT_FREQ", "1", "DATALOADER.TRAIN_X.BATCH_SIZE", "16"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    if check and proc.returncode:
        raise AssertionError(proc.stdout[-3000:] + proc.stderr[-3000:])
    return proc


def _state(out, epoch):
    return torch.load(osp.join(out, "prompt_learner", f"model.pth.tar-{epoch}"), map_location="cpu",
                      weights_only=True)


@requires_dassl
def test_a_run_interrupted_mid_cycle_resumes_to_bit_identical_samples(tmp_path):
    whole, resumed = str(tmp_path / "whole"), str(tmp_path / "resumed")
    first = _train(whole)
    assert first.stdout.count("ReBaPL: sample") == 2
    _train(resumed)
    folder = osp.join(resumed, "prompt_learner")
    # what a crash (kill -9) during epoch 4 leaves: checkpoints up to epoch 3, the pointer at it
    os.remove(osp.join(folder, "model.pth.tar-4"))
    with open(osp.join(folder, "checkpoint"), "w") as f:
        f.write("model.pth.tar-3\n")
    second = _train(resumed)
    assert "(epoch 3)" in second.stdout and "ReBaPL: sample 2 kept after epoch 4" in second.stdout
    a, b = _state(whole, 4), _state(resumed, 4)
    assert a["state_dict"]["samples"].shape[0] == 2
    for key in ("samples", "sample_epochs", "anchor", "chain.ctx"):
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert torch.equal(a["optimizer"]["noise_generator_state"], b["optimizer"]["noise_generator_state"])

    accuracy = lambda text: float(text.rsplit("* accuracy: ", 1)[1].split("%")[0])  # noqa: E731
    evaluated = _train(str(tmp_path / "eval"), "--eval-only", "--model-dir", whole, "--load-epoch", "4")
    assert accuracy(evaluated.stdout) == accuracy(first.stdout)
    assert "mutual_information" in evaluated.stdout  # a (K, B, C) prediction reaches the calibration report
    assert math.isfinite(accuracy(evaluated.stdout))
