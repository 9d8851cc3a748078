"""The vector field F_θ(τ, h; e): the net update of R shared transformer blocks.

    F(τ, h; e) = Blocks(inject(h, e), τ) − inject(h, e) − λ·h      (B, L, C)

so the looped model `h ← h + F(k, h; e)` re-applies the shared blocks to its own (injected) state,
and an ODE solver integrates the same F over depth τ. λ ≥ 0 (`state_decay`, default 0) is a leak:
the blocks' update is bounded (every block normalises its input), so with λ > 0 the state cannot
grow without bound and settles where the update balances the decay. Both integrators use this one module.
Knows nothing about how it is integrated.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Iterator

import torch
from torch import nn

from .nn import Block

INJECTIONS = ("none", "add", "concat")


@dataclass
class NFECounter:
    """Counts field evaluations. `forward`: calls made; `backward`: vector-Jacobian products
    taken through the field's output during back-propagation (one per call made inside an
    adjoint solve; one per recorded evaluation under direct back-propagation); `probe`:
    vector-Jacobian products a regulariser takes itself (RNODE's Hutchinson probe, inside the
    solve), counted apart from back-propagation's."""

    forward: int = 0
    backward: int = 0
    probe: int = 0
    probing: bool = dataclass_field(default=False, repr=False)  # a probe's vector-Jacobian product is running

    def reset(self) -> None:
        self.forward = 0
        self.backward = 0
        self.probe = 0

    @contextmanager
    def probe_vjp(self) -> Iterator[None]:
        """Vector-Jacobian products taken through the field inside this block count as `probe`."""
        self.probing = True
        try:
            yield
        finally:
            self.probing = False


def check_state_decay(value) -> None:
    """model.state_decay: a finite number >= 0 (the field's leak λ)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ValueError(f"model.state_decay must be a finite number >= 0, got {value!r}")


class VectorField(nn.Module):
    """F(τ, h; e) for h, e of shape (B, L, C); τ a scalar tensor.

    Args:
        injection: how the prompt encoding `e` re-enters each evaluation:
            "none" (h alone, as Ouro), "add" (h + e), "concat" (Linear([h, e]) → C, as Huginn's adapter).
        depth_conditioned: τ-conditioning of every block, zero-initialised (starts autonomous).
        rotary: rotary positions inside the blocks' attention.
        step_conditioned: Δt-conditioning of every block, zero-initialised: F(τ, h; e, Δt) is the
            update of one step of size Δt (a loop: Δt = 1; Euler: its step; other methods: 0).
        state_decay: λ ≥ 0, the field's leak −λ·h (dh/dτ = update − λh, a leaky integrator): without
            it a pre-norm residual state grows at every step, so states far along the depth axis (long
            loops, long horizons) have norms no training step saw; with it the norm is bounded by
            max‖update‖ / λ for steps with λ·Δt ≤ 1 (a loop: λ ≤ 1; larger λ·Δt overshoots, and
            λ·Δt ≥ 2 diverges, as explicit Euler on −λh does).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_blocks: int = 1,
        mlp_ratio: float = 4.0,
        injection: str = "add",
        depth_conditioned: bool = False,
        rotary: bool = True,
        step_conditioned: bool = False,
        state_decay: float = 0.0,
    ) -> None:
        super().__init__()
        check_state_decay(state_decay)
        if injection not in INJECTIONS:
            raise ValueError(f"unknown injection {injection!r}; choose one of {INJECTIONS}")
        if n_blocks < 1:
            raise ValueError(f"the field needs n_blocks >= 1, got {n_blocks}")
        self.injection = injection
        self.depth_conditioned = depth_conditioned
        self.step_conditioned = step_conditioned
        self.state_decay = float(state_decay)
        self.adapter = nn.Linear(2 * d_model, d_model, bias=False) if injection == "concat" else None
        self.blocks = nn.ModuleList(
            Block(d_model, n_heads, mlp_ratio, depth_conditioned=depth_conditioned, step_conditioned=step_conditioned,
                  rotary=rotary)
            for _ in range(n_blocks)
        )
        self.nfe = NFECounter()

    def inject(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        if self.injection == "none":
            return h
        if self.injection == "add":
            return h + e
        return self.adapter(torch.cat([h, e], dim=-1))  # (B, L, 2C) → (B, L, C)

    def forward(self, tau: torch.Tensor, h: torch.Tensor, e: torch.Tensor, dt: float | None = None) -> torch.Tensor:
        """dt: the step size Δt of a step-conditioned field (None: 0); ignored otherwise."""
        self.nfe.forward += 1
        x = x0 = self.inject(h, e)  # (B, L, C)
        for block in self.blocks:
            x = block(x, tau, dt) if self.step_conditioned else block(x, tau)
        out = x - x0  # (B, L, C): the blocks' net update
        if self.state_decay:
            out = out - self.state_decay * h  # the leak
        if out.requires_grad:
            out.register_hook(self._count_backward)
        return out

    def _count_backward(self, grad: torch.Tensor) -> None:
        if self.nfe.probing:
            self.nfe.probe += 1
        else:
            self.nfe.backward += 1
