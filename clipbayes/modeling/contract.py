"""The method contract: what the trainer asks of a method's model, in one place.

Shapes: B images, C classes, E joint embedding width, L Monte Carlo samples.

Training
    ``train_logits(images (B, 3, H, W), labels (B,) | None) -> TrainOutput``
    ``train_loss(images, labels) -> LossOutput``   (the shared base applies the likelihood objective)
Prediction (depends on an image only through its unit-norm feature, so features can be cached)
    ``encode_images(images) -> (B, E)``
    ``predict_logits(image_features (B, E)) -> (B, C) logits, or (L, B, C) logits of L posterior samples``
    ``predict_features(image_features) -> scores (B, C)``:  softmax(scores) is the method's predictive
        distribution: the logits themselves for a (B, C) prediction, log((1/L) sum_l softmax(logits_l)) for
        (L, B, C) samples. ``predict(images)`` = ``predict_features(encode_images(images))``.
    ``evaluation_cache(mc_draws="per_batch")``: within it, image-independent class features are computed once, and
        with ``mc_draws="per_evaluation"`` (TEST.MC_DRAWS) so are image-independent Monte Carlo prompt draws.
    ``encode_frozen_images(images) -> (B, E)``: the frozen CLIP's features (equal to ``encode_images`` unless the
        method prompts the image tower); what zero-shot logits are computed from (LogitPrior).
    ``reference_text_features(image_features (B, E)) -> (C, E) or (B, C, E)``: the class text features the model
        compares the images with, without Monte Carlo draws (ReBaPL's repulsion; ``PromptCLIP``: ``class_features()``).
    ``cache_scope(scope)``: within it the evaluation cache keeps separate entries (one per ReBaPL sample).
State
    ``learner``: the only module the trainer optimises and checkpoints (None: nothing to train);
    ``dtype`` of the frozen CLIP; ``num_classes``; ``wants_train_features``: when True the trainer computes the
    training set's image features once before training and hands them to ``attach_train_features``;
    ``learned_image_features``: True when image features depend on the learner (vision prompts), so they are
    computed once per evaluation but never reused across runs (MODEL.CLIP.IMAGE_FEATURE_CACHE).
"""
from __future__ import annotations

from typing import ContextManager, NamedTuple, Protocol, runtime_checkable

import torch
import torch.nn as nn
from torch import Tensor


class TrainOutput(NamedTuple):
    """What a method's ``train_logits`` returns.

    ``logits`` (B', C) or (L, B', C); ``image_features`` (B', E) unit-norm, rows aligned with the logits' batch
    dim; ``regularisers`` weighted scalar terms added to the loss; ``labels`` (B',) when the method changed the
    batch (e.g. appended augmented rows), else None (the batch's own labels).
    """

    logits: Tensor
    image_features: Tensor
    regularisers: dict
    labels: Tensor | None = None


class LossOutput(NamedTuple):
    """``loss`` scalar to minimise; ``scores`` (B', C) whose softmax is the predictive on the training rows (for the
    training accuracy); ``parts`` plain floats to log."""

    loss: Tensor
    scores: Tensor
    parts: dict


@runtime_checkable
class MethodModel(Protocol):
    """The members the trainer uses (see the module docstring for their shapes and meaning)."""

    learner: nn.Module | None
    wants_train_features: bool
    learned_image_features: bool

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def num_classes(self) -> int: ...

    def encode_images(self, images: Tensor) -> Tensor: ...

    def encode_frozen_images(self, images: Tensor) -> Tensor: ...

    def train_logits(self, images: Tensor, labels: Tensor | None = None) -> TrainOutput: ...

    def train_loss(self, images: Tensor, labels: Tensor) -> LossOutput: ...

    def predict_logits(self, image_features: Tensor) -> Tensor: ...

    def predict_features(self, image_features: Tensor) -> Tensor: ...

    def predict(self, images: Tensor) -> Tensor: ...

    def evaluation_cache(self, mc_draws: str = "per_batch", draw_seed: int | None = None) -> ContextManager: ...

    def attach_train_features(self, features: Tensor, labels: Tensor) -> None: ...

    def reference_text_features(self, image_features: Tensor) -> Tensor: ...

    def cache_scope(self, scope) -> ContextManager: ...


class WrappedModel(nn.Module):
    """Thin base of a method that wraps another method's model ``base`` (LogitPrior, ReBaPL): every member the
    wrapper does not define itself is the base's, so the wrapper satisfies the contract by overriding only what it
    changes (``train_loss``; ReBaPL also the prediction and the learner). LogitPrior's checkpoints are the base's
    learner."""

    def __init__(self, base: nn.Module):
        super().__init__()
        self.base = base

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)  # parameters, buffers and submodules of the wrapper itself
        except AttributeError:
            if name == "base":
                raise
            return getattr(self._modules["base"], name)
