"""Progressive loss (DeepThinking; Bansal et al. 2022): run n depth units without a graph, then k
more from that detached state with one, and take the answer cross-entropy at the end,

    n ~ U[0, D − 1],  k ~ U[1, D − n],  D = max_factor · T       (a loop: whole steps)

so the field learns to improve any state it finds itself in rather than a fixed count of steps.
The two legs follow the batch's drawn method and step (random discretisation) when there is one.
Costs n field evaluations without a graph and k with one, beside the main forward.
"""
from __future__ import annotations

import torch

from ..data import Batch
from ..depth import DepthPlan, Loop
from ..model import LMOutput
from .base import Term, answer_cross_entropy
from .horizon_ce import nominal_horizon


def draw_legs(total: float, whole: bool) -> tuple[float, float]:
    """(n, k) with 0 <= n <= total − 1 and 1 <= k <= total − n (whole numbers when `whole`)."""
    if whole:
        n = int(torch.randint(int(total), ()).item())
        return float(n), float(torch.randint(1, int(total) - n + 1, ()).item())
    n = torch.rand(()).item() * (total - 1)
    return n, 1 + torch.rand(()).item() * (total - n - 1)


class ProgressiveLoss(Term):
    name = "progressive"

    def __init__(self, max_factor: float = 1.0) -> None:
        if isinstance(max_factor, bool) or not isinstance(max_factor, (int, float)) or not max_factor >= 1:
            raise ValueError(f"progressive max_factor must be a number >= 1, got {max_factor!r}")
        self.max_factor = float(max_factor)

    def prepare(self, model: torch.nn.Module) -> None:
        if nominal_horizon(model, self.name) < 1:
            raise ValueError(f"objective term {self.name!r} needs a horizon of at least 1")

    def __call__(self, model: torch.nn.Module, batch: Batch, out: LMOutput | None) -> torch.Tensor:
        integrator = model.integrator
        whole = isinstance(integrator, Loop)
        total = self.max_factor * nominal_horizon(model, self.name)
        n, k = draw_legs(int(total) if whole else total, whole)
        drawn = out.depth.plan if out is not None and out.depth.plan is not None else DepthPlan()
        grid = {"method": drawn.method, "step_size": drawn.step_size}
        e = out.e if out is not None else model.encode(batch.tokens)  # (B, L, C)
        h = e
        if n > 0:
            with torch.no_grad():
                h = integrator(model.field, e, e, plan=DepthPlan(t_end=n, **grid)).h
        leg = integrator(model.field, h.detach(), e, plan=DepthPlan(t_start=n, t_end=n + k, **grid))
        return answer_cross_entropy(model.decode(leg.h), batch.targets)
