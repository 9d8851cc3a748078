"""Cross-entropy on the answer tokens at the final depth."""
from __future__ import annotations

import torch

from ..data import Batch
from ..model import LMOutput
from .base import Term, answer_cross_entropy


class CrossEntropy(Term):
    name = "ce"

    def __call__(self, model: torch.nn.Module, batch: Batch, out: LMOutput) -> torch.Tensor:
        return answer_cross_entropy(out.logits, batch.targets)
