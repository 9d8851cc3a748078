"""Benchmark (CPU): size extrapolation by iterating longer, on prefix parity and mazes.

    OMP_NUM_THREADS=1 python experiments/bench_extrapolation.py --task prefix_parity --minutes 15
    OMP_NUM_THREADS=1 python experiments/bench_extrapolation.py --task maze --minutes 20
    OMP_NUM_THREADS=1 python experiments/bench_extrapolation.py --task prefix_parity --model ode --loops 12 \
        --sweep 12,24,32,48,64 model.attn_window=2      # the ODE on its default Euler grid, horizon swept
    OMP_NUM_THREADS=1 python experiments/bench_extrapolation.py --task prefix_parity --model ode --loops 12 \
        --objective "[random_solver,progressive]" "objective.depth.steps=[12,24]" model.attn_window=2   # another recipe

Trains the looped model (one shared block, d=128, rotary positions only: the test inputs are longer than
any trained one, so learned absolute positions are off) for a wall-clock budget with DeepThinking's
progressive loss (half the loss at the trained depth, half after a random number of extra loops from a
detached state), so that extra loops are trained not to undo a settled answer. Then evaluates the final
checkpoint on the test split (200 examples per difficulty, seed 1234) at increasing loop counts; no
setting is picked as "best" (these are test numbers).

- prefix_parity: per-position running XOR, trained on 8/12/16 bits, tested at 16/32/64 bits (causal).
  Target: >= 0.95 exact at 64 bits.
- maze: mark a shortest S-G path, trained on 3x3 and 4x4 rooms (7x7, 9x9 grids), tested up to 7x7 rooms
  (15x15 grids); bidirectional, with 2-D rotary positions (model.row_end='|') so that a vertical
  neighbour is one row away at every size. Target: >= 0.9 valid shortest paths at >= 1.5x the side.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from odelm import eval as odelm_eval
from odelm import train
from odelm.runs import command_line, val_curve

CONF = str(Path(__file__).resolve().parents[1] / "conf")


TASKS = {  # task overrides, default trained loops, default loop sweep
    "prefix_parity": (["task=prefix_parity"], 16, "16,32,64,96,128"),
    "maze": (["task=maze", "model.causal=false", "model.row_end=|"], 16, "16,32,48,64"),
}


DEPTH = {"looped": ("model.loops", lambda loops: [f"model.loops={loops}"]),  # model → swept key, depth overrides
         "ode": ("solver.t_end", lambda loops: [f"solver.t_end={float(loops)}"])}


def overrides(task: str, minutes: float, seed: int, loops: int, model: str = "looped",
              objective: str = "progressive") -> list[str]:
    return [
        *TASKS[task][0], f"model={model}", *DEPTH[model][1](loops), "model.d_model=128", f"seed={seed}",
        f"objective={objective}", "data.curriculum.enabled=false", "data.n_val_per_difficulty=100",
        "trainer.max_steps=100000", f"trainer.max_time_minutes={minutes}", "trainer.val_check_interval=250",
        "trainer.enable_progress_bar=false", "logger=csv",
    ]


def _device_name(given: list[str]) -> str:
    """The device training ran on: the GPU's name when torch sees one and the overrides do not ask for the CPU."""
    import torch

    accelerator = next((o.split("=", 1)[1] for o in reversed(given) if o.startswith("trainer.accelerator=")), "auto")
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() and accelerator != "cpu" else "cpu"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--minutes", type=float, default=15.0, help="training wall-clock budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="looped", choices=sorted(DEPTH), help="looped, or ode (its default Euler grid)")
    parser.add_argument("--loops", type=int, default=None, help="trained loop count, or ODE horizon (default: the task's)")
    parser.add_argument("--sweep", default=None, help="loop counts (ODE: horizons) evaluated (default: the task's)")
    parser.add_argument("--objective", default="progressive",
                        help="the objective= recipe, e.g. [random_solver,progressive] (default: progressive)")
    parser.add_argument("--run-dir", default=None, help="default outputs/bench_extrapolation/<task>")
    parser.add_argument("--out", default=None, help="default experiments/results/bench_extrapolation_<task>.json")
    parser.add_argument("extra", nargs="*", help="more training overrides")
    args = parser.parse_intermixed_args(argv)  # overrides may come before or after the options
    loops = args.loops or TASKS[args.task][1]
    sweep = args.sweep or TASKS[args.task][2]
    run_dir = Path(args.run_dir or f"outputs/bench_extrapolation/{args.task}")
    out = Path(args.out or f"experiments/results/bench_extrapolation_{args.task}.json")
    given = overrides(args.task, args.minutes, args.seed, loops, args.model, args.objective) + list(args.extra)
    load_before = os.getloadavg()
    start = time.time()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        record = train.run(compose("train", overrides=given), run_dir=run_dir / "train")
        eval_given = [f"ckpt={record['checkpoint']}", f"sweep.key={DEPTH[args.model][0]}", f"sweep.values=[{sweep}]"]
        swept = odelm_eval.run(compose("eval", overrides=eval_given), run_dir=run_dir / "eval", overrides=eval_given)
    rows = swept["sweep"]["rows"]  # no "best" row is picked: these are test numbers, reported per depth
    result = {
        "command": command_line("experiments/bench_extrapolation.py", argv or sys.argv[1:]),
        "overrides": given,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "device": _device_name(given),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                    "load_average_before": load_before, "load_average_after": os.getloadavg()},
        "train_steps": record["train_steps"], "train_seconds": record["train_seconds"], "params": record["params"],
        "val_accuracy": record.get("val_accuracy"),
        "val_curve": val_curve(run_dir / "train"),  # (step, validation accuracy at the trained lengths)
        "at_trained_loops": {k: record.get(k) for k in ("accuracy", "accuracy_by_difficulty", "cell_accuracy",
                                                        "cell_accuracy_by_difficulty", "nfe_forward")},
        "loop_sweep": rows,
        "total_seconds": round(time.time() - start, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"train_steps": result["train_steps"], "at_trained_loops": result["at_trained_loops"]}, indent=1))
    for r in rows:
        print(json.dumps(r))
    return result


if __name__ == "__main__":
    main()
