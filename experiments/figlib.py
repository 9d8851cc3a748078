"""Shared helpers of the figure scripts: read run directories, aggregate over seeds, save figures.

Layout read (written by experiments/reproduce.py, or by hand with the same commands):

    ROOT/<study>/<job>/metrics.json, metrics.csv       training runs (python -m odelm.train -m experiment=<study>)
    ROOT/eval/<plan>/<job>/metrics.json, sweep.csv, lens.csv   evaluations (python -m odelm.eval -m ckpt=...)

A training record carries `study`, `arm`, `seed`; an evaluation record carries `ckpt`, which
`load_evals` maps back to its training run, so every eval row knows its arm and seed.
"""
from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Iterable

import matplotlib

from odelm.runs import write_csv  # noqa: F401  (re-exported for the figure scripts)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ARM_LABELS = {
    "looped": "looped (T=4)", "looped_ouro": "looped + Ouro gate", "ode": "ODE (dopri5-trained)",
    "ode_grid": "ODE (Euler-grid + kinetic)", "transformer": "transformer (4 layers)",
    # study "regularisers": ODE (dopri5 1e-3) trained with ...
    "ce": "cross-entropy", "kinetic": "+ kinetic", "rnode": "+ kinetic + Jacobian (RNODE)",
    "fm_reflow": "+ reflow flow matching", "steer": "STEER end time", "adjoint_seminorm": "adjoint, seminorm",
    "adjoint_default": "adjoint, default norm",
    # study "flow": the field trained to be a flow (the looped and ode_grid arms as in "core")
    "random_solver": "random discretisation", "shortcut": "Δt-conditioned + shortcut", "horizons": "random horizons",
    "progressive": "progressive loss", "fixed_point": "fixed-point residual", "flow": "random discr. + convergence",
    # study "mano_iso"
    "transformer1": "transformer (1 layer)", "transformer2": "transformer (2 layers)",
    "transformer4": "transformer (4 layers)",
    # study "constraint" (Sudoku; "looped" and "ode_grid" as above)
    "transformer8": "transformer (8 layers)",
}


def label(arm: str) -> str:
    return ARM_LABELS.get(arm, arm)


def _read(path: Path) -> dict:
    record = json.loads(path.read_text())
    record["job_dir"] = str(path.parent)
    return record


def load_runs(root: str | Path, study: str, ok_only: bool = True) -> list[dict]:
    """The metrics.json records (with `job_dir`) of the jobs of one multirun directory ROOT/<study>,
    in job order (for a study: its arm order, then seeds); failed jobs left out unless ok_only=False."""
    runs = [_read(p) for p in Path(root, study).glob("*/metrics.json")]
    if ok_only:
        runs = [r for r in runs if r.get("status") == "ok"]
    return sorted(runs, key=_job_number)


def _job_number(record: dict) -> tuple:
    """Hydra's job number (the job dir's prefix): the study's arm order, then seeds."""
    name = Path(record["job_dir"]).name
    prefix = name.split("_", 1)[0]
    return (int(prefix), name) if prefix.isdigit() else (1 << 30, name)


def load_evals(root: str | Path, plan: str, study: str = "core") -> list[dict]:
    """Successful evaluation records of one eval plan, each with `arm` and `seed` of its training run
    and `eval_dir`; the training record is under `train`."""
    by_ckpt = {str(Path(r["checkpoint"]).resolve()): r for r in load_runs(root, study)}
    out = []
    for record in load_runs(Path(root, "eval"), plan, ok_only=False):
        path = Path(record["job_dir"]) / "metrics.json"
        train = by_ckpt.get(str(Path(record.get("ckpt", "")).resolve())) if record.get("status") == "ok" else None
        if train is None:
            continue
        record.update(arm=train["arm"], seed=train["seed"], train=train, eval_dir=str(path.parent))
        out.append(record)
    return out


def read_csv(path: str | Path) -> list[dict]:
    """Rows of a CSV with numbers parsed (empty cells → None)."""
    def parse(value: str):
        if value == "":
            return None
        try:
            return float(value)
        except ValueError:
            return value

    with open(path, newline="") as f:
        return [{k: parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


def eval_solver(record: dict) -> dict:
    """The solver an evaluation used: the record's own, or, in a sweep over solver keys (whose
    settings differ, so no solver is shared at the top level), its first setting's (the method is
    the same in every setting of one job)."""
    if record.get("solver"):
        return record["solver"]
    records = (record.get("sweep") or {}).get("records") or []
    return (records[0].get("solver") or {}) if records else {}


def difficulty_keys(record: dict) -> list[str]:
    """The test difficulties of a record without a top-level accuracy_by_difficulty (an eval sweep:
    its rows carry accuracy_d<k> columns), else those of its task config."""
    rows = (record.get("sweep") or {}).get("rows") or []
    if rows:
        return [k[len("accuracy_d"):] for k in rows[0] if k.startswith("accuracy_d")]
    return [str(d) for d in record["task"].get("test_difficulties") or []]


def split_difficulties(record: dict) -> tuple[list[str], list[str]]:
    """(trained, harder) difficulty keys of a record's accuracy_by_difficulty. A task trained on
    every difficulty of its data (task.train_difficulties null, as JSONL tasks default to) has all
    its keys in the trained range and none harder."""
    trained = {int(d) for d in record["task"].get("train_difficulties") or []}
    keys = list(record.get("accuracy_by_difficulty") or difficulty_keys(record))
    if not trained:
        return keys, []
    return [d for d in keys if int(d) in trained], [d for d in keys if int(d) > max(trained)]


def mean_accuracy(row: dict, difficulties: Iterable[str], prefix: str = "accuracy_d") -> float | None:
    """Unweighted mean of per-difficulty accuracies (every built-in test split has equal counts)."""
    values = [row[f"{prefix}{d}"] for d in difficulties if row.get(f"{prefix}{d}") is not None]
    return sum(values) / len(values) if values else None


def mean_std(values: Iterable[float | None]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for one value) and count of the non-missing values."""
    v = [float(x) for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return float("nan"), float("nan"), 0
    return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else 0.0), len(v)


def aggregate(rows: list[dict], keys: list[str], values: list[str]) -> list[dict]:
    """Groups `rows` by `keys` and gives mean and std of each of `values` per group (over seeds):
    columns <value>_mean, <value>_std, and n = the group's row count (missing values are skipped in
    the mean and std, so a value can rest on fewer than n rows). Groups keep first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    out = []
    for group_key, members in groups.items():
        agg = dict(zip(keys, group_key))
        for value in values:
            m, s, n = mean_std(r.get(value) for r in members)
            agg[f"{value}_mean"], agg[f"{value}_std"] = m, s
        agg["n"] = len(members)
        out.append(agg)
    return out


def save(fig: plt.Figure, rows: list[dict], out: str | Path, name: str) -> list[Path]:
    """Writes <out>/<name>.png, .pdf and .csv (the plotted numbers); returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf", out / f"{name}.csv"]
    fig.savefig(paths[0], dpi=130, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    write_csv(paths[2], rows)
    return paths


def errorline(ax, rows: list[dict], x: str, y: str, **kwargs) -> None:
    """Mean line with ±1 std error bars on y (and x, when it has a spread) from aggregate() rows."""
    xs = [r[f"{x}_mean"] if f"{x}_mean" in r else r[x] for r in rows]
    ys = [r[f"{y}_mean"] for r in rows]
    yerr = [r[f"{y}_std"] for r in rows]
    xerr = [r[f"{x}_std"] for r in rows] if f"{x}_std" in rows[0] else None
    if xerr is not None and not any(e and e == e for e in xerr):  # no spread (or NaN only): no x bars
        xerr = None
    kwargs.setdefault("marker", "o")
    kwargs.setdefault("markersize", 4)
    ax.errorbar(xs, ys, yerr=yerr, xerr=xerr, capsize=3, **kwargs)


def standard_args(description: str, argv: list[str] | None):
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--root", default="outputs/reproduce/smoke", help="run directories (reproduce.py --out)")
    parser.add_argument("--out", default="experiments/figures", help="where PNG, PDF and CSV go")
    return parser.parse_args(argv)


class NoData(RuntimeError):
    """A figure's runs are missing; the message says which and how to make them."""


def no_evals(figure: str, plans: list[str], root: str | Path) -> NoData:
    """The NoData of a figure whose eval plans have no successful evaluations under `root`."""
    return NoData(f"{figure}: no successful evaluations of plan(s) {plans} under {root}/eval (or no core study "
                  f"under {root}/core); make them with: python experiments/reproduce.py --out {root} "
                  "--stages train,eval --studies core")
