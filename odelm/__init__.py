"""odelm: latent reasoning as continuous-depth dynamics.

The looped language model `h ← h + F(h)` is explicit Euler with unit step on dh/dτ = F_θ(τ, h; e);
odelm trains and evaluates both on the same tasks with one shared vector field.
"""
from .depth import INTEGRATORS, DepthOutput, Loop, ODESolve, SolverError
from .field import VectorField
from .model import LatentLM, LMOutput, ModelConfig, TransformerLM

__version__ = "0.1.0"

__all__ = [
    "INTEGRATORS", "DepthOutput", "LMOutput", "LatentLM", "Loop", "ModelConfig", "ODESolve", "SolverError",
    "TransformerLM", "VectorField",
]
