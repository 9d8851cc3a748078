"""Time to a target accuracy (core benchmark (c)): train each model until validation accuracy on the
trained difficulties reaches the target, or a wall-clock cap; one after another, same threads.

    python experiments/time_to_accuracy.py                                  # looped, transformer, ode (fixed-grid + kinetic)
    python experiments/time_to_accuracy.py --arms looped,ode_dopri5 --minutes 12 --threads 1

Each arm is one `python -m odelm.train` run (its own run directory under --runs); the table of
train_seconds (validation excluded), steps and test accuracy per difficulty goes to --out (.json, .md).
Arms are run sequentially so that they never share the CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ARMS: dict[str, list[str]] = {
    "looped": ["model=looped"],
    "transformer": ["model=transformer", "model.n_layers=4"],
    # the cheapest ODE recipe of the objectives benchmark: fixed-grid training with the kinetic regulariser
    "ode_euler_kinetic": ["model=ode", "solver=euler", "solver.step_size=0.5", "objective=kinetic"],
    "ode_dopri5": ["model=ode", "solver=dopri5", "solver.rtol=1e-3", "solver.atol=1e-3"],
}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arms", default="looped,transformer,ode_euler_kinetic", help=f"comma-separated: {list(ARMS)}")
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--minutes", type=float, default=12.0, help="wall-clock cap per arm")
    parser.add_argument("--threads", type=int, default=None, help="OMP/torch threads per run (default: torch's)")
    parser.add_argument("--runs", default="outputs/time_to_accuracy")
    parser.add_argument("--out", default="experiments/results/time_to_accuracy")
    parser.add_argument("overrides", nargs="*", help="train overrides applied to every arm")
    args = parser.parse_args(argv)
    arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        parser.error(f"unknown arm(s) {unknown}; choose from {list(ARMS)}")
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    rows = []
    for arm in arms:
        run_dir = Path(args.runs) / arm
        cmd = [sys.executable, "-m", "odelm.train", *ARMS[arm], f"target_accuracy={args.target}",
               f"trainer.max_time_minutes={args.minutes}", "trainer.enable_progress_bar=false",
               f"hydra.run.dir={run_dir}", *args.overrides]
        print("$", " ".join(cmd), flush=True)
        proc = subprocess.run(cmd, env=env)
        metrics = run_dir / "metrics.json"
        record = json.loads(metrics.read_text()) if metrics.exists() else {"status": f"exit {proc.returncode}"}
        rows.append({
            "arm": arm, "overrides": ARMS[arm], "status": record.get("status"),
            "reached": record.get("target_reached_at_step") is not None,
            "train_seconds": record.get("train_seconds"), "train_steps": record.get("train_steps"),
            "ms_per_step": (1000 * record["train_seconds"] / record["train_steps"]) if record.get("train_steps") else None,
            "accuracy_by_difficulty": record.get("accuracy_by_difficulty"), "nfe_forward": record.get("nfe_forward"),
            "params": record.get("params"), "run_dir": str(run_dir),
        })
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"target": args.target, "minutes": args.minutes, "threads": args.threads, "overrides": args.overrides}
    out.with_suffix(".json").write_text(json.dumps({"settings": meta, "rows": rows}, indent=2) + "\n")
    lines = ["| arm | reached | train s | steps | ms/step | accuracy by difficulty | NFE | params |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        accs = " / ".join(f"{a:.3f}" for a in (r["accuracy_by_difficulty"] or {}).values())
        lines.append(f"| {r['arm']} | {r['reached']} | {r['train_seconds']} | {r['train_steps']} | "
                     f"{r['ms_per_step'] and round(r['ms_per_step'], 1)} | {accs} | {r['nfe_forward']} | {r['params']} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows


if __name__ == "__main__":
    main()
