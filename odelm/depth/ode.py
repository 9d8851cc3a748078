"""Depth as a continuous ODE, dh/dτ = F(τ, h; e), solved by torchdiffeq.

Every torchdiffeq method is available by name. Adaptive methods take rtol/atol (always set them:
torchdiffeq's defaults 1e-7/1e-9 are far too tight for a neural field); fixed-grid methods take
`step_size`. Note: torchdiffeq controls the step size with ONE error norm over the whole (B, L, C)
tensor, so all examples of a batch share step sizes and NFE.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint
from torchdiffeq._impl.odeint import SOLVERS as TORCHDIFFEQ_SOLVERS
from torchdiffeq._impl.solvers import AdaptiveStepsizeODESolver, FixedGridODESolver

from ..field import VectorField
from .base import DepthOutput, Integrator, SolverError, check_trajectory_at

# torchdiffeq methods by name; `scipy_solver` is left out: it leaves torch, so no gradients flow.
ADAPTIVE_METHODS = tuple(sorted(m for m, c in TORCHDIFFEQ_SOLVERS.items() if issubclass(c, AdaptiveStepsizeODESolver)))
FIXED_GRID_METHODS = tuple(sorted(m for m, c in TORCHDIFFEQ_SOLVERS.items() if issubclass(c, FixedGridODESolver)))
METHODS = ADAPTIVE_METHODS + FIXED_GRID_METHODS
NORMS = {"rms": None, "max": lambda x: x.abs().max()}
ADJOINT_NORMS = ("default", "seminorm")


class _BoundField(nn.Module):
    """F(τ, h) with e bound, in the (t, y) signature torchdiffeq calls; counts solver steps."""

    def __init__(self, field: VectorField, e: torch.Tensor, max_num_steps: int, describe: str) -> None:
        super().__init__()
        self.field = field
        self.e = e
        self.max_num_steps = max_num_steps
        self.describe = describe
        self.steps = self.accepted = self.rejected = 0

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.field(t, h, self.e)

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

    def _settings(self) -> str:
        if self.adaptive:
            return f"method={self.method}, rtol={self.rtol:g}, atol={self.atol:g}, t_end={self.t_end:g}"
        return f"method={self.method}, step_size={self.step_size:g}, t_end={self.t_end:g}"

    def _options(self) -> dict:
        if not self.adaptive:
            return {"step_size": self.step_size}
        options: dict = {"max_num_steps": self.max_num_steps}
        if NORMS[self.norm] is not None:
            options["norm"] = NORMS[self.norm]
        return options

    def __call__(
        self,
        field: VectorField,
        h0: torch.Tensor,
        e: torch.Tensor,
        trajectory_at: Sequence[float] | None = None,
    ) -> DepthOutput:
        taus = check_trajectory_at(trajectory_at, self.t_end)
        grid = sorted({0.0, self.t_end, *(taus or [])})
        t = torch.tensor(grid, dtype=h0.dtype, device=h0.device)
        bound_cls = _BoundFieldAdaptive if self.adaptive else _BoundField
        func = bound_cls(field, e, self.max_num_steps, self._settings())
        calls_before = field.nfe.forward
        kwargs = dict(rtol=self.rtol, atol=self.atol, method=self.method, options=self._options())
        try:
            if self.adjoint:
                params = tuple(p for p in field.parameters() if p.requires_grad)
                if e.requires_grad:  # e is an input of F too: its gradient must flow back to the prelude
                    params = params + (e,)
                adjoint_options = {**self._options(), "norm": "seminorm"} if self.adjoint_norm == "seminorm" else None
                if adjoint_options is not None and not self.adaptive:
                    adjoint_options = None  # fixed-grid backward solves have no error norm
                solution = odeint_adjoint(func, h0, t, adjoint_params=params, adjoint_options=adjoint_options, **kwargs)
            else:
                solution = odeint(func, h0, t, **kwargs)  # (len(grid), B, L, C)
        except AssertionError as err:
            raise self._explain(err) from err
        if not torch.isfinite(solution[-1]).all():
            raise SolverError(f"ODE solve produced non-finite states ({self._settings()}); the field has diverged")
        trajectory = None
        if taus is not None:
            trajectory = solution[torch.tensor([grid.index(tau) for tau in taus], device=h0.device)]
        return DepthOutput(
            h=solution[-1],
            nfe_forward=field.nfe.forward - calls_before,
            steps_accepted=func.accepted if self.adaptive else func.steps,
            steps_rejected=func.rejected,
            depth=self.t_end,
            trajectory=trajectory,
            trajectory_tau=taus,
        )

    def _explain(self, err: AssertionError) -> Exception:
        text = str(err)
        if "underflow in dt" in text:
            return SolverError(
                f"ODE step size underflowed ({self._settings()}): the field is stiff at this tolerance; "
                "loosen rtol/atol, add a kinetic/Jacobian regulariser, or use a fixed-grid method"
            )
        if "max_num_steps" in text:
            return SolverError(
                f"ODE solve exceeded max_num_steps={self.max_num_steps} ({self._settings()}); "
                "loosen rtol/atol, raise solver.max_num_steps, or use a fixed-grid method"
            )
        if "non-finite" in text:
            return SolverError(f"ODE solve met non-finite states ({self._settings()}); the field has diverged")
        return err
