"""Ouro exit-gate training, Stage II: the gate alone, with the language model frozen, learns to
continue while the loss is still improving. Per supervised token and step t = 2 … T:

    I_t = max(0, L_{t−1} − L_t),  w_t = σ(k (I_t − γ)),
    L = −mean_t [ w_t log(1 − λ_t) + (1 − w_t) log λ_t ]      (k = 50, γ = 0.005 as in Ouro)

`prepare` freezes every parameter but the gate's (requires_grad False). Start it from a Stage I (or
any trained, gated) checkpoint: objective.teacher=CKPT objective.init_from_teacher=true.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data import Batch
from ..model import LMOutput
from .base import Term, integer_depths
from .ouro_stage1 import require_gate, steps_losses_and_gates


def improvement_labels(step_losses: torch.Tensor, k: float, gamma: float) -> torch.Tensor:
    """(T, N) per-step losses → (T−1, N) soft labels w_t = σ(k (max(0, L_{t−1} − L_t) − γ)), t = 2 … T."""
    improvement = (step_losses[:-1] - step_losses[1:]).clamp(min=0)
    return torch.sigmoid(k * (improvement - gamma))


def stage2_loss(step_losses: torch.Tensor, gates: torch.Tensor, k: float, gamma: float) -> torch.Tensor:
    """BCE of λ_t against "stop" = 1 − w_t, t = 2 … T; the labels carry no gradient."""
    w = improvement_labels(step_losses.detach(), k, gamma)
    return F.binary_cross_entropy(gates[1:], 1 - w)


class OuroStage2(Term):
    name = "ouro_stage2"

    def __init__(self, k: float = 50.0, gamma: float = 0.005) -> None:
        for key, value in (("k", k), ("gamma", gamma)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"ouro_stage2 {key} must be a number >= 0, got {value!r}")
        self.k, self.gamma = float(k), float(gamma)

    def trajectory_at(self, model: torch.nn.Module) -> list[float]:
        return integer_depths(model, self.name)

    def prepare(self, model: torch.nn.Module) -> None:
        require_gate(model, self.name)
        if len(integer_depths(model, self.name)) < 2:
            raise ValueError(f"objective term {self.name!r} compares consecutive steps: it needs a horizon >= 2")
        for name, param in model.named_parameters():  # the language model is frozen; the gate trains alone
            param.requires_grad_(name.startswith("exit_gate."))

    def __call__(self, model: torch.nn.Module, batch: Batch, out: LMOutput | None) -> torch.Tensor:
        losses, gates = steps_losses_and_gates(model, batch, out, self.name)
        return stage2_loss(losses, gates, self.k, self.gamma)
