"""Depth integrators: how the shared field is traversed from h(0) to h(t_end).

`INTEGRATORS` maps a config name to a class, as torchdiffeq's SOLVERS does for methods.
"""
from .base import DepthOutput, Integrator, SolverError
from .loop import Loop
from .ode import ADAPTIVE_METHODS, FIXED_GRID_METHODS, METHODS, ODESolve
from .plan import REGULARISERS, DepthPlan, RandomDepth

INTEGRATORS: dict[str, type[Integrator]] = {"loop": Loop, "ode": ODESolve}

__all__ = [
    "ADAPTIVE_METHODS", "DepthOutput", "DepthPlan", "RandomDepth", "REGULARISERS", "FIXED_GRID_METHODS", "INTEGRATORS", "Integrator", "Loop", "METHODS",
    "ODESolve", "SolverError",
]
