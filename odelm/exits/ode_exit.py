"""Event-stopped ODE solves: integrate dh/dτ = F(τ, h; e) until the exit criterion holds.

The criterion's margin becomes a torchdiffeq event function (`odeint_event`), combined with the
horizon and the minimum depth:

    g(τ, y) = min( max(margin(τ, h), min_depth − τ),  t_max − τ )

so the solve stops at the first root of g: the criterion holding after min_depth, or t_max. The
root is located on the solver's dense output by bisection to `atol` in τ. A criterion that needs
an integrated quantity (Q-exit) rides along as a second state tensor.

Derivatives are reused, not recomputed: the solver's field calls are remembered by the state tensor
they were made at, so an event check at a step end reads the derivative the solver already has
(dopri5 / bosh3 evaluate the field at each new state: first same as last), and a fixed-grid step
starting from a state an event check just evaluated reads that one. A criterion that is checked at
step ends only (`at_steps_only`, the convergence stop) never calls the field for the bisection's
interpolated states either: it stops at the end of the first step where it holds, at no extra NFE.
(Reuse is by state identity; for a τ-conditioned field the reused call was made up to one ulp of τ
earlier, the solver's own perturbation.)

Two modes:
- "batch": one solve for the batch. torchdiffeq shares one step size over the whole tensor and
  supports one event, so the batch stops when *every* example's criterion holds (the margin is the
  max over the batch); every example is charged the batch's NFE, and an example's answer and NFE
  depend on its batch-mates.
- "per_example": one solve per example, on its own tokens only (cropped after its last read-out
  position, so padding never enters the error norm). Its depth, NFE and answer are the same alone
  and in any batch. Costs one solver call per example (no batching) — the price of invariance.
  (torchode's per-sample step sizes were considered: its per-sample error norm still spans the
  padded length, which batch-mates change, and it has no events.)
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torchdiffeq import odeint_event

from ..depth import ODESolve, SolverError
from ..field import VectorField
from .base import Criterion, ExitContext

MODES = ("per_example", "batch")


class _Func(nn.Module):
    """(τ, y) → dy/dτ for torchdiffeq, y = h or (h, aux); counts solver steps."""

    CACHE = 3  # derivatives remembered: the initial state's (checked again after the solve) and the latest

    def __init__(self, field: VectorField, e: torch.Tensor, criterion: Criterion, ctx: ExitContext, augmented: bool,
                 max_num_steps: int | None = None, describe: str = ""):
        super().__init__()
        self.field, self.e, self.criterion, self.ctx, self.augmented = field, e, criterion, ctx, augmented
        self.accepted = self.steps = 0
        self.max_num_steps, self.describe = max_num_steps, describe
        self._cache: list[tuple[torch.Tensor, torch.Tensor]] = []  # (state, F at it), by identity

    def cached(self, h: torch.Tensor) -> torch.Tensor | None:
        """F at state `h` if the field was already evaluated at this very tensor, else None."""
        for state, f in self._cache:
            if state is h:
                return f
        return None

    def derivative(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """F(τ, h; e), reusing a call already made at this state (counted once in the NFE)."""
        f = self.cached(h)
        if f is None:
            f = self.field(t, h, self.e)
            keep = self._cache if len(self._cache) < self.CACHE else [self._cache[0], *self._cache[2:]]
            self._cache = [*keep, (h, f)]  # the first (initial state) stays
        return f

    def forward(self, t: torch.Tensor, y):
        if not self.augmented:
            return self.derivative(t, y)
        h, _ = y
        return self.field(t, h, self.e), self.criterion.aux_rate(t, h, self.ctx)

    def callback_step(self, t0, y0, dt) -> None:
        self.steps += 1  # every method, fixed-grid ones included, has a step budget here
        if self.max_num_steps is not None and self.steps > self.max_num_steps:
            raise SolverError(
                f"event-stopped ODE solve exceeded max_num_steps={self.max_num_steps} at τ={float(t0):.4g} "
                f"({self.describe}); loosen rtol/atol, raise solver.max_num_steps, lower exit.max_depth, "
                "or use a larger step"
            )


class _FuncAdaptive(_Func):
    """_Func for adaptive methods: also counts accepted steps (a fixed-grid method has no such callback,
    and torchdiffeq warns when the function offers one it cannot call)."""

    def callback_accept_step(self, t0, y0, dt) -> None:
        self.accepted += 1


@torch.no_grad()
def solve_until_exit(
    field: VectorField, h0: torch.Tensor, e: torch.Tensor, criterion: Criterion, ctx: ExitContext,
    solver: ODESolve, t_max: float,
) -> tuple[torch.Tensor, float, int, int, bool]:
    """One event-stopped solve of the whole batch h0, e: (B, L, C).
    Returns (h at the stop (B, L, C), stop depth τ, field evaluations, accepted steps, criterion fired)."""
    if not solver.adaptive and math.ceil(t_max / solver.step_size - 1e-9) > solver.max_num_steps:
        # fixed grids: the step count to the horizon is known up front (torchdiffeq's event loop for
        # them calls no step callback and stops only after 20000 steps)
        raise SolverError(
            f"event-stopped ODE solve would take {math.ceil(t_max / solver.step_size - 1e-9)} steps to τ={t_max:g}, "
            f"over max_num_steps={solver.max_num_steps} ({solver._settings()}); raise solver.max_num_steps, "
            "lower exit.max_depth, or use a larger solver.step_size"
        )
    aux0 = criterion.aux0(h0, ctx)
    augmented = aux0 is not None
    func = (_FuncAdaptive if solver.adaptive else _Func)(field, e, criterion, ctx, augmented, solver.max_num_steps,
                                                          solver._settings())
    calls = field.nfe.forward
    t0 = torch.zeros((), dtype=torch.float64 if h0.dtype == torch.float64 else torch.float32, device=h0.device)

    steps_only = getattr(criterion, "at_steps_only", False)
    met = False  # a step-end check has found the event: later checks are the bisection's (or the final one)

    def criterion_margin(t: torch.Tensor, y) -> torch.Tensor:
        h, aux = y if augmented else (y, None)
        if steps_only and met and not augmented and func.cached(h) is None:  # an interpolated state
            return torch.maximum(torch.ones((), dtype=t.dtype, device=t.device), criterion.min_depth - t)  # go on
        margins = criterion.margin(t, h, aux, lambda: func.derivative(t, h), ctx)  # (B,)
        return torch.maximum(margins.max(), criterion.min_depth - t)  # every example must be done

    def event_fn(t: torch.Tensor, y) -> torch.Tensor:
        nonlocal met
        value = torch.minimum(criterion_margin(t, y), t_max - t)
        met = met or bool(value <= 0)
        return value

    y0 = (h0, aux0) if augmented else h0
    if float(event_fn(t0, y0)) <= 0:  # met already at τ = 0 (min_depth = 0)
        return h0, 0.0, field.nfe.forward - calls, 0, True
    try:
        event_t, solution = odeint_event(
            func, y0, t0, event_fn=event_fn, rtol=solver.rtol, atol=solver.atol, method=solver.method,
            options=solver._options(),
        )
    except AssertionError as err:
        raise solver._explain(err) from err
    h = solution[0][-1] if augmented else solution[-1]
    if not torch.isfinite(h).all():
        raise SolverError(f"event-stopped ODE solve produced non-finite states ({solver._settings()})")
    tau = float(event_t)
    fired = tau < t_max - 2 * solver.atol  # stopped by the criterion, not by the horizon
    if solver.adaptive:
        steps = func.accepted
    else:  # torchdiffeq's fixed-grid event loop reports no steps: they are the grid points passed
        steps = func.steps or math.ceil(min(tau, t_max) / solver.step_size - 1e-6)
    return h, min(tau, t_max), field.nfe.forward - calls, steps, fired


@torch.no_grad()
def ode_until_exit(
    field: VectorField, h0: torch.Tensor, e: torch.Tensor, criterion: Criterion, ctx: ExitContext,
    solver: ODESolve, t_max: float, mode: str = "per_example",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """h0, e: (B, L, C) → (h (B, L, C), depth (B,), nfe (B,), steps (B,), exited (B,) bool)."""
    if mode not in MODES:
        raise ValueError(f"unknown exit.mode {mode!r}; choose one of {MODES}")
    batch = h0.shape[0]
    if mode == "batch":
        h, tau, nfe, steps, fired = solve_until_exit(field, h0, e, criterion, ctx, solver, t_max)
        full = lambda v, dtype: torch.full((batch,), v, dtype=dtype, device=h0.device)  # noqa: E731
        return h, full(tau, h0.dtype), full(nfe, torch.float32), full(steps, torch.long), full(fired, torch.bool)
    h_out = h0.clone()
    depth = torch.zeros(batch, dtype=h0.dtype, device=h0.device)
    nfe = torch.zeros(batch, dtype=torch.float32, device=h0.device)
    steps = torch.zeros(batch, dtype=torch.long, device=h0.device)
    exited = torch.zeros(batch, dtype=torch.bool, device=h0.device)
    for b in range(batch):
        read = ctx.mask[b].nonzero()
        if len(read) == 0:
            raise ValueError(f"example {b} of the batch has no read-out position")
        n = int(read.max()) + 1  # its tokens up to the last read-out position
        one = ctx.select(torch.tensor([b], device=h0.device)).crop(n)
        h, tau, calls, accepted, fired = solve_until_exit(
            field, h0[b : b + 1, :n], e[b : b + 1, :n], criterion, one, solver, t_max
        )
        h_out[b, :n] = h[0]
        depth[b], nfe[b], steps[b], exited[b] = tau, calls, accepted, fired
    return h_out, depth, nfe, steps, exited
