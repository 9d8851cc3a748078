"""RNODE regularisers (Finlay et al. 2020): kinetic energy ∫ ‖F‖² dτ and Jacobian Frobenius norm
∫ ‖∂F/∂h‖_F² dτ (Hutchinson: ‖εᵀ ∂F/∂h‖², ε ~ N(0, I)), both means over (L, C) per example.

They are integrated by the ODE solver itself as extra states beside h (asked per training forward
through the objective's DepthPlan: `regularisers`),
with no say in step-size control, so they cost no extra field evaluations; the Jacobian term costs
one vector-Jacobian product per evaluation. Evaluation solves do not integrate them.
"""
from __future__ import annotations

import torch

from ..data import Batch
from ..depth import ODESolve
from ..model import LMOutput
from .base import Term


class _RNODETerm(Term):
    state: str

    def prepare(self, model: torch.nn.Module) -> None:
        integrator = getattr(model, "integrator", None)
        if not isinstance(integrator, ODESolve):
            raise ValueError(f"objective term {self.name!r} is integrated by the ODE solver: use model=ode")

    def plan(self, model: torch.nn.Module) -> dict:
        return {"regularisers": (self.state,)}

    def __call__(self, model: torch.nn.Module, batch: Batch, out: LMOutput | None) -> torch.Tensor:
        states = out.depth.regularisers or {}
        if self.state not in states:
            raise ValueError(f"the solve did not integrate the {self.state!r} state: pass the objective's plan "
                             "to the forward, model(tokens, plan=objective.plan(model))")
        return states[self.state].mean()


class KineticEnergy(_RNODETerm):
    name = "kinetic_energy"
    state = "kinetic"


class JacobianFrobenius(_RNODETerm):
    name = "jacobian_frobenius"
    state = "jacobian"
