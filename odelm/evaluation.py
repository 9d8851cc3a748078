"""Exact-match evaluation, shared by training (val/test) and `odelm.eval`.

Accuracy is exact match of the whole answer (and its EOS) under teacher forcing: every supervised
position's argmax equals its target. For a causal model this equals greedy decoding's exact match
(tested). NFE is reported per example: under torchdiffeq every example of a batch is charged the
batch's NFE, since the batch shares one step size.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

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
    depth: list[float] = field(default_factory=list)  # depth reached per example (exit depth / τ)
    loss_sum: float = 0.0
    tokens: int = 0

    def add(
        self, batch: Batch, logits: torch.Tensor, nfe_forward: float | torch.Tensor,
        depth: float | torch.Tensor | None = None,
    ) -> None:
        """nfe_forward / depth: one number for the batch, or (B,) per-example values (adaptive exits)."""
        self.correct += exact_match(logits, batch.targets).tolist()
        self.difficulty += batch.difficulty.tolist()
        per_example = lambda v: [float(x) for x in v.tolist()] if torch.is_tensor(v) else [float(v)] * len(batch)  # noqa: E731
        self.nfe += per_example(nfe_forward)
        self.depth += per_example(depth if depth is not None else float("nan"))
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
            **self.compute_summary(),
        }

    def compute_summary(self) -> dict:
        """Per-example compute: mean depth, histograms of NFE and depth per difficulty, the raw lists."""
        levels = sorted(set(self.difficulty))
        pick = lambda values, d: [v for v, dd in zip(values, self.difficulty) if dd == d]  # noqa: E731
        has_depth = any(v == v for v in self.depth)  # NaN where the integrator reported none
        out = {
            "depth": sum(self.depth) / len(self.depth) if has_depth else None,
            "depth_by_difficulty": {str(d): _mean(pick(self.depth, d)) for d in levels} if has_depth else None,
            "nfe_histogram_by_difficulty": {str(d): histogram(pick(self.nfe, d)) for d in levels},
            "depth_histogram_by_difficulty": (
                {str(d): histogram(pick(self.depth, d)) for d in levels} if has_depth else None
            ),
            "per_example": {"difficulty": list(self.difficulty), "nfe": list(self.nfe),
                            "depth": list(self.depth) if has_depth else None},
        }
        return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def histogram(values: list[float], bins: int = 10) -> dict:
    """Counts of integer values ({value: count}) when all are whole numbers spanning <= 64 values;
    otherwise `bins` equal-width bins: {"edges": [...], "counts": [...]}."""
    if all(float(v).is_integer() for v in values) and max(values) - min(values) <= 64:
        counts: dict[str, int] = {}
        for v in sorted(values):
            counts[str(int(v))] = counts.get(str(int(v)), 0) + 1
        return counts
    lo, hi = min(values), max(values)
    width = (hi - lo) / bins or 1.0
    edges = [lo + i * width for i in range(bins + 1)]
    counts_list = [0] * bins
    for v in values:
        counts_list[min(int((v - lo) / width), bins - 1)] += 1
    return {"edges": [round(x, 6) for x in edges], "counts": counts_list}


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, batches: Iterable[Batch], device: torch.device | str = "cpu", exit_strategy: Any = None
) -> dict:
    """Teacher-forced exact match, loss and mean NFE of `model` over `batches`. With `exit_strategy` (an
    odelm.exits.AdaptiveDepth) each example stops at its own depth; NFE and depth are per example."""
    model.eval()
    acc = EvalAccumulator()
    for batch in batches:
        batch = batch.to(device)
        if exit_strategy is not None:
            res = exit_strategy(model, batch.tokens, batch.targets != IGNORE)  # read out at the supervised positions
            acc.add(batch, res.logits, res.nfe, res.depth)
            continue
        out = model(batch.tokens)
        acc.add(batch, out.logits, out.depth.nfe_forward, out.depth.depth)
    return acc.summary()
