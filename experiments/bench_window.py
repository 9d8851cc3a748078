"""Benchmark (CPU): what building the local-attention window once per batch saves in a training step.

    OMP_NUM_THREADS=1 python experiments/bench_window.py --out experiments/results/bench_window.json

A windowed attention (model.attn_window) needs a mask of allowed (query, key) pairs and, with
window_padding=zeros, an additive bias with one zero-key column. Both depend only on the batch (its
padding and, on grid text, each token's row and column), not on the hidden state, so one solve can
build them once for all its field evaluations. This times one training step (forward through the
solve, backward, no optimiser) with the per-batch cache ("cached") against the same step with the
cache emptied before every field evaluation ("rebuilt"), which is what every evaluation did before the
cache existed. Arms are interleaved and medians reported, with their ratio, on two settings of the
size-extrapolation benchmark:
- maze: bidirectional, 2-D positions (model.row_end), window 1 (a 3×3 square), 7×7 and 9×9 mazes,
  batch 32, d 64, the grid ODE (Euler 0.5, horizon 12: 24 evaluations);
- prefix parity: causal, zero-padded window 2, 8–16 bits, batch 128, d 64, the same grid.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from odelm.data import IGNORE, EncodedExamples, collate_per_position
from odelm.depth import ODESolve
from odelm.model import LatentLM, ModelConfig
from odelm.nn import CausalSelfAttention
from odelm.tasks import CharTokenizer, generate
from odelm.tasks.maze import Maze
from odelm.tasks.prefix_parity import PrefixParity


def setting(name: str):
    """(model, batch) of one benchmark setting, seeded."""
    torch.manual_seed(0)
    if name == "maze":
        task = Maze()
        examples = generate(task, [3, 4], 32, seed=0)
        tok = CharTokenizer(task.alphabet())
        data = EncodedExamples(examples, tok, "train", layout="per_position")
        batch = collate_per_position([data[i] for i in range(len(data))])
        cfg = ModelConfig(vocab_size=tok.vocab_size, d_model=64, n_heads=2, causal=False,
                          row_end_id=tok.encode("|")[0], attn_window=1)
    else:
        task = PrefixParity()
        examples = generate(task, [8, 12, 16], 128, seed=0)
        tok = CharTokenizer(task.alphabet())
        data = EncodedExamples(examples, tok, "train", layout="per_position")
        batch = collate_per_position([data[i] for i in range(len(data))])
        cfg = ModelConfig(vocab_size=tok.vocab_size, d_model=64, n_heads=2, attn_window=2)
    model = LatentLM(cfg, ODESolve("euler", step_size=0.5, t_end=12.0))
    return model, batch


def step(model: LatentLM, batch) -> float:
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    logits = model(batch.tokens).logits  # (B, L, V)
    loss = F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), ignore_index=IGNORE)
    loss.backward()
    return time.perf_counter() - start


CACHED = CausalSelfAttention._window_bias


def rebuilt(self: CausalSelfAttention, *args):
    """The window mask and bias built from scratch, as every evaluation built them before the cache
    (the 1-D mask alone was cached then: an upper bound there, by an L × L comparison)."""
    self._bias_cache = None
    return CACHED(self, *args)


def measure(name: str, reps: int) -> dict:
    model, batch = setting(name)
    times = {"cached": [], "rebuilt": []}
    for rep in range(reps + 1):  # the first round warms up and is dropped
        for arm in ("cached", "rebuilt") if rep % 2 == 0 else ("rebuilt", "cached"):
            CausalSelfAttention._window_bias = CACHED if arm == "cached" else rebuilt
            try:
                seconds = step(model, batch)
            finally:
                CausalSelfAttention._window_bias = CACHED
            if rep:
                times[arm].append(seconds)
    cached, again = statistics.median(times["cached"]), statistics.median(times["rebuilt"])
    return {"setting": name, "batch": list(batch.tokens.shape), "reps": reps,
            "step_ms_cached": round(1000 * cached, 1), "step_ms_rebuilt": round(1000 * again, 1),
            "rebuilt_over_cached": round(again / cached, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--out", default="experiments/results/bench_window.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows = [measure(name, args.reps) for name in ("maze", "prefix_parity")]
    for row in rows:
        print(row)
    record = {"command": f"OMP_NUM_THREADS={torch.get_num_threads()} python experiments/bench_window.py "
                         f"--reps {args.reps} --out {args.out}",
              "torch": torch.__version__, "machine": platform.platform(), "threads": torch.get_num_threads(),
              "load_average_before": load_before, "load_average_after": os.getloadavg(), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
