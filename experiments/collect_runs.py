"""One row per training run of a reproduction (arm, seed, steps, seconds, whether and when it reached
its target, validation and test accuracy per difficulty, the validation curve), so that the numbers quoted from run
directories (which are not committed) have a committed source.

    python experiments/collect_runs.py --root outputs/reproduce/cpu --studies core,flow \\
        --out experiments/results/cpu_study_runs.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from figlib import load_runs

from odelm.runs import val_curve

KEYS = ("study", "arm", "seed", "params", "train_steps", "train_seconds", "target_accuracy", "target_reached_at_step",
        "val_accuracy", "val_accuracy_by_difficulty", "accuracy", "accuracy_by_difficulty", "nfe_forward")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="outputs/reproduce/cpu")
    parser.add_argument("--studies", default="core,flow")
    parser.add_argument("--out", default="experiments/results/cpu_study_runs.json")
    args = parser.parse_args(argv)
    rows = [{**{k: r.get(k) for k in KEYS}, "val_curve": val_curve(r["job_dir"], digits=4)}
            for study in args.studies.split(",") for r in load_runs(args.root, study)]
    if not rows:
        raise SystemExit(f"collect_runs: no finished runs of {args.studies} under {args.root}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    print(f"{len(rows)} runs -> {args.out}")
    return rows


if __name__ == "__main__":
    main()
