"""Per-example early exit for the looped model: h_{k+1} = h_k + F(k, h_k; e), each example
stopping at the first step k >= min_depth whose criterion holds (or at max_loops).

Exited examples leave the batch: later steps evaluate the field on the remaining rows only, so the
compute saved is real, and an example's depth does not depend on its batch-mates (attention is
within a row; padding sits to the right of every read-out position, which causality ignores).
"""
from __future__ import annotations

import torch

from ..field import VectorField
from .base import Criterion, ExitContext, select_state


@torch.no_grad()
def loop_until_exit(
    field: VectorField, h0: torch.Tensor, e: torch.Tensor, criterion: Criterion, ctx: ExitContext, max_loops: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """h0, e: (B, L, C) → (h at exit (B, L, C), depth (B,) long, exited (B,) bool)."""
    if isinstance(max_loops, bool) or not isinstance(max_loops, int) or max_loops < 1:
        raise ValueError(f"exit.max_depth for a looped model must be an integer >= 1, got {max_loops!r}")
    batch = h0.shape[0]
    h_out = h0.clone()
    depth = torch.zeros(batch, dtype=torch.long, device=h0.device)
    exited = torch.zeros(batch, dtype=torch.bool, device=h0.device)
    rows = torch.arange(batch, device=h0.device)
    state = criterion.start(h0, ctx)
    h = h0
    for k in range(max_loops):
        h_next = h + field(torch.tensor(float(k), dtype=h0.dtype, device=h0.device), h, e)
        met = criterion.done(k + 1, h, h_next, ctx, state) & (k + 1 >= criterion.min_depth)
        finish = met | (k + 1 == max_loops)
        h_out[rows[finish]] = h_next[finish]
        depth[rows[finish]] = k + 1
        exited[rows[finish]] = met[finish]
        keep = ~finish
        if not keep.any():
            break
        rows, h, e = rows[keep], h_next[keep], e[keep]
        ctx, state = ctx.select(keep), select_state(state, keep)
    return h_out, depth, exited
