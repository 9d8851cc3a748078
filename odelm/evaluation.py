"""Exact-match evaluation, shared by training (val/test) and `odelm.eval`.

Accuracy is exact match of the whole answer (and its EOS) under teacher forcing: every supervised
position's argmax equals its target. For a causal model this equals greedy decoding's exact match
(tested). NFE is reported per example: under torchdiffeq every example of a batch is charged the
batch's NFE, since the batch shares one step size.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable

import torch
import torch.nn.functional as F

from .data import IGNORE, Batch


def exact_match(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, L, V), (B, L) → (B,) bool: every supervised position predicted right."""
    ok = (logits.argmax(-1) == targets) | (targets == IGNORE)
    return ok.all(dim=1)


@dataclass
class EvalAccumulator:
    """Collects per-example results batch by batch."""

    correct: list[bool] = field(default_factory=list)
    difficulty: list[int] = field(default_factory=list)
    nfe: list[float] = field(default_factory=list)
    loss_sum: float = 0.0
    tokens: int = 0

    def add(self, batch: Batch, logits: torch.Tensor, nfe_forward: float) -> None:
        self.correct += exact_match(logits, batch.targets).tolist()
        self.difficulty += batch.difficulty.tolist()
        self.nfe += [float(nfe_forward)] * len(batch)
        mask = batch.targets != IGNORE
        self.loss_sum += F.cross_entropy(logits[mask], batch.targets[mask], reduction="sum").item()
        self.tokens += int(mask.sum())

    def summary(self) -> dict:
        n = len(self.correct)
        if n == 0:
            raise ValueError("evaluated no examples")
        by_difficulty: dict[int, list[bool]] = defaultdict(list)
        nfe_by_difficulty: dict[int, list[float]] = defaultdict(list)
        for ok, d, nfe in zip(self.correct, self.difficulty, self.nfe):
            by_difficulty[d].append(ok)
            nfe_by_difficulty[d].append(nfe)
        return {
            "accuracy": sum(self.correct) / n,
            "accuracy_by_difficulty": {str(d): sum(v) / len(v) for d, v in sorted(by_difficulty.items())},
            "n_by_difficulty": {str(d): len(v) for d, v in sorted(by_difficulty.items())},
            "nfe_forward": sum(self.nfe) / n,
            "nfe_forward_by_difficulty": {str(d): sum(v) / len(v) for d, v in sorted(nfe_by_difficulty.items())},
            "loss": self.loss_sum / max(self.tokens, 1),
            "n_examples": n,
        }


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Iterable[Batch], device: torch.device | str = "cpu") -> dict:
    """Teacher-forced exact match, loss and mean NFE of `model` over `batches`."""
    model.eval()
    acc = EvalAccumulator()
    for batch in batches:
        batch = batch.to(device)
        out = model(batch.tokens)
        acc.add(batch, out.logits, out.depth.nfe_forward)
    return acc.summary()
