"""Core benchmark (CPU): solver overhead and wall time per training step, ODE vs looped.

    python experiments/bench_core.py                 # (a) + (b), ~3 minutes on 2 cores
    python experiments/bench_core.py --reps 30 --out experiments/results/bench_core.json

(a) solver overhead: one torchdiffeq solve with a fixed-grid method (euler, rk4) divided by the
    time of the same number of bare field evaluations done by hand (h ← h + F), at d=256,
    sequence 64, batch 32; forward only and forward+backward. Medians of interleaved repeats.
(b) wall time per training step (forward, backward, AdamW) at d=128 on default-task batches:
    looped T=4, ODE fixed-grid (euler/rk4), ODE adaptive (dopri5 at rtol=atol=1e-3, t_end=4; direct
    back-propagation and adjoint). The adaptive NFE depends on the field, so it is reported
    beside the time; this measures an untrained field (NFE grows as fields train: see the
    time-to-accuracy runs in the README).
Time to a target accuracy (c) comes from training runs: experiments/time_to_accuracy.py.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from odelm.data import EncodedExamples, collate
from odelm.depth import Loop, ODESolve
from odelm.field import VectorField
from odelm.model import LatentLM, ModelConfig
from odelm.objectives import answer_cross_entropy
from odelm.tasks import CharTokenizer, ModularChain, generate
from odelm.precision import configure_arithmetic


def median_ms(samples: list[float]) -> float:
    return 1000 * statistics.median(samples)


def solver_overhead(reps: int, d_model: int = 256, seq: int = 64, batch: int = 32, steps: int = 8) -> list[dict]:
    torch.manual_seed(0)
    field = VectorField(d_model, n_heads=4, n_blocks=1, injection="add")
    h0 = torch.randn(batch, seq, d_model)
    e = torch.randn(batch, seq, d_model)
    rows = []
    for method, stages in (("euler", 1), ("rk4", 4)):
        solver = ODESolve(method, step_size=1.0, t_end=float(steps))
        n_evals = steps * stages

        def bare(grad: bool) -> torch.Tensor:
            h = h0.requires_grad_(grad)
            for k in range(n_evals):  # the same number of field evaluations, no solver around them
                h = h + field(torch.tensor(float(k)), h, e)
            return h

        def solve(grad: bool) -> torch.Tensor:
            return solver(field, h0.requires_grad_(grad), e).h

        for mode in ("forward", "forward+backward"):
            grad = mode != "forward"
            times = {"bare": [], "solver": []}
            for _ in range(reps):
                for name, fn in (("bare", bare), ("solver", solve)):  # interleaved: same machine state
                    start = time.perf_counter()
                    if grad:
                        fn(True).sum().backward()
                        field.zero_grad(set_to_none=True)
                    else:
                        with torch.no_grad():
                            fn(False)
                    times[name].append(time.perf_counter() - start)
            rows.append({
                "method": method, "mode": mode, "field_evals": n_evals,
                "bare_ms": median_ms(times["bare"]), "solver_ms": median_ms(times["solver"]),
                "overhead": statistics.median(times["solver"]) / statistics.median(times["bare"]),
            })
    return rows


def step_times(reps: int, d_model: int = 128, batch: int = 64) -> list[dict]:
    task = ModularChain(7)
    tokenizer = CharTokenizer(task.alphabet())
    examples = EncodedExamples(generate(task, [1, 2, 3], batch * (reps + 3), seed=0), tokenizer, "bench")
    batches = [collate([examples[i] for i in range(k * batch, (k + 1) * batch)]) for k in range(reps + 3)]
    variants = {
        "looped T=4": Loop(4),
        "ode euler step 1 (= looped)": ODESolve("euler", step_size=1.0, t_end=4),
        "ode rk4 step 1": ODESolve("rk4", step_size=1.0, t_end=4),
        "ode dopri5 1e-3 direct": ODESolve("dopri5", rtol=1e-3, atol=1e-3, t_end=4),
        "ode dopri5 1e-3 adjoint+seminorm": ODESolve("dopri5", rtol=1e-3, atol=1e-3, t_end=4, adjoint=True),
    }
    models = {}
    for name, integrator in variants.items():
        torch.manual_seed(0)  # same initial weights for every variant
        model = LatentLM(ModelConfig(vocab_size=tokenizer.vocab_size, d_model=d_model, n_heads=4), integrator)
        models[name] = (model, torch.optim.AdamW(model.parameters(), lr=1e-3))
    times = {name: [] for name in variants}
    nfe = {name: [] for name in variants}
    for k, batch_k in enumerate(batches):
        for name, (model, optimizer) in models.items():  # interleaved across variants
            model.field.nfe.reset()
            start = time.perf_counter()
            out = model(batch_k.tokens)
            loss = answer_cross_entropy(out.logits, batch_k.targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            elapsed = time.perf_counter() - start
            if k >= 3:  # warm-up excluded
                times[name].append(elapsed)
                nfe[name].append((out.depth.nfe_forward, model.field.nfe.backward))
    base = statistics.median(times["looped T=4"])
    return [
        {
            "variant": name, "ms_per_step": median_ms(times[name]),
            "vs_looped": statistics.median(times[name]) / base,
            "nfe_forward": statistics.median(f for f, _ in nfe[name]),
            "nfe_backward": statistics.median(b for _, b in nfe[name]),
        }
        for name in variants
    ]


def table(rows: list[dict]) -> str:
    keys = list(rows[0])
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    return "\n".join(["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
                     + ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--out", default="experiments/results/bench_core.json")
    args = parser.parse_args()
    configure_arithmetic()  # the one arithmetic of every entry point (odelm/precision.py)
    torch.set_num_threads(torch.get_num_threads())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    overhead = solver_overhead(args.reps)
    print("\n(a) solver overhead, d=256, seq 64, batch 32\n" + table(overhead), flush=True)
    steps = step_times(args.reps)
    print("\n(b) wall time per training step, d=128, batch 64, modular_chain 1-3 ops\n" + table(steps))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                               "solver_overhead": overhead, "step_times": steps}, indent=2) + "\n")
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
