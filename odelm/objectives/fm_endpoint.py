"""Endpoint flow matching (rectified flow): regress the student's field onto the straight line
from h(0) = e to the teacher's final state h_T, over the student's horizon [0, t_end]. A field that
learns it exactly reaches h_T in one Euler step (solver=euler solver.step_size=t_end). Like
fm_distill it is simulation-free and trains the field only, in the teacher's hidden space."""
from __future__ import annotations

import torch

from ..data import Batch
from ..model import LMOutput
from .base import flow_matching_loss, token_mask
from .teacher import TeacherTerm, teacher_forward


class EndpointFlowMatching(TeacherTerm):
    name = "fm_endpoint"

    def __call__(self, model: torch.nn.Module, batch: Batch, out: LMOutput | None) -> torch.Tensor:
        t_out = teacher_forward(self.attached(), batch.tokens, trajectory=False)
        e = t_out.e  # (B, L, C) = h(0)
        start = torch.zeros(e.shape[0], dtype=e.dtype, device=e.device)
        end = torch.full_like(start, float(model.integrator.t_end))
        return flow_matching_loss(model.field, e, t_out.depth.h, start, end, e, token_mask(batch))
