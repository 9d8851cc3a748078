"""Flow matching, trajectory distillation: regress the student's field onto the teacher's
piecewise-linear hidden-state trajectory h_0 … h_T (teacher depth k ↦ student depth k·t_end/T).

Simulation-free: one field evaluation per example and no ODE solve of the student. The inputs
(states, prompt encoding e) are the teacher's, so only the student's field is trained; the student
shares the teacher's embedding, prelude, coda and head (copied at start: see build.init_from_teacher).
"""
from __future__ import annotations

import torch

from ..data import Batch
from ..model import LMOutput
from .base import flow_matching_loss, token_mask
from .teacher import TeacherTerm, teacher_forward


class TrajectoryDistillation(TeacherTerm):
    name = "fm_distill"

    def __call__(self, model: torch.nn.Module, batch: Batch, out: LMOutput | None) -> torch.Tensor:
        t_out = teacher_forward(self.attached(), batch.tokens, trajectory=True)
        states = t_out.depth.trajectory  # (T+1, B, L, C)
        steps, B = states.shape[0] - 1, states.shape[1]
        delta = model.integrator.t_end / steps  # student depth per teacher step
        shared = bool(getattr(model.field, "depth_conditioned", False))
        k = torch.randint(steps, (1 if shared else B,), device=states.device).expand(B)  # segment per example
        rows = torch.arange(B, device=states.device)
        tau0 = k.to(states.dtype) * delta
        return flow_matching_loss(model.field, states[k, rows], states[k + 1, rows], tau0, tau0 + delta, t_out.e,
                                  token_mask(batch))
