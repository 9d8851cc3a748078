"""Depth as a continuous ODE, dh/dτ = F(τ, h; e), solved by torchdiffeq.

Every torchdiffeq method is available by name. Adaptive methods take rtol/atol (always set them:
torchdiffeq's defaults 1e-7/1e-9 are far too tight for a neural field); fixed-grid methods take
`step_size`. Note: torchdiffeq controls the step size with ONE error norm over the whole (B, L, C)
tensor, so all examples of a batch share step sizes and NFE.
"""
from __future__ import annotations

import contextlib
import math
from typing import Sequence

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torchdiffeq import odeint, odeint_adjoint
from torchdiffeq._impl.odeint import SOLVERS as TORCHDIFFEQ_SOLVERS
from torchdiffeq._impl.solvers import AdaptiveStepsizeODESolver, FixedGridODESolver

from ..field import VectorField
from .base import DepthOutput, Integrator, SolverError, check_trajectory_at
from .plan import DepthPlan, scaled_depths

# torchdiffeq methods by name; `scipy_solver` is left out: it leaves torch, so no gradients flow.
ADAPTIVE_METHODS = tuple(sorted(m for m, c in TORCHDIFFEQ_SOLVERS.items() if issubclass(c, AdaptiveStepsizeODESolver)))
FIXED_GRID_METHODS = tuple(sorted(m for m, c in TORCHDIFFEQ_SOLVERS.items() if issubclass(c, FixedGridODESolver)))
METHODS = ADAPTIVE_METHODS + FIXED_GRID_METHODS
NORMS = {"rms": None, "max": lambda x: x.abs().max()}
ADJOINT_NORMS = ("default", "seminorm")


class _BoundField(nn.Module):
    """F(τ, h) with e bound, in the (t, y) signature torchdiffeq calls; counts solver steps."""

    def __init__(self, field: VectorField, e: torch.Tensor, max_num_steps: int, describe: str,
                 dt: float | None = None) -> None:
        super().__init__()
        self.field = field
        self.e = e
        self.max_num_steps = max_num_steps
        self.describe = describe
        self.steps = self.accepted = self.rejected = 0
        # a step-conditioned field is told the step it is taken with (see step_conditioning)
        self._kwargs = {"dt": dt} if getattr(field, "step_conditioned", False) else {}

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.field(t, h, self.e, **self._kwargs)

    def callback_step(self, t0: torch.Tensor, y0: torch.Tensor, dt: torch.Tensor) -> None:
        self.steps += 1
        if self.steps > self.max_num_steps:
            raise SolverError(
                f"ODE solve exceeded max_num_steps={self.max_num_steps} at τ={float(t0):.4g} ({self.describe}); "
                "loosen rtol/atol, raise solver.max_num_steps, or use a fixed-grid method"
            )


class _BoundFieldAdaptive(_BoundField):
    def callback_accept_step(self, t0: torch.Tensor, y0: torch.Tensor, dt: torch.Tensor) -> None:
        self.accepted += 1

    def callback_reject_step(self, t0: torch.Tensor, y0: torch.Tensor, dt: torch.Tensor) -> None:
        self.rejected += 1


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(B, L, C) → (B,): mean over C, then over the real positions of `mask` (B, L) (all when None)."""
    per_position = x.mean(dim=-1)  # (B, L)
    if mask is None:
        return per_position.mean(dim=1)
    m = mask.to(x.dtype)
    return (per_position * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)


class _Regularised(nn.Module):
    """RNODE augmented dynamics: d/dτ (h, E_kin, E_jac) = (F, mean ‖F‖², mean ‖εᵀ∂F/∂h‖²), per example.

    The means run over C and the real (non-padding) positions of `mask`, so the states are (B,),
    comparable across sequence lengths and blind to padding. ε ~ N(0, I) is drawn once per solve
    (Hutchinson's estimator: E‖εᵀJ‖² = ‖J‖_F²) and is zero at padding, so no padding position feeds
    a real one's product through attention. The vector-Jacobian product is taken with the math attention
    kernel, the one that can be differentiated twice, and counted as the field's `probe` NFE.
    Wraps a _BoundField; torchdiffeq copies its step callbacks from this module.
    """

    def __init__(self, bound: _BoundField, names: tuple[str, ...], eps: torch.Tensor | None,
                 mask: torch.Tensor | None = None) -> None:
        super().__init__()
        self.bound = bound
        self.names = names
        self.mask = mask  # (B, L) bool, True at real tokens; None: every position is real
        if eps is not None and mask is not None:
            eps = eps * mask[..., None].to(eps.dtype)
        self.eps = eps  # (B, L, C) Hutchinson probe, when the Jacobian term is tracked
        for name in ("callback_step", "callback_accept_step", "callback_reject_step"):
            if hasattr(bound, name):
                setattr(self, name, getattr(bound, name))

    def forward(self, t: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        h = state[0]
        if "jacobian" not in self.names:
            f = self.bound(t, h)
            return (f, _masked_mean(f.pow(2), self.mask))
        outer = torch.is_grad_enabled()
        counter = getattr(self.bound.field, "nfe", None)
        with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
            if not (outer and h.requires_grad):  # a no-grad solve (adjoint forward): a fresh leaf to differentiate
                h = h.detach().requires_grad_(True)
            f = self.bound(t, h)
            with counter.probe_vjp() if counter is not None else contextlib.nullcontext():
                (vjp,) = torch.autograd.grad(f, h, self.eps, create_graph=outer)
        rates = {"kinetic": _masked_mean(f.pow(2), self.mask), "jacobian": _masked_mean(vjp.pow(2), self.mask)}
        return (f, *(rates[n] for n in self.names))


def _state_only_norm(norm: str):
    """The adaptive error norm over h alone: the regulariser states never shrink a step."""
    if norm == "max":
        return lambda y: y[0].abs().max()
    return lambda y: y[0].pow(2).mean().sqrt()


class ODESolve(Integrator):
    """Integrates the field from τ=0 to τ=t_end.

    Args:
        method: any torchdiffeq method name (see METHODS).
        rtol, atol: tolerances of adaptive methods.
        t_end: depth horizon.
        step_size: step of fixed-grid methods (required for them, unused by adaptive ones).
        max_num_steps: budget of solver steps (accepted + rejected) per solve.
        adjoint: back-propagate by the adjoint method (O(1) memory) instead of through the solver.
        adjoint_norm: "seminorm" skips the parameter-gradient states in the backward error norm.
        norm: error norm of adaptive methods, "rms" or "max".

    A training objective varies a call through a `DepthPlan` (plan=...): STEER's random end, a
    random method / step, a detached start depth, and RNODE regularisers, integrated as extra
    states that are left out of the adaptive error norm entirely, so they never shrink a step.
    """

    name = "ode"

    def __init__(
        self,
        method: str = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-3,
        t_end: float = 4.0,
        step_size: float | None = None,
        max_num_steps: int = 1000,
        adjoint: bool = False,
        adjoint_norm: str = "seminorm",
        norm: str = "rms",
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown solver method {method!r}; choose one of {', '.join(METHODS)}")
        for key, value in (("rtol", rtol), ("atol", atol), ("t_end", t_end)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"solver.{key} must be a finite number > 0, got {value!r}")
        if method in FIXED_GRID_METHODS:
            if step_size is None:
                raise ValueError(f"fixed-grid method {method!r} needs solver.step_size (e.g. solver.step_size=1.0)")
            if not isinstance(step_size, (int, float)) or isinstance(step_size, bool) or not step_size > 0:
                raise ValueError(f"solver.step_size must be > 0, got {step_size!r}")
        if not isinstance(max_num_steps, int) or isinstance(max_num_steps, bool) or max_num_steps < 1:
            raise ValueError(f"solver.max_num_steps must be an integer >= 1, got {max_num_steps!r}")
        if norm not in NORMS:
            raise ValueError(f"unknown solver.norm {norm!r}; choose one of {tuple(NORMS)}")
        if adjoint_norm not in ADJOINT_NORMS:
            raise ValueError(f"unknown solver.adjoint_norm {adjoint_norm!r}; choose one of {ADJOINT_NORMS}")
        self.method = method
        self.rtol = float(rtol)
        self.atol = float(atol)
        self._t_end = float(t_end)
        self.step_size = None if method in ADAPTIVE_METHODS or step_size is None else float(step_size)
        self.max_num_steps = max_num_steps
        self.adjoint = bool(adjoint)
        self.adjoint_norm = adjoint_norm
        self.norm = norm

    @property
    def t_end(self) -> float:
        return self._t_end

    @property
    def adaptive(self) -> bool:
        return self.method in ADAPTIVE_METHODS

    def describe(self) -> dict:
        return {
            "method": self.method, "rtol": self.rtol, "atol": self.atol, "t_end": self.t_end,
            "step_size": self.step_size, "max_num_steps": self.max_num_steps, "adjoint": self.adjoint,
            "adjoint_norm": self.adjoint_norm, "norm": self.norm,
        }

    def _settings(self, method: str | None = None, step_size: float | None = None, t_end: float | None = None) -> str:
        method, step_size = method or self.method, step_size if step_size is not None else self.step_size
        t_end = self.t_end if t_end is None else t_end
        if method in ADAPTIVE_METHODS:
            return f"method={method}, rtol={self.rtol:g}, atol={self.atol:g}, t_end={t_end:g}"
        return f"method={method}, step_size={step_size:g}, t_end={t_end:g}"

    def _options(self, method: str | None = None, step_size: float | None = None) -> dict:
        if (method or self.method) in FIXED_GRID_METHODS:
            return {"step_size": step_size if step_size is not None else self.step_size}
        options: dict = {"max_num_steps": self.max_num_steps}
        if NORMS[self.norm] is not None:
            options["norm"] = NORMS[self.norm]
        return options

    def step_conditioning(self, method: str, step_size: float | None) -> float:
        """The Δt a step-conditioned field is told: Euler's step (one step of Δt is the shortcut the
        field was trained to take), 0 for every other method (the instantaneous velocity)."""
        return float(step_size) if method == "euler" else 0.0

    def __call__(
        self,
        field: VectorField,
        h0: torch.Tensor,
        e: torch.Tensor,
        trajectory_at: Sequence[float] | None = None,
        mask: torch.Tensor | None = None,
        plan: DepthPlan | None = None,
    ) -> DepthOutput:
        """mask: (B, L) bool, True at real tokens: the RNODE states average over those positions only
        and the Hutchinson probe is zero elsewhere (None: every position is real). plan: this call's
        departures from the nominal depth (method, grid, horizon, RNODE states), set by an objective."""
        plan = plan or DepthPlan()
        method = plan.method or self.method
        if method not in METHODS:
            raise ValueError(f"unknown solver method {method!r} in the depth plan; choose one of {', '.join(METHODS)}")
        adaptive = method in ADAPTIVE_METHODS
        step_size = None if adaptive else (plan.step_size if plan.step_size is not None else self.step_size)
        if not adaptive and step_size is None:
            raise ValueError(f"fixed-grid method {method!r} needs a step_size")
        t0 = float(plan.t_start)
        t_end = self.t_end if plan.t_end is None else float(plan.t_end)
        if not t_end > t0:
            raise ValueError(f"the solve must end after it starts, got t_start={t0}, t_end={t_end}")
        if plan.scale_trajectory:  # STEER: depths given on the nominal horizon move with the drawn end
            taus = check_trajectory_at(trajectory_at, self.t_end)
            scaled = scaled_depths(taus, self.t_end, t_end)
        else:
            taus = check_trajectory_at(trajectory_at, t_end, t0)
            scaled = list(taus or [])
        # the grid is de-duplicated in the solve's dtype, where near-equal depths can become equal
        t = torch.tensor(sorted({t0, t_end, *scaled}), dtype=h0.dtype, device=h0.device).unique()  # sorted
        bound_cls = _BoundFieldAdaptive if adaptive else _BoundField
        settings = self._settings(method, step_size, t_end)
        func = bound_cls(field, e, self.max_num_steps, settings, dt=self.step_conditioning(method, step_size))
        names = tuple(plan.regularisers)
        options = self._options(method, step_size)
        y0: torch.Tensor | tuple[torch.Tensor, ...] = h0
        solve_func: nn.Module = func
        if names:
            eps = torch.randn_like(h0) if "jacobian" in names else None
            solve_func = _Regularised(func, names, eps, mask)
            y0 = (h0, *(h0.new_zeros(h0.shape[0]) for _ in names))  # (B, L, C), then (B,) per regulariser
            if adaptive:
                options["norm"] = _state_only_norm(self.norm)
        calls_before = field.nfe.forward
        kwargs = dict(rtol=self.rtol, atol=self.atol, method=method, options=options)
        try:
            if self.adjoint:
                params = tuple(p for p in field.parameters() if p.requires_grad)
                if e.requires_grad:  # e is an input of F too: its gradient must flow back to the prelude
                    params = params + (e,)
                adjoint_options = {**options, "norm": "seminorm"} if self.adjoint_norm == "seminorm" else None
                if adjoint_options is not None and not adaptive:
                    adjoint_options = None  # fixed-grid backward solves have no error norm
                solution = odeint_adjoint(solve_func, y0, t, adjoint_params=params, adjoint_options=adjoint_options,
                                          **kwargs)
            else:
                solution = odeint(solve_func, y0, t, **kwargs)  # (len(grid), B, L, C) [, (len(grid), B) …]
        except AssertionError as err:
            raise self._explain(err, settings) from err
        regularisers = None
        if names:
            solution, extra = solution[0], solution[1:]
            regularisers = {name: state[-1] for name, state in zip(names, extra)}  # (B,) each
        if not torch.isfinite(solution[-1]).all():
            raise SolverError(f"ODE solve produced non-finite states ({settings}); the field has diverged")
        trajectory = None
        if taus is not None:
            trajectory = solution[torch.searchsorted(t, torch.tensor(scaled, dtype=t.dtype, device=t.device))]
        return DepthOutput(
            h=solution[-1],
            nfe_forward=field.nfe.forward - calls_before,
            steps_accepted=func.accepted if adaptive else func.steps,
            steps_rejected=func.rejected,
            depth=t_end,
            trajectory=trajectory,
            trajectory_tau=taus,
            regularisers=regularisers,
            plan=plan,
        )

    def _explain(self, err: AssertionError, settings: str | None = None) -> Exception:
        text = str(err)
        settings = settings or self._settings()
        if "underflow in dt" in text:
            return SolverError(
                f"ODE step size underflowed ({settings}): the field is stiff at this tolerance; "
                "loosen rtol/atol, add a kinetic/Jacobian regulariser, or use a fixed-grid method"
            )
        if "max_num_steps" in text:
            return SolverError(
                f"ODE solve exceeded max_num_steps={self.max_num_steps} ({settings}); "
                "loosen rtol/atol, raise solver.max_num_steps, or use a fixed-grid method"
            )
        if "non-finite" in text:
            return SolverError(f"ODE solve met non-finite states ({settings}); the field has diverged")
        return err
