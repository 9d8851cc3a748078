"""The main job: train the looped and the ODE model on one task from one config, then print a
side-by-side table (accuracy in- and out-of-distribution, NFE, wall time).

    python -m odelm.compare                                   # conf/train.yaml + the budget below
    python -m odelm.compare task=mano trainer.max_time_minutes=10   # any train override applies to all
    python -m odelm.compare --models looped,ode,transformer --out outputs/compare/mine

Every model gets the same wall-clock training budget (matched compute on this machine):
BUDGET below, which stops at 90% validation accuracy or after 5 minutes, whichever comes first;
overrides given on the command line win.

Each model gets its own run directory under --out (config.yaml, metrics.csv, metrics.json,
checkpoints/); the table is also written there as compare.csv and compare.md.
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from .depth import SolverError
from .errors import ConfigError
from .lit import NonFiniteLossError
from .precision import configure_arithmetic
from .runs import read_json

BUDGET = ["trainer.max_time_minutes=5", "target_accuracy=0.9"]
COLUMNS = ["model", "status", "params", "acc_train_range", "acc_harder", "accuracy", "nfe_forward", "train_steps",
           "train_seconds", "ms_per_step", "target_reached_at_step"]


def _split_accuracy(record: dict) -> tuple[float | None, float | None]:
    """Accuracy over the trained difficulties and over the harder ones (weighted by examples)."""
    trained = set(record["task"].get("train_difficulties") or [])
    inside = outside = n_in = n_out = 0.0
    for d, acc in record["accuracy_by_difficulty"].items():
        n = record["n_by_difficulty"][d]
        if not trained or int(d) in trained:
            inside, n_in = inside + acc * n, n_in + n
        elif int(d) > max(trained):
            outside, n_out = outside + acc * n, n_out + n
    return (inside / n_in if n_in else None), (outside / n_out if n_out else None)


def table_row(record: dict) -> dict:
    acc_in, acc_out = _split_accuracy(record)
    steps = record["train_steps"] or 1
    return {
        "model": record["model"]["name"],
        "status": "ok",
        "params": record["params"],
        "acc_train_range": acc_in,
        "acc_harder": acc_out,
        "accuracy": record["accuracy"],
        "nfe_forward": record["nfe_forward"],
        "train_steps": record["train_steps"],
        "train_seconds": record["train_seconds"],
        "ms_per_step": 1000 * record["train_seconds"] / steps,
        "target_reached_at_step": record.get("target_reached_at_step"),
    }


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(row[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def _for_model(model: str, overrides: list[str]) -> list[str]:
    """The overrides that apply to `model`: solver settings only to the ODE (the others have no solver)."""
    if model == "ode":
        return list(overrides)
    return [o for o in overrides if o.split("=", 1)[0].lstrip("+~").split(".")[0] != "solver"]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m odelm.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="looped,ode", help="comma-separated model configs (conf/model/)")
    parser.add_argument("--out", default=None, help="output directory (default outputs/compare/<time>)")
    parser.add_argument("overrides", nargs="*", help="train overrides applied to every model")
    args = parser.parse_args(argv)
    configure_arithmetic()  # the one arithmetic of every entry point (odelm/precision.py)

    from hydra import compose, initialize_config_dir

    from . import train

    out = Path(args.out or f"outputs/compare/{time.strftime('%Y-%m-%d/%H-%M-%S')}")
    conf_dir = str(Path(__file__).resolve().parents[1] / "conf")
    models = [m for m in args.models.split(",") if m]
    with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
        # compose (and so validate) every config before training any of them
        configs = {m: compose(config_name="train", overrides=[*BUDGET, f"model={m}", *_for_model(m, args.overrides)])
                   for m in models}
    rows = []
    for name, cfg in configs.items():
        print(f"== training {name} -> {out / name}", flush=True)
        try:
            train.run(cfg, run_dir=out / name)
        except ConfigError as err:  # bad input: nothing is worth comparing
            raise SystemExit(f"odelm.compare: error: {err}") from None
        except (SolverError, NonFiniteLossError) as err:  # a model that fails is a result too
            print(f"== {name} failed: {err}", flush=True)
            rows.append({c: None for c in COLUMNS} | {"model": name, "status": f"failed: {type(err).__name__}"})
            continue
        rows.append(table_row(read_json(out / name / "metrics.json")))
    with (out / "compare.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    text = markdown(rows)
    (out / "compare.md").write_text(text + "\n")
    print(f"\n{text}\n\nrun directories and compare.csv: {out}")
    return rows


if __name__ == "__main__":
    main()
