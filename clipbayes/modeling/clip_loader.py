"""Loading CLIP: OpenAI model names (downloaded once, checksum-verified), local files, and tiny random models.

``load_clip(spec)`` accepts
  * an OpenAI model name (``RN50``, ``RN101``, ``RN50x4``, ``RN50x16``, ``RN50x64``, ``ViT-B/32``, ``ViT-B/16``,
    ``ViT-L/14``, ``ViT-L/14@336px``): the TorchScript archive is read from the cache directory, or downloaded into
    it and its SHA-256 checked;
  * a path to a local file: an OpenAI TorchScript archive or a plain state dict (``torch.save``);
  * ``tiny-vit`` / ``tiny-rn``: a small randomly initialised CLIP for tests (deterministic);
  * ``toyclip`` / ``toyclip-vit``: the tiny CLIPs pre-trained on the toy world (ResNet / ViT image tower), shipped
    in the package (docs/toyworld.md).
It always returns an fp32 ``clip.model.CLIP`` on the CPU in eval mode; precision and device are applied by the
trainer (see :mod:`clipbayes.modeling.precision`).
"""
from __future__ import annotations

import hashlib
import os
import os.path as osp
import tempfile
import urllib.error
import urllib.request
import warnings

import torch

from clipbayes.compat import import_clip
from clipbayes.toyworld.model import load_toyclip, load_toyclip_vit

# OpenAI release files: name -> (file name, SHA-256). The download URL is built from them.
OPENAI_MODELS = {
    "RN50": ("RN50.pt", "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762"),
    "RN101": ("RN101.pt", "8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599"),
    "RN50x4": ("RN50x4.pt", "7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd"),
    "RN50x16": ("RN50x16.pt", "52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa"),
    "RN50x64": ("RN50x64.pt", "be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c"),
    "ViT-B/32": ("ViT-B-32.pt", "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"),
    "ViT-B/16": ("ViT-B-16.pt", "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f"),
    "ViT-L/14": ("ViT-L-14.pt", "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836"),
    "ViT-L/14@336px": ("ViT-L-14-336px.pt",
                       "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02"),
}
OPENAI_URL = "https://openaipublic.azureedge.net/clip/models/{sha}/{file}"

# Tiny architectures: widths are multiples of 64 so that build_model's heads = width // 64 is exact.
TINY_MODELS = {
    "tiny-vit": dict(embed_dim=64, image_resolution=224, vision_layers=2, vision_width=64, vision_patch_size=32,
                     context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1,
                     transformer_layers=2),
    "tiny-rn": dict(embed_dim=64, image_resolution=224, vision_layers=(1, 1, 1, 1), vision_width=8,
                    vision_patch_size=None, context_length=77, vocab_size=49408, transformer_width=64,
                    transformer_heads=1, transformer_layers=2),
}

# Pre-trained models shipped inside the package: name -> loader returning an fp32 eval-mode clip.model.CLIP.
PACKAGED_MODELS = {"toyclip": load_toyclip, "toyclip-vit": load_toyclip_vit}


class CLIPLoadError(RuntimeError):
    """A CLIP model could not be loaded; the message says what was expected and how to fix it."""


class UnknownBackboneError(CLIPLoadError):
    """MODEL.BACKBONE.NAME is neither a known model name nor an existing file (a configuration mistake)."""


def default_cache_dir() -> str:
    """``$CLIPBAYES_CLIP_CACHE``, else ``~/.cache/clip`` (the directory OpenAI's ``clip.load`` uses)."""
    return os.environ.get("CLIPBAYES_CLIP_CACHE") or osp.expanduser("~/.cache/clip")


def available_backbones() -> list[str]:
    return list(OPENAI_MODELS) + list(PACKAGED_MODELS) + list(TINY_MODELS)


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_tiny_clip(name: str = "tiny-vit", seed: int = 0):
    """A small random ``clip.model.CLIP`` (fp32, eval); the global RNG state is left untouched."""
    clip = import_clip()
    if name not in TINY_MODELS:
        raise UnknownBackboneError(f"Unknown tiny model '{name}'. Choose one of {sorted(TINY_MODELS)}.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = clip.model.CLIP(**TINY_MODELS[name])
    return model.float().eval()


def _download_openai(name: str, cache_dir: str) -> str:
    file_name, sha = OPENAI_MODELS[name]
    target = osp.join(cache_dir, file_name)
    if osp.isfile(target):
        if sha256_of(target) == sha:
            return target
        print(f"Cached {target} does not match its SHA-256 checksum; downloading it again")
    url = OPENAI_URL.format(sha=sha, file=file_name)
    try:
        os.makedirs(cache_dir, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=cache_dir, prefix=file_name + ".", suffix=".part")
    except OSError as err:
        raise CLIPLoadError(f"Cannot write the CLIP cache directory {cache_dir}: {err}. Set MODEL.CLIP.CACHE_DIR "
                            f"(or $CLIPBAYES_CLIP_CACHE) to a writable directory.") from err
    try:
        print(f"Downloading CLIP {name} from {url} to {target}")
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
        if sha256_of(partial) != sha:
            raise CLIPLoadError(f"Downloaded {file_name} does not match its SHA-256 checksum {sha}.")
        os.replace(partial, target)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        raise CLIPLoadError(
            f"CLIP {name} is not in the cache and could not be downloaded ({err}).\n"
            f"Expected file: {target} (SHA-256 {sha}).\n"
            f"Download it on a machine with network access from {url} and copy it there, or set "
            f"MODEL.CLIP.CACHE_DIR to the folder that holds it, or pass the file path as MODEL.BACKBONE.NAME."
        ) from err
    finally:
        if osp.exists(partial):
            os.remove(partial)
    return target


def read_state_dict(path: str) -> dict:
    """State dict from an OpenAI TorchScript archive or from a ``torch.save``-d state dict."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated, OpenAI's files need it
            archive = torch.jit.load(path, map_location="cpu")
        return archive.state_dict()
    except RuntimeError:
        pass
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CLIPLoadError(f"{path} is neither a TorchScript CLIP archive nor a state dict ({err}).") from err
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or "text_projection" not in state:
        raise CLIPLoadError(f"{path} does not hold CLIP weights (no 'text_projection' entry).")
    return state


def load_clip(spec: str, cache_dir: str | None = None):
    """Build an fp32 eval-mode CLIP on the CPU from a model name, a local file or a tiny-model name."""
    clip = import_clip()
    if spec in TINY_MODELS:
        return build_tiny_clip(spec)
    if spec in PACKAGED_MODELS:
        return PACKAGED_MODELS[spec]()
    if spec in OPENAI_MODELS:
        path = _download_openai(spec, cache_dir or default_cache_dir())
    elif osp.isfile(osp.expanduser(spec)):
        path = osp.expanduser(spec)
    else:
        raise UnknownBackboneError(
            f"Unknown CLIP backbone '{spec}' (MODEL.BACKBONE.NAME): not a model name and no such file.\n"
            f"Known names: {', '.join(available_backbones())}; or give the path of a CLIP checkpoint file.")
    state = read_state_dict(path)
    model = clip.model.build_model({k: v.clone() for k, v in state.items()}).float()
    # build_model rounds the weights to fp16; reload them so fp32 checkpoints stay exact.
    model.load_state_dict({k: v for k, v in state.items() if k not in ("input_resolution", "context_length",
                                                                       "vocab_size")})
    return model.eval()
