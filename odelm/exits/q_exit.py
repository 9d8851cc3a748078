"""Ouro's Q-exit: the learned gate λ_t = σ(w·h_t + b) defines an exit distribution over steps

    p(t) = λ_t ∏_{j<t} (1 − λ_j),  t = 1 … T,   with the leftover mass ∏_{j<T}(1 − λ_j) on t = T,

and inference exits at the first step whose CDF(t) = 1 − ∏_{j<=t}(1 − λ_j) reaches q.

ODE form: λ is read as a hazard per unit depth, so the survival S(τ) = 1 − CDF obeys
d log S / dτ = log(1 − λ(h(τ))), integrated beside h by the solver (for Euler with unit step this
sums log(1 − λ) over h_0 … h_{k−1}: the loop's sum shifted by one step, since the gate of h_k is
only known after the step that produces it). The event fires when CDF(τ) >= q.
"""
from __future__ import annotations

from typing import Callable

import torch

from .base import Criterion, ExitContext, check_number, masked_max, masked_min

_MAX_LAMBDA = 1.0 - 1e-6  # keeps log(1 − λ) finite


def exit_distribution(lambdas: torch.Tensor) -> torch.Tensor:
    """(T, ...) gate values λ_1 … λ_T → (T, ...) p(t) = λ_t ∏_{j<t}(1 − λ_j), leftover mass on t = T."""
    survival = torch.cumprod(1 - lambdas, dim=0)  # S_t = ∏_{j<=t}(1 − λ_j)
    before = torch.cat([torch.ones_like(survival[:1]), survival[:-1]])  # S_{t−1}
    p = lambdas * before
    p[-1] = before[-1]  # the last step takes everything not taken before it
    return p


def q_exit_step(lambdas: torch.Tensor, q: float) -> torch.Tensor:
    """(T, ...) gates → (...) the first step t (1-based) with CDF(t) >= q (T if none)."""
    cdf = torch.cumsum(exit_distribution(lambdas), dim=0)
    reached = cdf >= q
    reached[-1] = True
    return reached.float().argmax(dim=0) + 1


class QExit(Criterion):
    name = "q_exit"
    needs_gate = True

    def __init__(self, q: float = 0.5, min_depth: float = 1.0) -> None:
        super().__init__(min_depth)
        self.q = check_number(q, "exit.q", high=1.0)

    def _log1m_gate(self, h: torch.Tensor, ctx: ExitContext) -> torch.Tensor:
        if ctx.gate is None:
            raise ValueError("exit=q_exit needs a model with an exit gate (model.exit_gate=true)")
        return torch.log1p(-ctx.gate(h).clamp(max=_MAX_LAMBDA))  # (B, L)

    def start(self, h0: torch.Tensor, ctx: ExitContext) -> dict[str, torch.Tensor]:
        return {"log_survival": torch.zeros(ctx.mask.shape, dtype=h0.dtype, device=h0.device)}

    def done(self, k, h_prev, h, ctx, state) -> torch.Tensor:
        state["log_survival"] = state["log_survival"] + self._log1m_gate(h, ctx)
        cdf = 1 - state["log_survival"].exp()
        return masked_min(cdf, ctx.mask) >= self.q

    def aux0(self, h0: torch.Tensor, ctx: ExitContext) -> torch.Tensor:
        return torch.zeros(ctx.mask.shape, dtype=h0.dtype, device=h0.device)

    def aux_rate(self, tau: torch.Tensor, h: torch.Tensor, ctx: ExitContext) -> torch.Tensor:
        return self._log1m_gate(h, ctx)

    def margin(
        self, tau: torch.Tensor, h: torch.Tensor, aux, velocity: Callable[[], torch.Tensor], ctx: ExitContext
    ) -> torch.Tensor:
        # CDF >= q at every read-out position ⇔ max log S <= log(1 − q)
        bound = torch.log1p(torch.tensor(-min(self.q, _MAX_LAMBDA), dtype=aux.dtype, device=aux.device))
        return masked_max(aux, ctx.mask) - bound
