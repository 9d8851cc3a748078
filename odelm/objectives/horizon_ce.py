"""Random horizons with the loss at each end: each training forward runs to a horizon drawn
T' ~ U[T, max_factor·T] (a loop: whole loops), and this term is the answer cross-entropy of the
state at the nominal horizon T on the way. With `ce` (read at T') the answer is trained at both
ends, so integrating past the trained horizon must leave it unchanged (no overthinking)."""
from __future__ import annotations

import torch

from ..data import Batch
from ..depth import Loop
from ..model import LMOutput
from .base import Term, answer_cross_entropy, step_states


def nominal_horizon(model: torch.nn.Module, term: str) -> float:
    integrator = getattr(model, "integrator", None)
    if integrator is None:
        raise ValueError(f"objective term {term!r} needs a latent model (model=looped or model=ode)")
    return float(integrator.t_end)


class HorizonCrossEntropy(Term):
    name = "horizon_ce"
    plan_keys = frozenset({"t_end"})

    def __init__(self, max_factor: float = 4.0) -> None:
        if isinstance(max_factor, bool) or not isinstance(max_factor, (int, float)) or not max_factor > 1:
            raise ValueError(f"horizon_ce max_factor must be a number > 1, got {max_factor!r}")
        self.max_factor = float(max_factor)

    def prepare(self, model: torch.nn.Module) -> None:
        nominal_horizon(model, self.name)

    def trajectory_at(self, model: torch.nn.Module) -> list[float]:
        return [nominal_horizon(model, self.name)]

    def plan(self, model: torch.nn.Module) -> dict:
        T = nominal_horizon(model, self.name)
        if isinstance(model.integrator, Loop):
            return {"t_end": float(torch.randint(int(T), int(self.max_factor * T) + 1, ()).item())}
        return {"t_end": T + torch.rand(()).item() * (self.max_factor - 1) * T}

    def __call__(self, model: torch.nn.Module, batch: Batch, out: LMOutput | None) -> torch.Tensor:
        T = nominal_horizon(model, self.name)
        return answer_cross_entropy(model.decode(step_states(out, [T])[0]), batch.targets)
