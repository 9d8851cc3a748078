"""Flow matching, self-straightening (reflow): from the model's own detached endpoints
(h(0), h(T)), regress the field at a random point of the chord onto the chord velocity
(h(T) − h(0)) / T. A field that is straight needs few solver steps. Trains the field only."""
from __future__ import annotations

import torch

from ..data import Batch
from ..model import LMOutput
from .base import Term, field_of, flow_matching_loss, token_mask


class Reflow(Term):
    name = "fm_reflow"

    def prepare(self, model: torch.nn.Module) -> None:
        field_of(model, self.name)

    def __call__(self, model: torch.nn.Module, batch: Batch, out: LMOutput | None) -> torch.Tensor:
        e = out.e.detach()  # (B, L, C): h(0) = e
        h1 = out.depth.h.detach()  # (B, L, C) at the depth reached (a random one under STEER)
        start = torch.zeros(e.shape[0], dtype=e.dtype, device=e.device)
        end = torch.full_like(start, float(out.depth.depth))
        return flow_matching_loss(model.field, e, h1, start, end, e, token_mask(batch))
