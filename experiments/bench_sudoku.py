"""Benchmark (CPU): bidirectional models on 4×4 and 6×6 Sudoku, exact solve on unseen puzzles.

    OMP_NUM_THREADS=1 python experiments/bench_sudoku.py --minutes 25 --out experiments/results/bench_sudoku4.json
    OMP_NUM_THREADS=1 python experiments/bench_sudoku.py --task sudoku6 --minutes 60 --out experiments/results/bench_sudoku6.json
    OMP_NUM_THREADS=1 python experiments/bench_sudoku.py --task sudoku6 --model transformer --minutes 60 \
        --out experiments/results/bench_sudoku6_transformer.json

Trains `task=sudoku` (4×4, blanks 2..12) or `task=sudoku6` (6×6, blanks 8..24) with `model.causal=false`:
the looped model (one shared block, d=128, T=8) or the plain transformer of 8 layers (the looped model's
FLOPs per token, 8× its parameters); every blank count mixed in each batch of 128, no curriculum,
augmented batches, for a wall-clock budget. Then evaluates the final checkpoint on the test split (200
puzzles per blank count, seed 1234), the looped model at 4, 8, 16 and 32 loops. Reports exact solve,
constraint satisfaction, violations and cell accuracy per blank count, the training steps reached, and how
many test puzzles occur verbatim in the training set (with the exact solve on the ones that do not).
The wall-clock budget makes the result depend on the machine and its load: the load average is recorded.
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
from odelm.build import build_data

CONF = str(Path(__file__).resolve().parents[1] / "conf")
LEVELS = [2, 4, 6, 8, 10, 12]  # 4×4: every blank count a unique puzzle allows (6×6: conf/task/sudoku6.yaml)
MODELS = {"looped": ["model.loops=8"], "transformer": ["model=transformer", "model.n_layers=8"]}


def overrides(minutes: float, seed: int, task: str = "sudoku", model: str = "looped") -> list[str]:
    levels = [f"task.train_difficulties={LEVELS}".replace(" ", ""), f"task.test_difficulties={LEVELS}".replace(" ", ""),
              "task.n_train=20000"] if task == "sudoku" else []
    return [
        f"task={task}", *MODELS[model], "model.causal=false", "model.d_model=128", f"seed={seed}", *levels,
        "task.n_test_per_difficulty=200", "data.curriculum.enabled=false",
        "data.batch_size=128", "data.n_val_per_difficulty=50", "optim.lr=2e-3",
        "trainer.max_steps=100000", f"trainer.max_time_minutes={minutes}", "trainer.val_check_interval=200",
        "trainer.enable_progress_bar=false", "logger=csv",
    ]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=7.0, help="training wall-clock budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task", default="sudoku", choices=("sudoku", "sudoku6"))
    parser.add_argument("--model", default="looped", choices=sorted(MODELS))
    parser.add_argument("--run-dir", default=None, help="default outputs/bench_<task>_<model>")
    parser.add_argument("--out", default="experiments/results/bench_sudoku4.json")
    parser.add_argument("extra", nargs="*", help="extra training overrides, e.g. objective=progressive")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir or f"outputs/bench_{args.task}_{args.model}")
    given = overrides(args.minutes, args.seed, args.task, args.model) + list(args.extra)
    load_before = os.getloadavg()
    start = time.time()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=given)
        record = train.run(cfg, run_dir=run_dir / "train")
        data = build_data(cfg, cfg.seed)  # the same splits again (deterministic), to measure overlap
        swept = plain = None
        if args.model == "looped":  # the test-time compute knob: loops
            loops = sorted({4, 8, 16, 32, int(cfg.model.loops)})  # the trained count always among them
            eval_given = [f"ckpt={record['checkpoint']}", "sweep.key=model.loops", f"sweep.values={loops}".replace(" ", "")]
            swept = odelm_eval.run(compose("eval", overrides=eval_given), run_dir=run_dir / "eval", overrides=eval_given)
        else:
            eval_given = [f"ckpt={record['checkpoint']}"]
            plain = odelm_eval.run(compose("eval", overrides=eval_given), run_dir=run_dir / "eval", overrides=eval_given)
    train_prompts = {ex.prompt for ex in data.train}
    seen = [i for i, ex in enumerate(data.test) if ex.prompt in train_prompts]
    correct = _correct(swept, int(cfg.model.loops)) if swept else [bool(x) for x in plain["per_example"]["correct"]]
    unseen_correct = [ok for i, ok in enumerate(correct) if i not in set(seen)]
    result = {
        "command": "OMP_NUM_THREADS=1 python experiments/bench_sudoku.py " + " ".join(argv or sys.argv[1:]),
        "overrides": given,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                    "load_average_before": load_before, "load_average_after": os.getloadavg(),
                    "note": "CPU shared with other jobs during the run (see the load averages); wall-clock budget"},
        "train_steps": record["train_steps"], "train_seconds": record["train_seconds"], "params": record["params"],
        "test_puzzles": len(data.test), "test_puzzles_in_training_set": len(seen),
        "exact_solve_unseen_at_trained_loops": sum(unseen_correct) / max(len(unseen_correct), 1),
        "at_trained_loops": {k: record[k] for k in ("accuracy", "accuracy_by_difficulty", "constraint_satisfied",
                                                    "constraint_satisfied_by_difficulty", "violations",
                                                    "cell_accuracy", "nfe_forward")},
        "loop_sweep": swept["sweep"]["rows"] if swept else None,
        "total_seconds": round(time.time() - start, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("train_steps", "test_puzzles_in_training_set",
                                              "exact_solve_unseen_at_trained_loops")}, indent=2))
    print(json.dumps(result["at_trained_loops"]["accuracy_by_difficulty"]))
    return result


def _correct(swept: dict, loops: int) -> list[bool]:
    """Per-example exact solve at `loops` from the sweep's records (evaluated in test-split order)."""
    for record in swept["sweep"]["records"]:
        if record["value"] == loops:
            return [bool(x) for x in record["per_example"]["correct"]]
    raise KeyError(loops)


if __name__ == "__main__":
    main()
