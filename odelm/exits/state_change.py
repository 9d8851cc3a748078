"""Exit when the hidden state stops moving: the change per unit depth falls below ε.

    loop:  d_k = ‖h_k − h_{k−1}‖ / ‖h_k‖            (per position, norm over channels)
    ODE:   d(τ) = ‖F(τ, h(τ); e)‖ / ‖h(τ)‖           (the same quantity per unit depth; for Euler
                                                      with unit step the two coincide)

`relative=False` drops the division (absolute change). An example exits once d < ε at every
read-out position. The ODE form costs one extra field evaluation per event check (counted).
"""
from __future__ import annotations

from typing import Callable

import torch

from .base import Criterion, ExitContext, check_number, masked_max


class StateChange(Criterion):
    name = "state_change"

    def __init__(self, threshold: float = 0.05, relative: bool = True, min_depth: float = 1.0) -> None:
        super().__init__(min_depth)
        self.threshold = check_number(threshold, "exit.threshold")
        if not isinstance(relative, bool):
            raise ValueError(f"exit.relative must be true or false, got {relative!r}")
        self.relative = relative

    def change(self, delta: torch.Tensor, h: torch.Tensor, ctx: ExitContext) -> torch.Tensor:
        """(B, L, C) change and state → (B,) largest (relative) change over the read-out positions."""
        d = delta.norm(dim=-1)
        if self.relative:
            d = d / h.norm(dim=-1).clamp_min(1e-12)
        return masked_max(d, ctx.mask)

    def done(self, k, h_prev, h, ctx, state) -> torch.Tensor:
        return self.change(h - h_prev, h, ctx) < self.threshold

    def margin(
        self, tau: torch.Tensor, h: torch.Tensor, aux, velocity: Callable[[], torch.Tensor], ctx: ExitContext
    ) -> torch.Tensor:
        return self.change(velocity(), h, ctx) - self.threshold
