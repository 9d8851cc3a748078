"""The fixed-iteration looped model: h_{k+1} = h_k + F(k, h_k; e), k = 0 … loops−1.

This is explicit Euler with unit step on the grid 0, 1, …, loops; `ODESolve(method="euler",
step_size=1, t_end=loops)` computes the same states from the same field.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..field import VectorField
from .base import DepthOutput, Integrator, check_trajectory_at


class Loop(Integrator):
    name = "loop"

    def __init__(self, loops: int = 4) -> None:
        if isinstance(loops, bool) or not isinstance(loops, int) or loops < 1:
            raise ValueError(f"loops must be an integer >= 1, got {loops!r}")
        self.loops = loops

    @property
    def t_end(self) -> float:
        return float(self.loops)

    def __call__(
        self,
        field: VectorField,
        h0: torch.Tensor,
        e: torch.Tensor,
        trajectory_at: Sequence[float] | None = None,
    ) -> DepthOutput:
        taus = check_trajectory_at(trajectory_at, self.t_end)
        if taus is not None and any(t != int(t) for t in taus):
            raise ValueError(f"a loop has states at integer depths only, got trajectory_at={taus}")
        keep = {int(t) for t in taus} if taus is not None else set()
        states = [h0] if 0 in keep else []
        h = h0  # (B, L, C)
        for k in range(self.loops):
            h = h + field(torch.tensor(float(k), dtype=h0.dtype, device=h0.device), h, e)
            if k + 1 in keep:
                states.append(h)
        return DepthOutput(
            h=h,
            nfe_forward=self.loops,
            steps_accepted=self.loops,
            steps_rejected=0,
            depth=self.t_end,
            trajectory=torch.stack(states) if taus is not None else None,
            trajectory_tau=taus,
        )
