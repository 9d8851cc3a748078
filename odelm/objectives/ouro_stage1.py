"""Ouro exit-gate training, Stage I (arXiv 2510.25741): the expected task loss under the learned
exit distribution, minus an entropy bonus,

    L = Σ_t p(t) · L_t − β · H(p),   p(t) = λ_t ∏_{j<t} (1 − λ_j) for t < T,  p(T) = ∏_{j<T} (1 − λ_j),

with the gate λ_t = σ(w·h_t + b) (LatentLM.exit_probability) and L_t the answer CE of decode(h_t),
per supervised token, at t = 1 … T (loop steps; an ODE model's integer depths). Trains the LM and
the gate together. Needs model.exit_gate=true.
"""
from __future__ import annotations

import torch

from ..data import IGNORE, Batch
from ..model import LMOutput
from .base import Term, integer_depths, per_token_ce, step_states
from .ce_all_steps import step_logits


def exit_distribution(gates: torch.Tensor) -> torch.Tensor:
    """Gates λ (T, ...) → exit probabilities p (T, ...), summing to 1 over t (leftover mass on T)."""
    survive = torch.cumprod(1 - gates, dim=0)  # ∏_{j<=t} (1 − λ_j)
    before = torch.cat([torch.ones_like(gates[:1]), survive[:-1]])  # ∏_{j<t} (1 − λ_j)
    return torch.cat([(gates * before)[:-1], before[-1:]])


def stage1_loss(step_losses: torch.Tensor, gates: torch.Tensor, beta: float) -> torch.Tensor:
    """step_losses, gates: (T, N) per step and token → mean over tokens of Σ_t p_t L_t − β H(p)."""
    p = exit_distribution(gates)
    entropy = -(p * p.clamp_min(1e-12).log()).sum(0)  # (N,)
    return ((p * step_losses).sum(0) - beta * entropy).mean()


def require_gate(model: torch.nn.Module, term: str) -> None:
    if getattr(model, "exit_gate", None) is None:
        raise ValueError(f"objective term {term!r} trains the exit gate: add model.exit_gate=true")


def steps_losses_and_gates(model: torch.nn.Module, batch: Batch, out: LMOutput | None, term: str):
    """(T, N) per-step CE and (T, N) gates at the N supervised tokens of the batch."""
    states = step_states(out, integer_depths(model, term))  # (T, B, L, C)
    supervised = batch.targets != IGNORE  # (B, L)
    losses = per_token_ce(step_logits(model, states), batch.targets)  # (T, B, L)
    gates = model.exit_probability(states)  # (T, B, L)
    return losses[:, supervised], gates[:, supervised]


class OuroStage1(Term):
    name = "ouro_stage1"

    def __init__(self, beta: float = 0.1) -> None:
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or beta < 0:
            raise ValueError(f"ouro_stage1 beta must be a number >= 0, got {beta!r}")
        self.beta = float(beta)

    def trajectory_at(self, model: torch.nn.Module) -> list[float]:
        return integer_depths(model, self.name)

    def prepare(self, model: torch.nn.Module) -> None:
        require_gate(model, self.name)
        integer_depths(model, self.name)

    def __call__(self, model: torch.nn.Module, batch: Batch, out: LMOutput | None) -> torch.Tensor:
        losses, gates = steps_losses_and_gates(model, batch, out, self.name)
        return stage1_loss(losses, gates, self.beta)
