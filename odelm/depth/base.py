"""Shared types of the depth integrators: the typed output and the base class."""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Sequence

import torch


from ..field import VectorField
from .plan import DepthPlan


class SolverError(RuntimeError):
    """A solve that could not finish (step budget exhausted, step size underflow, non-finite state)."""


@dataclass
class DepthOutput:
    """What an integrator returns.

    h: (B, L, C) state at the final depth.
    nfe_forward: field evaluations made by this forward solve (batched calls).
    steps_accepted / steps_rejected: solver steps (fixed grid and loops: every step is accepted).
    depth: the depth τ reached (t_end, T for a loop, or an exit/event depth).
    trajectory: (K, B, L, C) states at `trajectory_tau` (K depths), when requested.
    regularisers: RNODE integrals, e.g. {"kinetic": (B,), "jacobian": (B,)}, when the plan asked (ODESolve).
    plan: the per-call DepthPlan the solve followed (None: the nominal solve).
    """

    h: torch.Tensor
    nfe_forward: int
    steps_accepted: int
    steps_rejected: int
    depth: float
    trajectory: torch.Tensor | None = None
    trajectory_tau: list[float] | None = None
    regularisers: dict[str, torch.Tensor] | None = None  # name → (B,) integral over depth (training solves)
    plan: DepthPlan | None = None


class Integrator(abc.ABC):
    """Traverses depth: maps h(0) to h(t_end) under a VectorField with prompt encoding e."""

    name: str

    @abc.abstractmethod
    def __call__(
        self,
        field: VectorField,
        h0: torch.Tensor,
        e: torch.Tensor,
        trajectory_at: Sequence[float] | None = None,
        mask: torch.Tensor | None = None,
        plan: DepthPlan | None = None,
    ) -> DepthOutput:
        """h0, e: (B, L, C). trajectory_at: depths at which to also return the state. mask: (B, L)
        bool, True at real (non-padding) tokens, for what averages over positions (None: all real).
        plan: this call's departures from the nominal depth (set by a training objective)."""

    @property
    @abc.abstractmethod
    def t_end(self) -> float:
        """Nominal depth horizon (loops for a loop)."""

    def describe(self) -> dict:
        """The settings that define this integrator, for metrics.json."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


def check_trajectory_at(trajectory_at: Sequence[float] | None, t_end: float, t_start: float = 0.0) -> list[float] | None:
    if trajectory_at is None:
        return None
    taus = sorted({float(t) for t in trajectory_at})
    bad = [t for t in taus if not t_start <= t <= t_end]
    if bad:
        raise ValueError(f"trajectory_at depths {bad} lie outside [{t_start:g}, t_end={t_end}]")
    return taus


