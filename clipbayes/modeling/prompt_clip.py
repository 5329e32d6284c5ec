"""The frozen CLIP around a learnable prompt module: the data flow every trainer shares.

    images --frozen image encoder--> f (B, E), L2-normalised
    ctx (..., K, M, D) --ClassPrompts--> prompts (..., C, T, D) --TextEncoder--> g (..., C, E), L2-normalised
    logits = exp(logit_scale) * <f, g>

:class:`PromptCLIP` implements the method contract (``clipbayes.modeling.contract``): a method subclasses it, sets
``self.learner`` (the only module the trainer optimises and checkpoints) and defines ``train_logits(images,
labels=None) -> TrainOutput`` and ``predict_logits(image_features)``. The base derives ``predict_features``
(softmax of it = the predictive distribution) and ``train_loss`` (``objectives.likelihood_loss``: cross-entropy for
(B, C) logits, the Monte Carlo ``mc_nll`` for (L, B, C) samples, plus the method's weighted regularisers).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from clipbayes.modeling.contract import LossOutput, TrainOutput
from clipbayes.modeling.text import ClassPrompts, TextEncoder, count_tokens, tokenize
from clipbayes.objectives import likelihood_loss, predictive_scores

# TEST.MC_DRAWS: when the Monte Carlo prompt draws of an image-independent posterior are made at prediction.
MC_DRAWS = ("per_batch", "per_evaluation")


def initial_context(text_encoder: TextEncoder, n_ctx: int, ctx_init: str = "",
                    n_classes: int | None = None, std: float = 0.02) -> torch.Tensor:
    """Initial context vectors: (M, D), or (C, M, D) when ``n_classes`` is given (class-specific context).

    From words (``ctx_init``, "_" read as a space): the token embeddings of those words, M = their token count,
    copied to every class. Otherwise N(0, std^2) draws from the global RNG (seeded by train.py), as CoOp.
    """
    width = text_encoder.token_embedding.weight.shape[1]
    dtype = text_encoder.dtype
    if ctx_init:
        words = ctx_init.replace("_", " ")
        n_words = count_tokens(words)
        tokens = tokenize([words]).to(text_encoder.token_embedding.weight.device)
        with torch.no_grad():
            ctx = text_encoder.embed(tokens)[0, 1:1 + n_words].clone()
        if n_classes is not None:
            ctx = ctx.unsqueeze(0).repeat(n_classes, 1, 1)
        return ctx
    shape = (n_ctx, width) if n_classes is None else (n_classes, n_ctx, width)
    return torch.empty(shape, dtype=dtype, device=text_encoder.token_embedding.weight.device).normal_(std=std)


def context_length(n_ctx: int, ctx_init: str) -> int:
    """M: the number of context slots (the token count of ``ctx_init`` when it is given)."""
    return count_tokens(ctx_init.replace("_", " ")) if ctx_init else n_ctx


class ContextVectors(nn.Module):
    """CoOp's learnable context ``ctx``: (M, D) shared or (C, M, D) class-specific. forward() -> (K, M, D)."""

    def __init__(self, ctx: torch.Tensor):
        super().__init__()
        self.ctx = nn.Parameter(ctx)

    def forward(self) -> torch.Tensor:
        return self.ctx if self.ctx.dim() == 3 else self.ctx.unsqueeze(0)


def prompt_model_kwargs(cfg, node) -> dict:
    """Keyword arguments of PromptCLIP for the methods with CoOp's context keys (N_CTX, CTX_INIT, position)."""
    return dict(n_ctx=node.N_CTX, ctx_init=node.CTX_INIT,
                position=node.get("CLASS_TOKEN_POSITION", "end"),
                text_chunk_size=cfg.MODEL.CLIP.TEXT_CHUNK_SIZE,
                text_checkpointing=cfg.MODEL.CLIP.TEXT_CHECKPOINTING)


class PromptCLIP(nn.Module):
    """Frozen CLIP encoders + class prompts + a learnable ``learner``: the shared base of the method contract.

    Class prompts with context slots are built when ``n_ctx`` or ``ctx_init`` is given: as many slots as
    ``ctx_init`` has tokens (CoOp's rule, :func:`context_length`), or ``ctx_slots`` (the first ``ctx_slots`` tokens
    of ``ctx_init`` learned, the others kept: :class:`ClassPrompts`). A method assigns its learnable module to
    ``self.learner`` and implements ``train_logits`` and ``predict_logits`` (shapes in
    ``clipbayes.modeling.contract``).
    """

    wants_train_features = False  # True: attach_train_features() receives the training set's image features
    learned_image_features = False  # True: image features depend on the learner (vision prompts): not cached

    def __init__(self, clip_model, classnames: list[str], n_ctx: int = 0, ctx_init: str = "",
                 position: str = "end", text_chunk_size: int = 0, text_checkpointing: bool = False,
                 ctx_slots: int | None = None):
        super().__init__()
        self.classnames = list(classnames)
        self.image_encoder = clip_model.visual
        self.text_encoder = TextEncoder(clip_model, text_chunk_size, text_checkpointing)
        self.logit_scale = clip_model.logit_scale
        slots = context_length(n_ctx, ctx_init) if ctx_slots is None else ctx_slots
        self.prompts = (ClassPrompts(self.text_encoder, classnames, slots, ctx_init, position)
                        if (n_ctx or ctx_init) else None)
        self.learner: nn.Module | None = None  # set by the method
        self._evaluation_cache: dict[str, torch.Tensor] | None = None
        self._draw_seed: int | None = None
        self._mc_draws = "per_batch"
        self._cache_scope = None

    @property
    def dtype(self) -> torch.dtype:
        return self.text_encoder.dtype

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, E) unit-norm image features."""
        return F.normalize(self.image_encoder(images.type(self.dtype)), dim=-1)

    def encode_frozen_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, E) unit-norm features of the frozen CLIP (what a zero-shot prediction sees)."""
        return PromptCLIP.encode_images(self, images)

    def encode_prompts(self, ctx: torch.Tensor, deep: tuple = (), normalize: bool = True) -> torch.Tensor:
        """Context (..., K, M, D) -> unit-norm class text features (..., C, E), one batched text pass; ``deep``:
        deep prompt tokens of the text blocks (clipbayes/modeling/deep_prompts.py); ``normalize=False`` keeps
        the features' norms."""
        prompts = self.prompts(ctx)
        lead = prompts.shape[:-3]
        flat = prompts.reshape(-1, *prompts.shape[-2:])
        features = self.text_encoder(flat, self.prompts.buckets, deep, self.prompts.shared_prefix(ctx))
        features = F.normalize(features, dim=-1) if normalize else features
        return features.reshape(*lead, self.num_classes, -1)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp()

    # --- evaluation cache: image-independent class features are encoded once per evaluation ---------------------
    @contextlib.contextmanager
    def evaluation_cache(self, mc_draws: str = "per_batch", draw_seed: int | None = None):
        """Within this block ``cached_text_features(fn)`` calls ``fn`` once and reuses its result, and so does
        ``shared_draws(fn)`` when ``mc_draws`` (TEST.MC_DRAWS) is ``per_evaluation``; with ``draw_seed`` those
        shared draws come from the RNG seeded with it (so they do not depend on which test batch asks first)."""
        if mc_draws not in MC_DRAWS:
            raise ValueError(f"TEST.MC_DRAWS must be one of {MC_DRAWS}, got '{mc_draws}'")
        self._evaluation_cache, self._mc_draws, self._draw_seed = {}, mc_draws, draw_seed
        try:
            yield
        finally:
            self._evaluation_cache, self._mc_draws, self._draw_seed = None, "per_batch", None

    @contextlib.contextmanager
    def cache_scope(self, scope):
        """Within this block the evaluation cache keeps its own entries under ``scope`` (a sampled treatment's
        posterior sample k: each sample's class features are encoded once per evaluation, not shared)."""
        previous, self._cache_scope = self._cache_scope, scope
        try:
            yield
        finally:
            self._cache_scope = previous

    def _cached(self, name: str, compute) -> torch.Tensor:
        if self._evaluation_cache is None:
            return compute()
        key = (self._cache_scope, name)
        if key not in self._evaluation_cache:
            self._evaluation_cache[key] = compute()
        return self._evaluation_cache[key]

    def cached_text_features(self, compute) -> torch.Tensor:
        """Class features that do not depend on the image or on random draws: encoded once per evaluation."""
        return self._cached("class_features", compute)

    def shared_draws(self, compute) -> torch.Tensor:
        """Text features of Monte Carlo prompt draws that do not depend on the image, ``compute()`` (e.g. (1, L, C,
        E)): drawn and encoded once per evaluation and shared by every test image when TEST.MC_DRAWS is
        ``per_evaluation``; on every call (per test batch) when it is ``per_batch`` or outside an evaluation."""
        if self._mc_draws != "per_evaluation":
            return compute()
        if self._draw_seed is None or (self._cache_scope, "draws") in self._evaluation_cache:
            return self._cached("draws", compute)
        device = self.logit_scale.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self._draw_seed)
            return self._cached("draws", compute)

    # --- the method contract ------------------------------------------------------------------------------------
    def train_logits(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> TrainOutput:
        raise NotImplementedError

    def train_loss(self, images: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        """The likelihood of the labels under the training logits plus the method's weighted regularisers."""
        out = self.train_logits(images, labels)
        return likelihood_loss(out.logits, labels if out.labels is None else out.labels, out.regularisers)

    def predict_logits(self, image_features: torch.Tensor) -> torch.Tensor:
        """(B, C) logits, or (L, B, C) logits of L posterior samples, from unit-norm image features (B, E)."""
        raise NotImplementedError

    def predict_features(self, image_features: torch.Tensor, **options) -> torch.Tensor:
        """Scores (B, C) whose softmax is the predictive distribution; depends on an image only via its feature."""
        return predictive_scores(self.predict_logits(image_features, **options))

    def predict(self, images: torch.Tensor, **options) -> torch.Tensor:
        return self.predict_features(self.encode_images(images), **options)

    def reference_text_features(self, image_features: torch.Tensor) -> torch.Tensor:
        """The class text features (..., C, E) the model compares the images (B, E) with, without Monte Carlo
        draws (a posterior's mean): (C, E) when they do not depend on the image, (B, C, E) when they do. Read by
        ReBaPL's repulsion; by default the method's ``class_features()``."""
        class_features = getattr(self, "class_features", None)
        if class_features is None:
            raise NotImplementedError(f"{type(self).__name__} has neither class_features() nor "
                                      f"reference_text_features(image_features): define one to sample it with ReBaPL")
        return class_features()

    def attach_train_features(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Receive the training set's image features (N, E) and labels (N,) (when ``wants_train_features``)."""
        raise NotImplementedError(f"{type(self).__name__} does not use the training set's image features")


@torch.no_grad()
def handcrafted_text_features(text_encoder: TextEncoder, classnames: list[str], templates: list[str],
                              chunk: int = 1000) -> torch.Tensor:
    """(C, E) unit-norm features of hand-crafted prompts ``template.format(name)``.

    Several templates form an ensemble: the mean of the per-template unit-norm features, renormalised.
    """
    names = [name.replace("_", " ") for name in classnames]
    per_template = []
    for template in templates:
        texts = [template.format(name) for name in names]
        feats = torch.cat([text_encoder.encode_texts(texts[i:i + chunk]) for i in range(0, len(texts), chunk)])
        per_template.append(F.normalize(feats.float(), dim=-1))
    return F.normalize(torch.stack(per_template).mean(0), dim=-1)
