"""The logit lens: decode the latent state h(τ) at chosen depths and ask what it already knows.

For each requested depth τ (every step of a loop; any τ in [0, t_end] of an ODE, read from the
solver's dense output) this reports, over the read-out (supervised) positions:
teacher-forced exact-match accuracy of decode(h(τ)) (overall and per difficulty), the mean entropy
of its next-token distribution, and the mean relative distance ‖h(τ) − h(t_end)‖ / ‖h(t_end)‖.
At τ = t_end the lens is the model's own output (tested).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F

from ..data import IGNORE, Batch
from ..evaluation import exact_match


@torch.no_grad()
def logit_lens(model: torch.nn.Module, batches: Iterable[Batch], depths: Sequence[float]) -> list[dict]:
    """One row per depth: {depth, accuracy, accuracy_by_difficulty, entropy, distance_to_final}."""
    model.eval()
    correct: dict[float, list[bool]] = defaultdict(list)
    by_diff: dict[float, dict[int, list[bool]]] = defaultdict(lambda: defaultdict(list))
    entropy: dict[float, float] = defaultdict(float)
    distance: dict[float, float] = defaultdict(float)
    positions = 0
    taus: list[float] = []
    for batch in batches:
        out = model(batch.tokens, trajectory_at=depths)
        taus = out.depth.trajectory_tau
        mask = batch.targets != IGNORE  # (B, L)
        final = out.depth.h[mask]  # (N, C)
        positions += int(mask.sum())
        for k, tau in enumerate(taus):
            logits = model.decode(out.depth.trajectory[k])  # (B, L, V)
            ok = exact_match(logits, batch.targets).tolist()
            correct[tau] += ok
            for d, hit in zip(batch.difficulty.tolist(), ok):
                by_diff[tau][d].append(hit)
            logp = F.log_softmax(logits[mask].float(), dim=-1)
            entropy[tau] += float(-(logp.exp() * logp).sum(-1).sum())
            h = out.depth.trajectory[k][mask]
            distance[tau] += float(((h - final).norm(dim=-1) / final.norm(dim=-1).clamp_min(1e-12)).sum())
    return [
        {
            "depth": tau,
            "accuracy": sum(correct[tau]) / len(correct[tau]),
            "accuracy_by_difficulty": {str(d): sum(v) / len(v) for d, v in sorted(by_diff[tau].items())},
            "entropy": entropy[tau] / positions,
            "distance_to_final": distance[tau] / positions,
        }
        for tau in taus
    ]
