"""An exit strategy bound to a model: `AdaptiveDepth(criterion, max_depth, mode)(model, tokens, mask)`.

The family follows the model's integrator: a `Loop` model loops with per-example exit
(loop_exit.py); an `ODESolve` model integrates until the event (ode_exit.py) with the solver's
method and tolerances. A looped checkpoint becomes the ODE family by `model.integrator=ode`.
"""
from __future__ import annotations

import torch

from ..depth import Loop, ODESolve
from ..model import PAD_ID
from .base import Criterion, ExitContext, ExitOutput, check_number
from .loop_exit import loop_until_exit
from .ode_exit import MODES, ode_until_exit


class AdaptiveDepth:
    """Args:
        criterion: when to stop (an EXITS class instance).
        max_depth: the most depth any example gets (None: the model's loops / solver.t_end).
        mode: "per_example" (batch-invariant) or "batch" (one torchdiffeq solve; ODE family only —
            looped exits are per example either way).
    """

    def __init__(self, criterion: Criterion, max_depth: float | None = None, mode: str = "per_example") -> None:
        if mode not in MODES:
            raise ValueError(f"unknown exit.mode {mode!r}; choose one of {MODES}")
        if max_depth is not None:
            check_number(max_depth, "exit.max_depth")
        self.criterion, self.max_depth, self.mode = criterion, max_depth, mode

    def describe(self) -> dict:
        return {**self.criterion.describe(), "max_depth": self.max_depth, "mode": self.mode}

    def max_loops(self, loop: Loop) -> int:
        if self.max_depth is None:
            return loop.loops
        if float(self.max_depth) != int(self.max_depth):
            raise ValueError(f"exit.max_depth for a looped model must be a whole number of loops, got {self.max_depth!r}")
        return int(self.max_depth)

    def check(self, model: torch.nn.Module) -> None:
        """ValueError naming the value if this strategy cannot run on `model`."""
        integrator = getattr(model, "integrator", None)
        if not isinstance(integrator, (Loop, ODESolve)):
            raise ValueError(f"exit strategies need a looped or ODE model, got integrator {integrator!r}")
        if self.criterion.needs_gate and getattr(model, "exit_gate", None) is None:
            raise ValueError(
                f"exit={self.criterion.name} needs a model trained with model.exit_gate=true (this model has no gate)"
            )
        if isinstance(integrator, Loop):
            self.max_loops(integrator)

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, tokens: torch.Tensor, mask: torch.Tensor) -> ExitOutput:
        """tokens: (B, L) ids; mask: (B, L) bool read-out positions → per-example ExitOutput."""
        self.check(model)
        config = getattr(model, "config", None)
        if config is not None and not config.causal and bool((tokens == PAD_ID).any()):
            return self._by_length(model, tokens, mask)
        return self._run(model, tokens, mask)

    def _by_length(self, model: torch.nn.Module, tokens: torch.Tensor, mask: torch.Tensor) -> ExitOutput:
        """A bidirectional model on a right-padded batch: exited rows leave the batch and per-example solves
        crop each row, so the padding mask of the whole batch cannot follow them. Each group of rows of one
        real length runs on its own, cropped to that length (no padding at all), and is padded back."""
        lengths = (tokens != PAD_ID).sum(1)  # (B,) real tokens precede the padding
        parts = []
        for length in sorted(set(lengths.tolist())):
            rows = (lengths == length).nonzero().squeeze(1)
            parts.append((rows, length, self._run(model, tokens[rows, :length], mask[rows, :length])))
        B, L = tokens.shape
        first = parts[0][2]
        h = first.h.new_zeros(B, L, first.h.shape[-1])
        logits = first.logits.new_zeros(B, L, first.logits.shape[-1])
        per_row = {k: getattr(first, k).new_zeros(B) for k in ("depth", "nfe", "steps", "exited")}
        for rows, length, out in parts:
            h[rows, :length], logits[rows, :length] = out.h, out.logits
            for key, value in per_row.items():
                value[rows] = getattr(out, key)
        return ExitOutput(h=h, logits=logits, **per_row)

    def _run(self, model: torch.nn.Module, tokens: torch.Tensor, mask: torch.Tensor) -> ExitOutput:
        integrator = model.integrator
        gate = model.exit_probability if getattr(model, "exit_gate", None) is not None else None
        ctx = ExitContext(decode=model.decode, gate=gate, mask=mask)
        e = model.encode(tokens)  # (B, L, C); h(0) = e
        if isinstance(integrator, Loop):
            h, depth, exited = loop_until_exit(model.field, e, e, self.criterion, ctx, self.max_loops(integrator))
            nfe, steps, depth = depth.float(), depth, depth.to(e.dtype)
        else:  # ODESolve
            t_max = float(self.max_depth) if self.max_depth is not None else integrator.t_end
            h, depth, nfe, steps, exited = ode_until_exit(
                model.field, e, e, self.criterion, ctx, integrator, t_max, self.mode
            )
        return ExitOutput(h=h, logits=model.decode(h), depth=depth, nfe=nfe, steps=steps, exited=exited)
