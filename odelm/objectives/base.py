"""An objective is a weighted sum of named terms; each term is logged on its own."""
from __future__ import annotations

import abc
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data import IGNORE, Batch
from ..model import LMOutput


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor  # scalar: Σ weight · term
    terms: dict[str, torch.Tensor]  # unweighted, detached, for logging


class Term(abc.ABC):
    """One loss term. `name` is its key in metrics.csv."""

    name: str

    @abc.abstractmethod
    def __call__(self, model: torch.nn.Module, batch: Batch, out: LMOutput) -> torch.Tensor:
        """A scalar loss for this batch."""


def answer_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean CE over supervised positions. logits (B, L, V), targets (B, L) with IGNORE elsewhere."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)


class Objective:
    """Σ_i weight_i · term_i(model, batch, out)."""

    def __init__(self, terms: dict[str, tuple[Term, float]]) -> None:
        if not terms:
            raise ValueError("an objective needs at least one term")
        for name, (_, weight) in terms.items():
            if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
                raise ValueError(f"objective weight of {name!r} must be a number >= 0, got {weight!r}")
        self.terms = terms

    @property
    def names(self) -> list[str]:
        return list(self.terms)

    def __call__(self, model: torch.nn.Module, batch: Batch, out: LMOutput) -> ObjectiveOutput:
        values = {name: term(model, batch, out) for name, (term, _) in self.terms.items()}
        loss = sum(self.terms[name][1] * value for name, value in values.items())
        return ObjectiveOutput(loss=loss, terms={k: v.detach() for k, v in values.items()})
