"""Tiny fabricated run directories in the layout experiments/reproduce.py writes, for the figure
scripts' tests: every study's arms x seeds as training records (metrics.json + metrics.csv), and
every eval plan's jobs (metrics.json + sweep.csv [+ lens.csv]) pointing back at those checkpoints.
Numbers are made up but shaped like the real ones (accuracy falls with difficulty, rises with compute)."""
from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))

from reproduce import EVAL_PLANS, STUDIES  # noqa: E402

from odelm.eval import sweep_row  # noqa: E402
from odelm.runs import write_csv  # noqa: E402
from odelm.runs import write_json  # noqa: E402

ARMS = {
    "core": ["looped", "looped_ouro", "ode", "ode_grid", "transformer"],
    "regularisers": ["ce", "kinetic", "rnode", "fm_reflow", "steer", "adjoint_seminorm", "adjoint_default"],
    "mano_iso": ["transformer1", "transformer2", "transformer4", "looped", "ode_grid"],
    "constraint": ["looped", "ode_grid", "transformer1", "transformer8"],
    "flow": ["looped", "ode_grid", "random_solver", "shortcut", "horizons", "progressive", "fixed_point", "flow"],
}
GRIDS = {"constraint": [(2, 2), (2, 3)]}  # Sudoku box shapes of the study's two grid sizes
SEEDS = (0, 1, 2)
DIFFICULTIES = ["1", "2", "3", "4", "5"]


def _model_solver(arm: str) -> tuple[dict, dict]:
    """The `model` and `solver` entries of a real record of this arm."""
    if arm.startswith("transformer"):
        layers = int(arm[-1]) if arm[-1].isdigit() else 4
        return {"name": "transformer", "family": "transformer", "n_layers": layers}, {"integrator": "none", "n_layers": layers}
    if arm.startswith("looped"):
        return {"name": "looped", "family": "latent", "integrator": "loop", "loops": 4}, {"integrator": "loop", "loops": 4}
    method, step = ("euler", 0.5) if arm == "ode_grid" else ("dopri5", None)
    return ({"name": "ode", "family": "latent", "integrator": "ode"},
            {"integrator": "ode", "method": method, "rtol": 1e-3, "atol": 1e-3, "t_end": 4.0, "step_size": step})


def _task(study: str, grid: tuple[int, int] | None = None) -> dict:
    if study == "constraint":
        return {"name": "sudoku", "params": {"box_rows": grid[0], "box_cols": grid[1]} if grid else {},
                "train_difficulties": [1, 2, 3], "test_difficulties": [1, 2, 3, 4, 5], "n_test_per_difficulty": 4}
    return {"name": "mano" if study == "mano_iso" else "modular_chain", "train_difficulties": [1, 2, 3],
            "test_difficulties": [1, 2, 3, 4, 5], "n_test_per_difficulty": 4}


def _accuracies(rng: random.Random, skill: float) -> dict[str, float]:
    return {d: max(0.0, min(1.0, skill - 0.15 * int(d) + rng.uniform(-0.05, 0.05))) for d in DIFFICULTIES}


def _record(study: str, arm: str, seed: int, skill: float, nfe: float, rng: random.Random, **extra) -> dict:
    acc = _accuracies(rng, skill)
    return {"status": "ok", "study": study, "arm": arm, "seed": seed, "task": _task(study),
            "model": _model_solver(arm)[0], "solver": _model_solver(arm)[1],
            "accuracy": sum(acc.values()) / len(acc), "accuracy_by_difficulty": acc,
            "n_by_difficulty": {d: 4 for d in DIFFICULTIES}, "nfe_forward": nfe,
            "nfe_forward_by_difficulty": {d: nfe for d in DIFFICULTIES}, "depth": extra.pop("depth", 4.0),
            **(_constraint_metrics(acc) if study == "constraint" else {}), **extra}


def _constraint_metrics(acc: dict[str, float]) -> dict:
    """The per-position metrics of a Sudoku record, consistent with its exact-solve accuracies."""
    cs = {d: min(1.0, a + 0.05) for d, a in acc.items()}
    violations = {d: 4 * (1 - c) for d, c in cs.items()}
    cells = {d: 0.5 + a / 2 for d, a in acc.items()}
    mean = lambda v: sum(v.values()) / len(v)  # noqa: E731
    return {"cell_accuracy": mean(cells), "cell_accuracy_by_difficulty": cells,
            "constraint_satisfied": mean(cs), "constraint_satisfied_by_difficulty": cs,
            "violations": mean(violations), "violations_by_difficulty": violations,
            "answer_metrics": ["constraint_satisfied", "violations"]}


def _train_csv(path: Path, nfe0: float, rng: random.Random) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "split", "loss", "accuracy", "nfe_forward", "nfe_backward", "steps_accepted",
                         "steps_rejected", "lr", "curriculum_level", "wall_time", "ce"])
        for step in range(5, 45, 5):
            nfe = nfe0 + step // 10 * 6
            writer.writerow([step, "train", 2.0 - step / 50, 0.1, nfe, nfe + 4, nfe // 6, 0, 1e-3, 1, step * 0.4, 2.0])
        writer.writerow([40, "val", 1.5, 0.2, nfe0, "", "", "", "", "", 16.0, ""])


def fabricate(root: str | Path) -> Path:
    """Writes the whole tree under `root`; returns it."""
    root = Path(root)
    rng = random.Random(0)
    ckpts: dict[tuple[str, str], list[str]] = {}
    for study in STUDIES:
        combos = [(a, g, s) for a in ARMS[study] for g in GRIDS.get(study, [None]) for s in SEEDS]
        for job, (arm, grid, seed) in enumerate(combos):
            run_dir = root / study / f"{job}_{arm}_s{seed}"
            run_dir.mkdir(parents=True)
            layers = int(arm[-1]) if arm.startswith("transformer") and arm[-1].isdigit() else 4
            nfe = 26.0 if study == "regularisers" or arm == "ode" else (8.0 if arm == "ode_grid" else float(layers))
            ckpt = str(run_dir / "checkpoints" / "final.ckpt")
            record = _record(study, arm, seed, 0.9, nfe, rng, params=266_112 * (layers if "transformer" in arm else 1),
                             flops_per_token=525_000.0 * nfe, train_seconds=60.0, train_steps=1000, checkpoint=ckpt)
            if grid is not None:
                record["task"] = _task(study, grid)
            write_json(run_dir / "metrics.json", record)
            _train_csv(run_dir / "metrics.csv", nfe, rng)
            ckpts.setdefault((study, arm), []).append(ckpt)
    for plan in EVAL_PLANS:
        methods = next((o.split("=", 1)[1].split(",") for o in plan.overrides if o.startswith("solver=")), [None])
        key = next(o.split("=", 1)[1] for o in plan.overrides if o.startswith("sweep.key="))
        keys = key.strip("[]").split(",")
        values = [float(v) for v in next(o.split("=", 1)[1] for o in plan.overrides
                                          if o.startswith("sweep.values=")).strip("[]").split(",")]
        exit_name = next((o.split("=", 1)[1] for o in plan.overrides if o.startswith("exit=")), "none")
        lens = next((o.split("=", 1)[1] for o in plan.overrides if o.startswith("lens.depths=")), None)
        job = 0
        for arm in plan.arms:
            for ckpt in ckpts[(plan.study, arm)]:
                for method in methods:
                    eval_dir = root / "eval" / plan.name / str(job)
                    eval_dir.mkdir(parents=True)
                    job += 1
                    rows, records = [], []
                    for i, value in enumerate(values):
                        nfe = 2.0 + 3 * i
                        one = _record(plan.study, arm, 0, 0.5 + 0.05 * i, nfe, rng, depth=1.0 + i, eval_seconds=0.5 + i,
                                      exit={"name": exit_name})
                        if method:
                            one["solver"] = {**one["solver"], "method": method}
                        if "probe_backward=true" in plan.overrides:
                            one.update(nfe_backward=2 * nfe, train_step_seconds=0.1 * nfe)
                        records.append({"value": value, **one})
                        rows.append(sweep_row(keys, value, one))
                    write_csv(eval_dir / "sweep.csv", rows)
                    record = {**records[-1], "ckpt": ckpt, "checkpoint": ckpt,
                              "sweep": {"keys": keys, "values": values, "rows": rows}}
                    record.pop("value")
                    if lens is not None:
                        depths = [float(d) for d in lens.strip("[]").split(",")]
                        lens_rows = [{"depth": d, "accuracy": 0.1 + 0.2 * d, **{f"accuracy_d{k}": 0.2 * d for k in DIFFICULTIES},
                                      "entropy": 2.0 - 0.4 * d, "distance_to_final": 1 - d / max(depths)} for d in depths]
                        write_csv(eval_dir / "lens.csv", lens_rows)
                        record["lens"] = lens_rows
                    write_json(eval_dir / "metrics.json", record)
    return root
