"""Cross-entropy at every depth step: the answer CE of decode(h_t), averaged over t = 1 … T
(the looped model's every loop step; the ODE model's integer depths)."""
from __future__ import annotations

import torch

from ..data import IGNORE, Batch
from ..model import LMOutput
from .base import Term, integer_depths, per_token_ce, step_states


class CrossEntropyAllSteps(Term):
    name = "ce_all_steps"

    def trajectory_at(self, model: torch.nn.Module) -> list[float]:
        return integer_depths(model, self.name)

    def prepare(self, model: torch.nn.Module) -> None:
        integer_depths(model, self.name)

    def __call__(self, model: torch.nn.Module, batch: Batch, out: LMOutput | None) -> torch.Tensor:
        logits = step_logits(model, step_states(out, integer_depths(model, self.name)))  # (T, B, L, V)
        supervised = batch.targets != IGNORE  # (B, L)
        return per_token_ce(logits, batch.targets)[:, supervised].mean()


def step_logits(model: torch.nn.Module, states: torch.Tensor) -> torch.Tensor:
    """(T, B, L, C) states → (T, B, L, V) logits, decoding every step with the shared coda and head."""
    T, B = states.shape[:2]
    return model.decode(states.flatten(0, 1)).unflatten(0, (T, B))
