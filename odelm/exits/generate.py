"""Greedy generation with a per-token exit for the looped model.

Each generated token is read from the last position at that position's own exit depth d (the first
step k >= min_depth whose criterion holds there, or max_loops). odelm keeps no KV cache: every
generation step recomputes the prefix through the loop. What a KV cache would hold for an earlier
position P at a depth k it never reached is therefore a policy, emulated on the recomputed prefix:

- kv="full": every earlier position is recomputed at every depth the new token needs, exactly as a
  full-depth cache would provide (no approximation besides the exit itself; a real cache would
  have to compute those missing entries, so this is the accuracy ceiling of per-token exit).
- kv="freeze": the state of position P is held at its exit state h_P(d_P) for all later steps,
  so later tokens attend at depth k > d_P to keys/values recomputed from that frozen state: the
  "deepest available" entry (Huginn) / "reuse the last step's state" (Ouro) policy. Prompt
  positions before the last one count as prefilled at full depth; the last prompt position is the
  first read-out, so it is frozen at the first token's exit depth. (A cache would store the keys
  and values of the steps that produced h_P(1..d_P), i.e. computed from h_P(d_P − 1) at the
  last one; recomputing from h_P(d_P) is the nearest equivalent without a cache.)

The accuracy each policy costs is measured in experiments/bench_exits.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..depth import Loop
from .base import Criterion, ExitContext

KV_POLICIES = ("full", "freeze")


@dataclass
class GenerationOutput:
    tokens: torch.Tensor  # (B, L0 + n) prompt and generated ids
    depth: torch.Tensor  # (B, n) exit depth of the step that produced each generated token


@torch.no_grad()
def generate_with_exit(
    model: torch.nn.Module,
    tokens: torch.Tensor,
    max_new_tokens: int,
    eos_id: int,
    criterion: Criterion,
    max_loops: int | None = None,
    kv: str = "freeze",
) -> GenerationOutput:
    """Greedy decoding of prompts (B, L0) of equal length with a per-token exit; stops once every row
    has produced `eos_id` (rows that finished keep decoding, as `generate` does)."""
    if kv not in KV_POLICIES:
        raise ValueError(f"unknown kv policy {kv!r}; choose one of {KV_POLICIES}")
    if not getattr(getattr(model, "config", None), "causal", True):
        raise ValueError("generate_with_exit needs a causal model; a bidirectional model (model.causal=false) "
                         "predicts every position at once and has nothing to decode left to right")
    if not isinstance(getattr(model, "integrator", None), Loop):
        raise ValueError("per-token exit during generation is implemented for the looped model (integrator=loop)")
    loops = max_loops if max_loops is not None else model.integrator.loops
    if isinstance(loops, bool) or not isinstance(loops, int) or loops < 1:
        raise ValueError(f"max_loops must be an integer >= 1, got {loops!r}")
    batch, prompt_len = tokens.shape
    gate = model.exit_probability if getattr(model, "exit_gate", None) is not None else None
    depths = torch.zeros(batch, 0, dtype=torch.long, device=tokens.device)
    done = torch.zeros(batch, dtype=torch.bool, device=tokens.device)
    for _ in range(max_new_tokens):
        length = tokens.shape[1]
        last = length - 1
        limit = torch.full((batch, length), loops, dtype=torch.long, device=tokens.device)
        if kv == "freeze":  # positions prompt_len − 1 … last − 1 were read out at their exit depths
            limit[:, prompt_len - 1 : last] = depths
        mask = torch.zeros(batch, length, dtype=torch.bool, device=tokens.device)
        mask[:, last] = True
        ctx = ExitContext(decode=model.decode, gate=gate, mask=mask)
        e = model.encode(tokens)
        h = e
        state = criterion.start(h, ctx)
        exited = torch.zeros(batch, dtype=torch.bool, device=tokens.device)
        depth = torch.full((batch,), loops, dtype=torch.long, device=tokens.device)
        for k in range(loops):
            active = k < limit  # (B, L)
            active[:, last] = ~exited
            update = model.field(torch.tensor(float(k), dtype=e.dtype, device=e.device), h, e)
            h_next = h + update * active[..., None]
            met = criterion.done(k + 1, h, h_next, ctx, state) & (k + 1 >= criterion.min_depth) & ~exited
            depth[met] = k + 1
            exited |= met
            h = h_next
            if exited.all():
                break
        next_id = model.decode(h[:, last]).argmax(-1)  # (B,)
        tokens = torch.cat([tokens, next_id[:, None]], dim=1)
        depths = torch.cat([depths, depth[:, None]], dim=1)
        done |= next_id == eos_id
        if done.all():
            break
    return GenerationOutput(tokens=tokens, depth=depths)
