"""Convergence stop: integrate until the state has settled, i.e. the relative residual

    r = ‖F(τ, h; e)‖ / ‖h‖        (Frobenius norms over the example's positions up to its last
                                   read-out position, and channels)

falls below ε (`threshold`), up to the maximum horizon (`max_depth`, alias `max_t_end`), so the
test-time compute chooses itself. The ODE check runs at solver step ends only and reads the
derivative the solver has already computed there (no extra field evaluation); the solve stops at
the end of the first step where r < ε. The looped form reads the loop's own update,
r_k = ‖h_k − h_{k−1}‖ / ‖h_k‖ (Euler with unit step: the same quantity, one step late).
"""
from __future__ import annotations

from typing import Callable

import torch

from .base import Criterion, ExitContext, check_number


def prefix_mask(mask: torch.Tensor) -> torch.Tensor:
    """(B, L) read-out positions → (B, L) bool: every position up to each row's last read-out one."""
    return mask.flip(1).cumsum(1).flip(1) > 0


def relative_residual(f: torch.Tensor, h: torch.Tensor, ctx: ExitContext) -> torch.Tensor:
    """(B, L, C) update and state → (B,) ‖f‖ / ‖h‖ over the example's positions up to its last read-out."""
    keep = prefix_mask(ctx.mask).to(f.dtype)[..., None]  # (B, L, 1)
    num = (f * keep).pow(2).sum(dim=(1, 2)).sqrt()
    den = (h * keep).pow(2).sum(dim=(1, 2)).sqrt().clamp_min(1e-12)
    return num / den


class Converged(Criterion):
    name = "converged"
    at_steps_only = True  # ODE: checked at solver step ends, where the solver's derivative is reused

    def __init__(self, threshold: float = 1e-3, min_depth: float = 1.0) -> None:
        super().__init__(min_depth)
        self.threshold = check_number(threshold, "exit.threshold")

    def done(self, k, h_prev, h, ctx, state) -> torch.Tensor:
        return relative_residual(h - h_prev, h, ctx) < self.threshold

    def margin(
        self, tau: torch.Tensor, h: torch.Tensor, aux, velocity: Callable[[], torch.Tensor], ctx: ExitContext
    ) -> torch.Tensor:
        return relative_residual(velocity(), h, ctx) - self.threshold
