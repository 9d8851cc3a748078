"""Path independence (after Anil et al. 2022): the answer must not depend on where depth starts.
Beside the main forward from h(0) = e, solve once more from another start,

    start=prompt:    h'(0) = e + σ · rms(e) · ξ                   (a perturbed prompt encoding)
    start=other_end: h'(0) = sg(h(τ_end)[π]) + σ · rms(e) · ξ     (another example's end state)

ξ ~ N(0, I), rms over channels per position, π the batch rolled by one example, sg a stop-gradient
(where the other example is padding, its state is no settled state: those positions start at e; a
batch of one example starts at e everywhere),
with the batch's own depth plan (method, step, horizon), and take the answer cross-entropy at its
end. A field that satisfies it has an attractor the prompt picks, reached from a neighbourhood of
starts, which is what a convergence stop and a longer horizon can exploit. `other_end` starts far
from the prompt: from a settled state of another input, as large as the states deep in a solve are,
so the field must overwrite committed states rather than only settle fresh ones (what a long input
needs where information arrives late). One extra solve per step.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from ..data import Batch
from ..depth import DepthPlan
from ..model import LMOutput
from .base import Term, answer_cross_entropy, field_of, token_mask


class PathIndependence(Term):
    name = "path_independence"

    STARTS = ("prompt", "other_end")

    def __init__(self, sigma: float = 1.0, start: str = "prompt") -> None:
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma >= 0:
            raise ValueError(f"path_independence sigma must be a number >= 0, got {sigma!r}")
        if start not in self.STARTS:
            raise ValueError(f"path_independence start must be one of {self.STARTS}, got {start!r}")
        self.sigma = float(sigma)
        self.start = start

    def prepare(self, model: torch.nn.Module) -> None:
        field_of(model, self.name)

    def __call__(self, model: torch.nn.Module, batch: Batch, out: LMOutput | None) -> torch.Tensor:
        e = out.e  # (B, L, C)
        scale = e.detach().pow(2).mean(-1, keepdim=True).sqrt()  # (B, L, 1)
        base = e
        if self.start == "other_end" and e.shape[0] > 1:  # a batch of one has no other example: prompt start
            other_real = token_mask(batch).bool().roll(1, dims=0)[..., None]  # (B, L, 1)
            base = torch.where(other_real, out.depth.h.detach().roll(1, dims=0), e)  # (B, L, C)
        h0 = base + self.sigma * scale * torch.randn_like(e)
        plan = replace(out.depth.plan, regularisers=()) if out.depth.plan is not None else DepthPlan()
        solved = model.integrator(model.field, h0, e, plan=None if plan == DepthPlan() else plan)
        return answer_cross_entropy(model.decode(solved.h), batch.targets)
