"""Run directories: the records a run writes (metrics.json) and the helpers that read them back."""
from __future__ import annotations

import csv
import json
import os
import shlex
import sys
import traceback
import uuid
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf

from .depth import Integrator
from .precision import arithmetic
from .dist import is_rank_zero


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomic write: a reader (or a crash) never sees a half-written file. The temporary file's name
    is unique to this process and call, so concurrent writers never share one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, record: dict) -> None:
    """Atomic JSON write (see write_text)."""
    write_text(path, json.dumps(record, indent=2, sort_keys=False) + "\n")


def val_curve(run_dir: str | os.PathLike, digits: int | None = None) -> list[tuple[int, float]]:
    """(step, validation accuracy) of every validation a run logged, from <run_dir>/metrics.csv;
    [] when the run wrote none. `digits`: round the accuracies."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "val"]
    return [(int(r["step"]), float(r["accuracy"]) if digits is None else round(float(r["accuracy"]), digits))
            for r in rows]


def curriculum_first_steps(run_dir: str | os.PathLike) -> dict[int, int]:
    """{curriculum level: the first logged training step at it}, from <run_dir>/metrics.csv (the
    `curriculum_level` column of training rows, logged every `trainer.log_every_n_steps`); {} when the
    run logged none (no curriculum, or no training row yet)."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        return {}
    first: dict[int, int] = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r["split"] == "train" and r.get("curriculum_level"):
                first.setdefault(int(float(r["curriculum_level"])), int(r["step"]))
    return first


def command_line(script: str, args: list[str]) -> str:
    """How a script was invoked, for its result file: `python SCRIPT ARGS`, prefixed with the thread count
    (OMP_NUM_THREADS=N) when the environment set one."""
    threads = os.environ.get("OMP_NUM_THREADS")
    return (f"OMP_NUM_THREADS={threads} " if threads is not None else "") + f"python {script} " + shlex.join(args)


def write_csv(path: str | os.PathLike, rows: list[dict]) -> None:
    """Rows as CSV; the columns are the union of the rows' keys in first-seen order (missing → empty)."""
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def read_json(path: str | os.PathLike) -> dict:
    return json.loads(Path(path).read_text())


def solver_record(cfg: DictConfig, integrator: Integrator | None) -> dict:
    """The depth settings actually used, for metrics.json's `solver` field."""
    if integrator is None:
        return {"integrator": "none", "n_layers": cfg.model.n_layers}
    return {"integrator": integrator.name, **integrator.describe()}


def base_record(cfg: DictConfig, integrator: Integrator | None, params: int) -> dict:
    return {
        "status": "ok",
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "task": OmegaConf.to_container(cfg.task, resolve=True),
        "solver": solver_record(cfg, integrator),
        "objective": OmegaConf.to_container(cfg.objective, resolve=True),
        "seed": cfg.seed,
        "study": cfg.get("study"),  # set by conf/experiment/ studies and their arms
        "arm": cfg.get("arm"),
        "params": params,
        "arithmetic": arithmetic(),
    }


def run_cli(fn: Callable[[DictConfig], dict], cfg: DictConfig, expected: tuple[type[BaseException], ...],
            score: str = "accuracy") -> float:
    """Runs an entry point and returns its record's `score` (what a sweeper maximises: training returns
    the validation accuracy; NaN where the record has none); an expected failure (bad input, failed
    solve, NaN loss) prints one line.

    In a single run it exits with status 1 (an unexpected error keeps its traceback). Inside a Hydra
    multirun *any* failing job records `{"status": "failed", "error": ...}` in its metrics.json and
    returns NaN, so the other jobs of the sweep still run and keep their results.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    caught = Exception if multirun else expected
    try:
        value = fn(cfg).get(score)
        return float(value) if value is not None else float("nan")
    except caught as err:
        if os.environ.get("ODELM_DEBUG"):
            raise
        out = Path(hydra_cfg.runtime.output_dir)
        message = f"{type(err).__name__}: {err}"
        record = out / "metrics.json"
        if out.is_dir() and not record.exists() and is_rank_zero():  # never overwrite a finished record
            failure = {"status": "failed", "error": message, "study": cfg.get("study"), "arm": cfg.get("arm"),
                       "seed": cfg.get("seed")}
            if not isinstance(err, expected):  # a bug, not bad input: keep the traceback for the post-mortem
                failure["traceback"] = traceback.format_exc()
            write_json(record, failure)
        if multirun:
            print(f"odelm: job failed ({out}): {message}", file=sys.stderr)
            return float("nan")
        print(f"odelm: error: {err}", file=sys.stderr)
        sys.exit(1)
