"""Shortcut consistency over hidden states (LoopFormer; Frans et al. 2024): with a field told its
step size Δt (model.step_conditioned=true), one step of size d must move a state as two steps of
size d/2 do,

    F(τ, h; d)  ≈  ½ [F(τ, h; d/2) + F(τ + d/2, h + (d/2)·F(τ, h; d/2); d/2)]

at a state h = h(k) of the batch's own trajectory (k a random integer depth < T, detached) and d
drawn from `levels`. The half steps of the smallest level are read at Δt = 0 (`anchor_zero`), the
instantaneous velocity adaptive solvers use, so the cross-entropy-trained step (Δt = 1 for a loop)
and the continuous flow are tied by a chain of consistent step sizes. `stop_grad`: which side is
the target ("big": the small steps learn to match the big one, "small": the reverse, "none").
Masked mean over real positions of the mean squared difference of the two velocities.
Three field evaluations per step.
"""
from __future__ import annotations

import torch

from ..data import Batch
from ..model import LMOutput
from .base import Term, field_of, integer_depths, step_states, token_mask

STOP_GRAD = ("big", "small", "none")


class ShortcutConsistency(Term):
    name = "shortcut"

    def __init__(self, levels: list[float] | tuple[float, ...] = (1.0, 0.5, 0.25), stop_grad: str = "big",
                 anchor_zero: bool = True) -> None:
        levels = list(levels)
        if not levels or any(isinstance(d, bool) or not isinstance(d, (int, float)) or not d > 0 for d in levels):
            raise ValueError(f"shortcut levels must be a non-empty list of step sizes > 0, got {levels!r}")
        if stop_grad not in STOP_GRAD:
            raise ValueError(f"shortcut stop_grad must be one of {STOP_GRAD}, got {stop_grad!r}")
        self.levels = sorted(float(d) for d in levels)
        self.stop_grad = stop_grad
        self.anchor_zero = bool(anchor_zero)

    def prepare(self, model: torch.nn.Module) -> None:
        field = field_of(model, self.name)
        if not getattr(field, "step_conditioned", False):
            raise ValueError(f"objective term {self.name!r} needs a step-conditioned field: add model.step_conditioned=true")
        integer_depths(model, self.name)

    def trajectory_at(self, model: torch.nn.Module) -> list[float]:
        return [0.0, *integer_depths(model, self.name)[:-1]]  # 0 … T−1: every state a step can start from

    def __call__(self, model: torch.nn.Module, batch: Batch, out: LMOutput | None) -> torch.Tensor:
        depths = self.trajectory_at(model)
        states = step_states(out, depths)  # (T, B, L, C)
        k = int(torch.randint(len(depths), ()).item())
        i = int(torch.randint(len(self.levels), ()).item())
        d = self.levels[i]
        half = d / 2
        dt_half = 0.0 if self.anchor_zero and i == 0 else half
        h = states[k].detach()  # (B, L, C)
        tau = torch.tensor(depths[k], dtype=h.dtype, device=h.device)
        field, e = model.field, out.e
        big = field(tau, h, e, dt=d)
        f1 = field(tau, h, e, dt=dt_half)
        f2 = field(tau + half, h + half * f1, e, dt=dt_half)
        small = (f1 + f2) / 2
        if self.stop_grad == "big":
            big = big.detach()
        elif self.stop_grad == "small":
            small = small.detach()
        error = (big - small).pow(2).mean(-1)  # (B, L)
        mask = token_mask(batch)
        return (error * mask).sum() / mask.sum().clamp(min=1)
