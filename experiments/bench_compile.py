"""`model.compile=true` on CPU: wall time of one training step (forward, backward, AdamW) with the
field's blocks compiled by torch.compile against eager, for the looped model (T=4) and the ODE on a
fixed Euler grid (step 0.5 over [0, 4]: 8 field evaluations). Medians of interleaved repeats (eager and
compiled alternate, so both see the same machine state); compilation happens in the warm-up steps
and is reported apart.

    OMP_NUM_THREADS=1 python experiments/bench_compile.py --reps 20 --out experiments/results/bench_compile.json
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

from odelm.data import EncodedExamples, collate
from odelm.depth import Loop, ODESolve
from odelm.model import LatentLM, ModelConfig
from odelm.objectives import answer_cross_entropy
from odelm.tasks import CharTokenizer, ModularChain, generate
from odelm.train import compile_blocks


def batch_of(n: int, seed: int = 0):
    task = ModularChain()
    examples = generate(task, [1, 2, 3], n, seed)
    tokenizer = CharTokenizer(task.alphabet())
    data = EncodedExamples(examples, tokenizer, "train")
    return tokenizer, collate([data[i] for i in range(n)])


def make(kind: str, vocab: int, d_model: int, compiled: bool) -> LatentLM:
    torch.manual_seed(0)
    integrator = Loop(4) if kind == "looped" else ODESolve(method="euler", step_size=0.5, t_end=4.0)
    model = LatentLM(ModelConfig(vocab_size=vocab, d_model=d_model, n_heads=4), integrator)
    if compiled:
        compile_blocks(model)
    return model.train()


def step(model, optimizer, batch) -> float:
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    answer_cross_entropy(model(batch.tokens).logits, batch.targets).backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--out", default="experiments/results/bench_compile.json")
    args = parser.parse_args()
    tokenizer, batch = batch_of(args.batch)
    rows = []
    for kind in ("looped", "ode_euler_0.5"):
        models = {c: make(kind, tokenizer.vocab_size, args.d_model, c) for c in (False, True)}
        opts = {c: torch.optim.AdamW(m.parameters(), lr=1e-4) for c, m in models.items()}
        warm = {}
        for c in (False, True):  # the first compiled steps compile (forward and backward graphs)
            start = time.perf_counter()
            for _ in range(args.warmup):
                step(models[c], opts[c], batch)
            warm[c] = time.perf_counter() - start
        times = {False: [], True: []}
        for _ in range(args.reps):
            for c in (False, True):
                times[c].append(step(models[c], opts[c], batch))
        eager, compiled = (1000 * statistics.median(times[c]) for c in (False, True))
        rows.append({"model": kind, "eager_ms": round(eager, 2), "compiled_ms": round(compiled, 2),
                     "speedup": round(eager / compiled, 3), "warmup_s_eager": round(warm[False], 2),
                     "warmup_s_compiled": round(warm[True], 2), "field_evals": 4 if kind == "looped" else 8})
        print(rows[-1], flush=True)
    record = {"reps": args.reps, "batch": args.batch, "d_model": args.d_model,
              "threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
              "note": "2 CPU cores shared with other jobs while measured", "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
