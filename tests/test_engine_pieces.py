"""Learning-rate schedules, atomic checkpoints, CLIP loading and precision fallbacks."""
from __future__ import annotations

import math
import os
import os.path as osp

import pytest
import torch

from clipbayes.engine import checkpoint as ckpt
from clipbayes.engine.schedule import EpochMultiplier, build_lr_scheduler
from clipbayes.modeling import clip_loader
from clipbayes.modeling.precision import resolve_precision

from support import requires_dassl


def _optim_cfg(**overrides):
    from yacs.config import CfgNode as CN
    cfg = CN(dict(LR=0.002, LR_SCHEDULER="cosine", MAX_EPOCH=10, STEPSIZE=(-1,), GAMMA=0.1, WARMUP_EPOCH=1,
                  WARMUP_TYPE="constant", WARMUP_CONS_LR=1e-5, WARMUP_MIN_LR=1e-5, WARMUP_RECOUNT=True))
    cfg.update(overrides)
    return cfg


def _lrs(cfg, epochs):
    param = torch.nn.Parameter(torch.zeros(1))
    optim = torch.optim.SGD([param], lr=cfg.LR)
    sched = build_lr_scheduler(optim, cfg)
    lrs = []
    for _ in range(epochs):
        lrs.append(optim.param_groups[0]["lr"])
        optim.step()
        sched.step()
    return lrs


def test_constant_warmup_then_cosine_matches_coop_schedule():
    lrs = _lrs(_optim_cfg(), 10)
    assert lrs[0] == pytest.approx(1e-5)
    for epoch in range(1, 10):  # Dassl: the cosine successor restarts its count after the warm-up epoch
        assert lrs[epoch] == pytest.approx(0.002 * (1 + math.cos(math.pi * (epoch - 1) / 10)) / 2)


def test_linear_warmup_and_step_schedules():
    lrs = _lrs(_optim_cfg(WARMUP_EPOCH=4, WARMUP_TYPE="linear", LR_SCHEDULER="single_step", STEPSIZE=(3,)), 10)
    assert lrs[:4] == pytest.approx([1e-5, 0.002 * 1 / 4, 0.002 * 2 / 4, 0.002 * 3 / 4])
    assert lrs[4:] == pytest.approx([0.002, 0.002, 0.002, 0.0002, 0.0002, 0.0002])
    multi = _lrs(_optim_cfg(WARMUP_EPOCH=0, LR_SCHEDULER="multi_step", STEPSIZE=(2, 5)), 7)
    assert multi == pytest.approx([0.002, 0.002, 0.0002, 0.0002, 0.0002, 0.00002, 0.00002])


@requires_dassl
@pytest.mark.parametrize("name,stepsize", [("cosine", (-1,)), ("single_step", (3,)), ("multi_step", (2, 5))])
def test_schedule_without_warmup_equals_dassls_own(name, stepsize):
    from dassl.optim import build_lr_scheduler as dassl_scheduler
    cfg = _optim_cfg(WARMUP_EPOCH=0, LR_SCHEDULER=name, STEPSIZE=stepsize if name != "single_step" else 3)
    param = torch.nn.Parameter(torch.zeros(1))
    optim = torch.optim.SGD([param], lr=cfg.LR)
    reference = dassl_scheduler(optim, cfg)  # torch-native when there is no warm-up: works on current torch
    expected = []
    for _ in range(10):
        expected.append(optim.param_groups[0]["lr"])
        optim.step()
        reference.step()
    assert _lrs(cfg, 10) == pytest.approx(expected)


def test_scheduler_state_loads_with_weights_only(tmp_path):
    param = torch.nn.Parameter(torch.zeros(1))
    optim = torch.optim.SGD([param], lr=0.002)
    sched = build_lr_scheduler(optim, _optim_cfg())
    sched.step()
    path = ckpt.save_checkpoint({"scheduler": sched.state_dict(), "optimizer": optim.state_dict(), "epoch": 1},
                                str(tmp_path), "model.pth.tar-1")
    state = torch.load(path, weights_only=True)
    fresh = build_lr_scheduler(torch.optim.SGD([param], lr=0.002), _optim_cfg())
    fresh.load_state_dict(state["scheduler"])
    assert fresh.last_epoch == 1


def test_bad_schedule_names_are_rejected():
    with pytest.raises(ValueError, match="LR_SCHEDULER"):
        EpochMultiplier(1, "poly", 10, (1,), 0.1, 0, "constant", 0, 0, True)
    with pytest.raises(ValueError, match="WARMUP_TYPE"):
        EpochMultiplier(1, "cosine", 10, (1,), 0.1, 1, "exp", 0, 0, True)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    folder = str(tmp_path / "prompt_learner")
    ckpt.save_checkpoint({"state_dict": {"ctx": torch.ones(2)}, "epoch": 1}, folder, "model.pth.tar-1")
    before = open(osp.join(folder, "model.pth.tar-1"), "rb").read()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        ckpt.save_checkpoint({"state_dict": {"ctx": torch.zeros(2)}, "epoch": 1}, folder, "model.pth.tar-1")
    assert open(osp.join(folder, "model.pth.tar-1"), "rb").read() == before
    assert sorted(os.listdir(folder)) == ["checkpoint", "model.pth.tar-1"]  # no temporary file left behind
    assert ckpt.newest_checkpoint(folder).endswith("model.pth.tar-1")
    assert ckpt.checkpoint_epoch("x/model.pth.tar-12") == 12 and ckpt.checkpoint_epoch("model-best.pth.tar") is None


def test_truncated_checkpoint_gives_clear_error(tmp_path):
    path = tmp_path / "model.pth.tar-3"
    torch.save({"epoch": 3, "state_dict": {"ctx": torch.ones(100)}}, path)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(RuntimeError, match="unreadable"):
        ckpt.load_checkpoint(str(path))


def test_legacy_pickled_checkpoint_loads_with_warning(tmp_path, capsys):
    path = tmp_path / "legacy.pth.tar"
    torch.save({"epoch": 1, "scheduler": {"successor": torch.optim.lr_scheduler.StepLR(
        torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), 1)}}, path)
    state = ckpt.load_checkpoint(str(path))
    assert state["epoch"] == 1 and "full unpickling" in capsys.readouterr().out


def test_tiny_clip_is_deterministic_and_keeps_global_rng():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = clip_loader.build_tiny_clip("tiny-vit")
    assert torch.rand(1) == expected_next
    b = clip_loader.build_tiny_clip("tiny-vit")
    torch.testing.assert_close(a.state_dict(), b.state_dict())
    rn = clip_loader.build_tiny_clip("tiny-rn")
    assert rn.encode_image(torch.zeros(1, 3, 224, 224)).shape == (1, 64)


def test_load_from_state_dict_and_torchscript_files(tmp_path):
    model = clip_loader.build_tiny_clip("tiny-vit")
    state_file = tmp_path / "tiny_state.pt"
    torch.save(model.state_dict(), state_file)
    loaded = clip_loader.load_clip(str(state_file))
    torch.testing.assert_close(loaded.state_dict()["text_projection"], model.state_dict()["text_projection"])
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": model.state_dict()}, wrapped)
    assert clip_loader.load_clip(str(wrapped)).visual.output_dim == 64

    class Holder(torch.nn.Module):  # a TorchScript archive whose state dict is CLIP's, as OpenAI's .pt files
        def __init__(self):
            super().__init__()
            for key, value in model.state_dict().items():
                self.register_buffer(key.replace(".", "__"), value)

    scripted = torch.jit.script(Holder())
    archive = tmp_path / "archive.pt"
    scripted.save(str(archive))
    state = clip_loader.read_state_dict(str(archive))
    assert len(state) == len(model.state_dict())


def test_openai_name_without_network_names_the_expected_file(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise clip_loader.urllib.error.URLError("no network")

    monkeypatch.setattr(clip_loader.urllib.request, "urlopen", offline)
    with pytest.raises(clip_loader.CLIPLoadError) as err:
        clip_loader.load_clip("ViT-B/16", cache_dir=str(tmp_path))
    message = str(err.value)
    assert osp.join(str(tmp_path), "ViT-B-16.pt") in message and "5806e77c" in message
    assert os.listdir(tmp_path) == []  # no partial download left


def test_cached_file_with_wrong_checksum_is_downloaded_again(tmp_path, monkeypatch):
    (tmp_path / "RN50.pt").write_bytes(b"corrupt")
    calls = []

    def offline(url, timeout):
        calls.append(url)
        raise clip_loader.urllib.error.URLError("no network")

    monkeypatch.setattr(clip_loader.urllib.request, "urlopen", offline)
    with pytest.raises(clip_loader.CLIPLoadError):
        clip_loader.load_clip("RN50", cache_dir=str(tmp_path))
    assert calls and calls[0].endswith("/RN50.pt")


def test_unknown_backbone_and_bad_file(tmp_path):
    with pytest.raises(clip_loader.CLIPLoadError, match="Known names: RN50"):
        clip_loader.load_clip("ViT-H/99")
    bad = tmp_path / "notclip.pt"
    torch.save({"weight": torch.ones(1)}, bad)
    with pytest.raises(clip_loader.CLIPLoadError, match="text_projection"):
        clip_loader.load_clip(str(bad))


def test_precision_falls_back_to_fp32_on_cpu(capsys):
    assert resolve_precision("fp16", torch.device("cpu")) == "fp32"
    assert "fp32" in capsys.readouterr().out
    assert resolve_precision("bf16", torch.device("cuda")) == "bf16"
    with pytest.raises(ValueError, match="PREC"):
        resolve_precision("int8", torch.device("cpu"))


def test_download_verifies_checksum_caches_and_is_reused(tmp_path, monkeypatch):
    import hashlib
    import io

    source = tmp_path / "source.pt"
    torch.save(clip_loader.build_tiny_clip("tiny-vit").state_dict(), source)
    payload = source.read_bytes()
    sha = hashlib.sha256(payload).hexdigest()
    monkeypatch.setitem(clip_loader.OPENAI_MODELS, "Tiny/Test", ("Tiny-Test.pt", sha))
    downloads = []

    def fake_urlopen(url, timeout):
        downloads.append(url)
        return io.BytesIO(payload)

    monkeypatch.setattr(clip_loader.urllib.request, "urlopen", fake_urlopen)
    cache = tmp_path / "cache"
    first = clip_loader.load_clip("Tiny/Test", cache_dir=str(cache))
    second = clip_loader.load_clip("Tiny/Test", cache_dir=str(cache))
    assert downloads == [clip_loader.OPENAI_URL.format(sha=sha, file="Tiny-Test.pt")]  # once, then the cache
    assert sorted(os.listdir(cache)) == ["Tiny-Test.pt"]
    torch.testing.assert_close(first.state_dict(), second.state_dict())

    monkeypatch.setitem(clip_loader.OPENAI_MODELS, "Tiny/Bad", ("Tiny-Bad.pt", "0" * 64))
    with pytest.raises(clip_loader.CLIPLoadError, match="does not match its SHA-256"):
        clip_loader.load_clip("Tiny/Bad", cache_dir=str(cache))
    assert sorted(os.listdir(cache)) == ["Tiny-Test.pt"]  # the corrupt download was not kept
