"""Per-call depth settings: what one training forward should do differently from the nominal solve.

The integrator owns the nominal depth (loops, method, tolerances, t_end); the objective owns
everything that varies per training batch (STEER's random end, a random discretisation, RNODE
states, a progressive loss's detached start) and hands it to the integrator per call as a
`DepthPlan`, so no objective state is stored in an integrator. `RandomDepth` draws the per-batch
part of a plan from the `objective.depth` config node.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Sequence

import torch

REGULARISERS = ("kinetic", "jacobian")


@dataclass(frozen=True)
class DepthPlan:
    """One call's depth settings; None / empty fields keep the integrator's own.

    t_start: depth of the initial state h0 (a progressive loss continues from a detached state).
    t_end: depth to reach (ODE: τ; loop: a whole number of loops).
    method, step_size: ODE method and fixed-grid step of this call (a loop is Euler, step 1).
    regularisers: RNODE states (subset of REGULARISERS) to integrate beside h (ODE only).
    scale_trajectory: requested trajectory depths move with the end, τ·t_end/nominal (STEER);
        False: they are absolute depths in [t_start, t_end].
    """

    t_start: float = 0.0
    t_end: float | None = None
    method: str | None = None
    step_size: float | None = None
    regularisers: tuple[str, ...] = ()
    scale_trajectory: bool = False

    def __post_init__(self) -> None:
        unknown = [n for n in self.regularisers if n not in REGULARISERS]
        if unknown:
            raise ValueError(f"unknown regulariser state(s) {unknown}; choose from {REGULARISERS}")
        if self.t_end is not None and not self.t_end > self.t_start:
            raise ValueError(f"a depth plan must end after it starts, got t_start={self.t_start}, t_end={self.t_end}")
        if self.step_size is not None and not self.step_size > 0:
            raise ValueError(f"a depth plan's step_size must be > 0, got {self.step_size}")

    def merge(self, **fields) -> "DepthPlan":
        """This plan with `fields` added; regularisers are united, any other field set twice to
        different values is a ValueError (two objective parts that both want to choose it)."""
        updates = {}
        for key, value in fields.items():
            if key == "regularisers":
                updates[key] = tuple(n for n in REGULARISERS if n in set(self.regularisers) | set(value))
                continue
            current = getattr(self, key)
            default = DepthPlan.__dataclass_fields__[key].default
            if current != default and value != current:
                raise ValueError(f"two parts of the objective both set the depth plan's {key} "
                                 f"({current!r} and {value!r}); combine at most one of them")
            updates[key] = value
        return replace(self, **updates)


def _number(value, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key} must be a number, got {value!r}")
    return float(value)


@dataclass
class RandomDepth:
    """Per-batch draws of `objective.depth` for an ODE model (training only).

    steer_b: STEER random end, t_end ~ U[t_end − b, t_end + b] (0: off).
    methods: random discretisation: each batch solves with a method drawn uniformly from this list
        (e.g. [euler, midpoint, rk4]; an adaptive one such as dopri5 solves at the solver's rtol /
        atol, which puts the small-step limit itself into training) ...
    steps: ... and, for a fixed-grid draw, a number of steps n ~ U{lo, …, hi} over the (drawn)
        horizon: step = t_end / n.
    """

    steer_b: float = 0.0
    methods: tuple[str, ...] = ()
    steps: tuple[int, int] | None = None
    _fixed_grid: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        from .ode import FIXED_GRID_METHODS, METHODS

        self.steer_b = _number(self.steer_b, "objective.depth.steer_b")
        self.methods = tuple(self.methods or ())
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ValueError(f"objective.depth.methods {bad} are not solver methods; choose from {', '.join(METHODS)}")
        self._fixed_grid = tuple(m for m in self.methods if m in FIXED_GRID_METHODS)
        if self.steps is not None:
            steps = list(self.steps)
            if (len(steps) != 2 or any(isinstance(s, bool) or not isinstance(s, int) for s in steps)
                    or not 1 <= steps[0] <= steps[1]):
                raise ValueError(f"objective.depth.steps must be [lo, hi] with 1 <= lo <= hi, got {self.steps!r}")
            self.steps = (steps[0], steps[1])
        if self.steps is not None and not self.methods:
            raise ValueError("objective.depth.steps needs objective.depth.methods (the methods to draw from)")
        if self._fixed_grid and self.steps is None:
            raise ValueError("objective.depth.methods with fixed-grid methods needs objective.depth.steps=[lo,hi] "
                             "(steps per solve)")

    @property
    def active(self) -> bool:
        return bool(self.steer_b or self.methods)

    def check(self, t_end: float) -> None:
        """ValueError naming the value when the draws cannot apply to a horizon of t_end."""
        if not 0 <= self.steer_b < t_end:
            raise ValueError(f"steer_b must be a number in [0, t_end={t_end}), got {self.steer_b!r}")

    def draw(self, t_end: float) -> dict:
        """DepthPlan fields for one batch (torch's global generator: seeded and checkpointed)."""
        fields: dict = {}
        end = t_end
        if self.steer_b:
            end = t_end + (2 * torch.rand(()).item() - 1) * self.steer_b
            fields.update(t_end=end, scale_trajectory=True)
        if self.methods:
            method = self.methods[int(torch.randint(len(self.methods), ()).item())]
            fields["method"] = method
            if method in self._fixed_grid:
                lo, hi = self.steps
                n = int(torch.randint(lo, hi + 1, ()).item())
                fields["step_size"] = end / n
        return fields


def scaled_depths(taus: Sequence[float] | None, nominal: float, end: float) -> list[float]:
    """STEER: requested depths moved proportionally with a random end; the nominal end maps to the
    drawn end exactly (τ · scale can miss it by an ulp)."""
    scale = end / nominal
    return [end if tau == nominal else tau * scale for tau in taus or []]
