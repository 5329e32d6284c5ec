"""The state of a sampled prompt posterior: the chain (a prompt learner being trained) and the samples it left.

``SampleChain`` is the module a sampling treatment hands to the trainer as its learner: its parameters are the
chain's (the base learner's, optimised by SGHMC), its buffers hold what a checkpoint must carry

    samples         (K, P)  the chain's parameters, flattened in ``named_parameters`` order, at each collection
    sample_epochs   (K,)    the 0-based epoch after which each was collected
    anchor          (R, E)  the representation of the newest sample (what the repulsion pushes away from)
    initial         (P,)    the chain's starting point (parallel chains restart from it)

K and R grow during training; a checkpoint loads whatever they are (``resizable_state``, with the chain's own).
``loaded(k)`` puts sample k into the chain for a prediction and restores the chain afterwards.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn


class SampleChain(nn.Module):
    SAMPLE_STATE = ("samples", "sample_epochs", "anchor")

    def __init__(self, chain: nn.Module):
        super().__init__()
        self.chain = chain
        flat = self.flat_parameters()
        self.register_buffer("samples", flat.new_zeros(0, flat.numel()))
        self.register_buffer("sample_epochs", torch.zeros(0, dtype=torch.long, device=flat.device))
        self.register_buffer("anchor", flat.new_zeros(0, 0))
        self.register_buffer("initial", flat.clone())

    def forward(self, *args, **kwargs):
        return self.chain(*args, **kwargs)

    @property
    def resizable_state(self) -> tuple:
        """The entries a checkpoint may hold at another size: the sample store's, and the chain's own (APEX's)."""
        return self.SAMPLE_STATE + tuple(f"chain.{name}" for name in getattr(self.chain, "resizable_state", ()))

    @property
    def num_samples(self) -> int:
        return self.samples.shape[0]

    def flat_parameters(self) -> torch.Tensor:
        """(P,) the chain's parameters, flattened, detached."""
        return torch.cat([p.detach().reshape(-1) for p in self.chain.parameters()])

    @torch.no_grad()
    def set_flat_parameters(self, flat: torch.Tensor) -> None:
        start = 0
        for param in self.chain.parameters():
            param.copy_(flat[start:start + param.numel()].view_as(param))
            start += param.numel()

    @torch.no_grad()
    def collect(self, epoch: int, anchor: torch.Tensor) -> None:
        """Keep the chain's current parameters as a sample, collected after ``epoch``, with its representation."""
        self.samples = torch.cat([self.samples, self.flat_parameters().unsqueeze(0).to(self.samples.dtype)])
        self.sample_epochs = torch.cat([self.sample_epochs, self.sample_epochs.new_tensor([epoch])])
        self.anchor = anchor.detach().to(self.anchor.dtype).clone()

    @torch.no_grad()
    def restart(self) -> None:
        """Put the chain back at its starting point (parallel chains)."""
        self.set_flat_parameters(self.initial)

    @contextlib.contextmanager
    def loaded(self, k: int):
        """Within this block the chain holds sample k; its own parameters are restored on exit."""
        current = self.flat_parameters().clone()
        self.set_flat_parameters(self.samples[k])
        try:
            yield
        finally:
            self.set_flat_parameters(current)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in self.SAMPLE_STATE:
            saved = state_dict.get(prefix + name)
            mine = getattr(self, name)
            if saved is not None and saved.shape != mine.shape:
                setattr(self, name, torch.empty_like(saved, dtype=mine.dtype, device=mine.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
