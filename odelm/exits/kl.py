"""Huginn's zero-shot exit: stop once the decoded distribution stops changing,
KL(p_t ‖ p_{t−δ}) < ε at every read-out position (Huginn: ε = 5e-4, δ = 1).

    loop:  p_t = softmax(decode(h_t)); compared with the distribution δ steps earlier.
    ODE:   the state δ earlier is not kept by the solver, so it is linearised:
           KL(p(h) ‖ p(h − δ·F(τ, h; e))), one extra field evaluation per event check (counted).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .base import Criterion, ExitContext, check_number, masked_max


def kl_divergence(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """(..., V) log-probabilities → (...) KL(p ‖ q)."""
    return (logp.exp() * (logp - logq)).sum(-1)


class KLExit(Criterion):
    name = "kl"

    def __init__(self, threshold: float = 5e-4, lag: int = 1, min_depth: float = 1.0) -> None:
        super().__init__(min_depth)
        self.threshold = check_number(threshold, "exit.threshold")
        if isinstance(lag, bool) or not isinstance(lag, int) or lag < 1:
            raise ValueError(f"exit.lag must be an integer >= 1, got {lag!r}")
        self.lag = lag

    def _logp(self, h: torch.Tensor, ctx: ExitContext) -> torch.Tensor:
        return F.log_softmax(ctx.decode(h).float(), dim=-1)  # (B, L, V)

    def start(self, h0: torch.Tensor, ctx: ExitContext) -> dict[str, torch.Tensor]:
        # history[:, j] = log p_{k−lag+j}; starts as lag copies of p_0 (so k < lag compares with p_0)
        return {"history": self._logp(h0, ctx)[:, None].repeat(1, self.lag, 1, 1)}

    def done(self, k, h_prev, h, ctx, state) -> torch.Tensor:
        logp = self._logp(h, ctx)
        past = state["history"][:, 0]
        state["history"] = torch.cat([state["history"][:, 1:], logp[:, None]], dim=1)
        met = masked_max(kl_divergence(logp, past), ctx.mask) < self.threshold
        return met & (k >= self.lag)

    def margin(
        self, tau: torch.Tensor, h: torch.Tensor, aux, velocity: Callable[[], torch.Tensor], ctx: ExitContext
    ) -> torch.Tensor:
        kl = kl_divergence(self._logp(h, ctx), self._logp(h - self.lag * velocity(), ctx))
        return masked_max(kl, ctx.mask) - self.threshold
