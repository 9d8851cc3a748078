"""Fixed-point residual: the relative size of the field at the final state,

    mean over real positions of ‖F(τ_end, h(τ_end); e)‖ / ‖h(τ_end)‖      (norms over channels)

with padding positions masked out. Zero exactly when the state has settled, so integrating further
changes nothing; its gradient reaches the whole trajectory through h(τ_end). One extra field
evaluation per step (a step-conditioned field is read at Δt = 0, its instantaneous velocity).
"""
from __future__ import annotations

import torch

from ..data import Batch
from ..model import LMOutput
from .base import Term, field_of, token_mask


def relative_residual(f: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """(B, L, C), (B, L, C) → (B, L): ‖F‖ / ‖h‖ per position."""
    return f.norm(dim=-1) / h.norm(dim=-1).clamp_min(1e-6)


class FixedPointResidual(Term):
    name = "fixed_point"

    def prepare(self, model: torch.nn.Module) -> None:
        field_of(model, self.name)

    def __call__(self, model: torch.nn.Module, batch: Batch, out: LMOutput | None) -> torch.Tensor:
        h = out.depth.h  # (B, L, C)
        tau = torch.tensor(float(out.depth.depth), dtype=h.dtype, device=h.device)
        residual = relative_residual(model.field(tau, h, out.e), h)  # (B, L)
        mask = token_mask(batch)
        return (residual * mask).sum() / mask.sum().clamp(min=1)
