"""A trained checkpoint used as a teacher by the distillation terms (shared helpers)."""
from __future__ import annotations

import torch

from ..model import LMOutput
from .base import Term, field_of


def check_teacher(teacher: torch.nn.Module, term: str) -> None:
    integrator = getattr(teacher, "integrator", None)
    if integrator is None or float(integrator.t_end) != int(integrator.t_end) or integrator.t_end < 1:
        raise ValueError(f"objective term {term!r} needs a latent teacher with an integer horizon (a looped run)")


@torch.no_grad()
def teacher_forward(teacher: torch.nn.Module, tokens: torch.Tensor, trajectory: bool) -> LMOutput:
    """The teacher's forward in eval mode, on the batch's device; with `trajectory`, its states at
    every integer depth 0 … T come back as out.depth.trajectory (T+1, B, L, C)."""
    teacher.to(tokens.device).eval()
    depths = range(int(teacher.integrator.t_end) + 1) if trajectory else None
    return teacher(tokens, trajectory_at=depths)


class TeacherTerm(Term):
    """A simulation-free term that trains the student's field on a trained teacher's hidden states:
    the teacher is attached once (`objective.teacher=PATH`), the student must have a field."""

    needs_output = False
    needs_teacher = True

    def __init__(self) -> None:
        self.teacher: torch.nn.Module | None = None

    def attach_teacher(self, teacher: torch.nn.Module) -> None:
        check_teacher(teacher, self.name)
        self.teacher = teacher

    def prepare(self, model: torch.nn.Module) -> None:
        field_of(model, self.name)

    def attached(self) -> torch.nn.Module:
        """The teacher; ValueError naming the term when none was attached."""
        if self.teacher is None:
            raise ValueError(f"objective term {self.name!r} needs objective.teacher=PATH (a looped checkpoint)")
        return self.teacher
