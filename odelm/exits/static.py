"""Static depth: never exit early; every example runs to the maximum depth (exit.max_depth, or the
model's loops / solver.t_end). The baseline every adaptive strategy is compared against."""
from __future__ import annotations

from typing import Callable

import torch

from .base import Criterion, ExitContext


class StaticDepth(Criterion):
    name = "static"

    def __init__(self, min_depth: float = 0.0) -> None:
        super().__init__(min_depth)

    def done(self, k, h_prev, h, ctx, state) -> torch.Tensor:
        return torch.zeros(h.shape[0], dtype=torch.bool, device=h.device)

    def margin(
        self, tau: torch.Tensor, h: torch.Tensor, aux, velocity: Callable[[], torch.Tensor], ctx: ExitContext
    ) -> torch.Tensor:
        return torch.ones(h.shape[0], dtype=h.dtype, device=h.device)
