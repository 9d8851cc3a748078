"""The fixed-iteration looped model: h_{k+1} = h_k + F(k, h_k; e), k = 0 … loops−1.

This is explicit Euler with unit step on the grid 0, 1, …, loops; `ODESolve(method="euler",
step_size=1, t_end=loops)` computes the same states from the same field.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from ..field import VectorField
from .base import DepthOutput, Integrator, check_trajectory_at
from .plan import DepthPlan


class Loop(Integrator):
    """`loops` applications of the field.

    A `DepthPlan` (plan=...) may start the loop at a later step (t_start: h0 is the state after
    that many loops) and end it after another number of loops (t_end); both must be whole numbers,
    and a loop takes no method, step size or RNODE state.

    Huginn-style training options (active only while the field is in training mode; evaluation
    always runs the nominal `loops`):
        random_depth: the number of loops is drawn per batch, n = 1 + Poisson(exp(s)) with
            s ~ N(log(loops − 1) − σ²/2, σ), σ = `depth_sigma` (mean `loops`), capped at 3·loops.
        bptt_steps: back-propagate through the last k loop steps only (truncated BPTT); earlier
            steps run without a graph, so memory and backward cost stay O(k).
        state_noise: σ ≥ 0; after every loop step but the last the state gets σ · rms(h) · ε,
            ε ~ N(0, I), rms per position over channels (not back-propagated through): the loop must
            learn an update that corrects small errors of its own state, i.e. noise-robust attractors,
            the classic remedy for recurrent nets whose state drifts on inputs longer than trained.
            Drawn from torch's global generator (seeded by the run).
    """

    name = "loop"

    def __init__(
        self, loops: int = 4, random_depth: bool = False, bptt_steps: int | None = None, depth_sigma: float = 0.5,
        state_noise: float = 0.0,
    ) -> None:
        if isinstance(loops, bool) or not isinstance(loops, int) or loops < 1:
            raise ValueError(f"loops must be an integer >= 1, got {loops!r}")
        if random_depth and loops < 2:
            raise ValueError(f"random depth needs a mean of loops >= 2, got loops={loops}")
        if bptt_steps is not None and (isinstance(bptt_steps, bool) or not isinstance(bptt_steps, int)
                                       or bptt_steps < 1):
            raise ValueError(f"bptt_steps must be an integer >= 1 or null, got {bptt_steps!r}")
        if not isinstance(depth_sigma, (int, float)) or isinstance(depth_sigma, bool) or not depth_sigma > 0:
            raise ValueError(f"depth_sigma must be > 0, got {depth_sigma!r}")
        if isinstance(state_noise, bool) or not isinstance(state_noise, (int, float)) or not state_noise >= 0:
            raise ValueError(f"state_noise must be a number >= 0, got {state_noise!r}")
        self.loops = loops
        self.state_noise = float(state_noise)
        self.random_depth = bool(random_depth)
        self.bptt_steps = bptt_steps
        self.depth_sigma = float(depth_sigma)

    @property
    def t_end(self) -> float:
        return float(self.loops)

    def describe(self) -> dict:
        out = {"loops": self.loops}
        if self.random_depth or self.bptt_steps is not None:  # training-only options, recorded when set
            out.update(random_depth=self.random_depth, bptt_steps=self.bptt_steps, depth_sigma=self.depth_sigma)
        if self.state_noise:
            out.update(state_noise=self.state_noise)
        return out

    def sample_loops(self) -> int:
        """One draw of Huginn's Poisson-lognormal depth (mean `loops`), from torch's global generator."""
        sigma = self.depth_sigma
        s = torch.randn(()) * sigma + math.log(self.loops - 1) - sigma**2 / 2
        return min(1 + int(torch.poisson(s.exp()).item()), 3 * self.loops)

    def __call__(
        self,
        field: VectorField,
        h0: torch.Tensor,
        e: torch.Tensor,
        trajectory_at: Sequence[float] | None = None,
        mask: torch.Tensor | None = None,  # accepted for the common interface; nothing in a loop averages
        plan: DepthPlan | None = None,
    ) -> DepthOutput:
        training = field.training
        start, end = self._plan_depths(plan)
        if end is not None:
            loops = end - start
        else:
            loops = self.sample_loops() if self.random_depth and training else self.loops
            end = start + loops
            if self.random_depth and training and trajectory_at is not None:
                raise ValueError("random depth cannot be combined with trajectory_at (per-step terms need fixed loops)")
        taus = check_trajectory_at(trajectory_at, float(end), float(start))
        if taus is not None and any(t != int(t) for t in taus):
            raise ValueError(f"a loop has states at integer depths only, got trajectory_at={taus}")
        keep = {int(t) for t in taus} if taus is not None else set()
        no_grad_steps = loops - self.bptt_steps if self.bptt_steps is not None and training else 0
        states = [h0] if start in keep else []
        kwargs = {"dt": 1.0} if getattr(field, "step_conditioned", False) else {}  # Euler with unit step
        h = h0  # (B, L, C)
        for k in range(loops):
            tau = torch.tensor(float(start + k), dtype=h0.dtype, device=h0.device)
            if k < no_grad_steps:
                with torch.no_grad():
                    h = h + field(tau, h, e, **kwargs)
            else:
                h = h + field(tau, h, e, **kwargs)
            if training and self.state_noise and k < loops - 1:  # between steps: the next one can correct it
                rms = h.detach().pow(2).mean(-1, keepdim=True).sqrt()  # (B, L, 1)
                h = h + self.state_noise * rms * torch.randn_like(h)
            if start + k + 1 in keep:
                states.append(h)
        return DepthOutput(
            h=h,
            nfe_forward=loops,
            steps_accepted=loops,
            steps_rejected=0,
            depth=float(end),
            trajectory=torch.stack(states) if taus is not None else None,
            trajectory_tau=taus,
            plan=plan,
        )

    @staticmethod
    def _plan_depths(plan: DepthPlan | None) -> tuple[int, int | None]:
        """(first loop, last loop or None for the loop's own count) of a plan; ValueError for a plan
        a loop cannot follow."""
        if plan is None:
            return 0, None
        if plan.method not in (None, "euler") or plan.step_size not in (None, 1.0) or plan.regularisers:
            raise ValueError(f"a loop is Euler with unit step and integrates no RNODE state; the depth plan asks "
                             f"method={plan.method}, step_size={plan.step_size}, regularisers={plan.regularisers} "
                             "(use model=ode)")
        for key in ("t_start", "t_end"):
            value = getattr(plan, key)
            if value is not None and float(value) != int(value):
                raise ValueError(f"a loop runs whole steps; the depth plan's {key}={value} is not an integer")
        return int(plan.t_start), (int(plan.t_end) if plan.t_end is not None else None)
