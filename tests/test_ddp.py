"""DDP on CPU (gloo, 2 processes started by Lightning through the command line): gradients equal one
process on the concatenated batch, metrics and validation are merged over processes, only rank zero
writes the run files, curriculum and stopping decisions agree, a solver error on one rank stops both
with its message, and a DDP multirun runs each job once (not the sweep in every process)."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from odelm import train

from conftest import compose_config

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
B = 4  # examples per process
# A tiny float64 model on a fixed difficulty mix; one optimiser step, validation after it. Modulus 7:
# every answer has one digit, so every process averages its loss over the same number of tokens and
# the mean of the processes' means is the mean over the whole batch (with answers of varying length,
# DDP weighs each process's token mean equally: standard DDP semantics, see README).
COMMON = ["task.params.modulus=7",
    "model.d_model=16", "model.n_heads=2", "task.n_train=64", "task.n_test_per_difficulty=4",
    "task.train_difficulties=[1,2]", "task.test_difficulties=[1,2]", "data.n_val_per_difficulty=4",
    "data.curriculum.enabled=true", "data.curriculum.threshold=0.01", "trainer.max_steps=2", "trainer.val_check_interval=1",
    "trainer.log_every_n_steps=1", "trainer.checkpoint_every_n_steps=1", "trainer.enable_progress_bar=false",
    "trainer.accelerator=cpu", "trainer.precision=64-true", "optim.grad_clip=0",
]
ODE = ["model=ode", "solver=rk4", "solver.step_size=0.5", "solver.t_end=1"]


def _ddp(*args: str, cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    for key in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "RANK"):
        env.pop(key, None)
    return subprocess.run([sys.executable, "-m", "odelm.train", *args, "trainer.devices=2", "trainer.strategy=ddp",
                           f"data.batch_size={B}"], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _single_grads(tmp_path: Path, overrides: list[str], name: str) -> tuple[dict, dict]:
    """One process, batch 2B: the gradients of its first step and its first logged training row."""
    path = tmp_path / f"{name}.pt"
    cfg = compose_config("train", COMMON + overrides + [
        f"data.batch_size={2 * B}", "trainer.max_steps=1",
        "+callbacks.grads._target_=ddp_helpers.GradientDump", f"+callbacks.grads.path={path}"])
    record = train.run(cfg, run_dir=tmp_path / name)
    rows = [r for r in csv.DictReader((Path(record["run_dir"]) / "metrics.csv").open()) if r["split"] == "train"]
    return torch.load(path), rows[0]


def _assert_same_grads(ddp: dict, single: dict) -> None:
    assert ddp.keys() == single.keys() and len(ddp) > 5
    for name, g in single.items():
        scale = g.norm().item()
        assert scale > 0, name  # every parameter really gets a gradient
        assert (ddp[name] - g).norm().item() <= 1e-6 * scale, name


def test_looped_ddp_matches_one_process_and_only_rank_zero_writes(tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    grads = tmp_path / "ddp_grads.pt"
    done = _ddp(*COMMON, "model=looped", "model.loops=2", "target_accuracy=0.01", f"hydra.run.dir={run_dir}",
                "+callbacks.grads._target_=ddp_helpers.GradientDump", f"+callbacks.grads.path={grads}",
                "+callbacks.decisions._target_=ddp_helpers.RecordDecisions", f"+callbacks.decisions.dir={tmp_path}",
                cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    single, single_row = _single_grads(tmp_path, ["model=looped", "model.loops=2"], "single")
    _assert_same_grads(torch.load(grads), single)

    # logged metrics are averaged over the processes: the step-1 loss is the loss of the whole batch
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    first = next(r for r in rows if r["split"] == "train")
    assert float(first["loss"]) == pytest.approx(float(single_row["loss"]), rel=1e-9)
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["world_size"] == 2 and record["status"] == "ok" and record["n_examples"] == 8  # whole test set

    # validation merged: both processes saw all 8 validation examples and took the same decisions
    ranks = [[json.loads(line) for line in (tmp_path / f"decisions_rank{r}.jsonl").read_text().splitlines()]
             for r in (0, 1)]
    assert ranks[0] == ranks[1] and ranks[0]
    *validations, end = ranks[0]
    assert validations and all(row["n_examples"] == 8 for row in validations)
    reached = next((row["step"] for row in validations if row["accuracy"] >= 0.01), None)
    assert record["target_reached_at_step"] == reached and end["stopped_at"] == (reached or 2)

    # one writer: one header, each step once; no temporary files left behind
    assert sum(1 for r in rows if r["split"] == "train" and r["step"] == first["step"]) == 1
    assert (run_dir / "metrics.csv").read_text().count("step,split") == 1
    assert not list(run_dir.glob("*.tmp")) and not list(run_dir.glob(".*.tmp"))


def test_ode_ddp_multirun_direct_and_adjoint_match_one_process(tmp_path: Path) -> None:
    """One multirun of two jobs (direct back-propagation, adjoint): each job's DDP processes run that job
    alone, in its own directory (the sweep is not re-run in the child processes)."""
    sweep = tmp_path / "sweep"
    done = _ddp("-m", *COMMON, *ODE, "solver.adjoint=false,true", f"hydra.sweep.dir={sweep}",
                "hydra.sweep.subdir=${hydra.job.num}",
                "+callbacks.grads._target_=ddp_helpers.GradientDump",
                "+callbacks.grads.path=${hydra:runtime.output_dir}/grads.pt",
                cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["0", "1"]  # two jobs, not four
    for job, adjoint in (("0", False), ("1", True)):
        record = json.loads((sweep / job / "metrics.json").read_text())
        assert record["solver"]["adjoint"] is adjoint and record["world_size"] == 2
        single, _ = _single_grads(tmp_path, ODE + [f"solver.adjoint={str(adjoint).lower()}"], f"single{job}")
        _assert_same_grads(torch.load(sweep / job / "grads.pt"), single)


def test_solver_error_on_one_rank_stops_both_with_its_message(tmp_path: Path) -> None:
    run_dir = tmp_path / "fault"
    done = _ddp(*COMMON, "model=ode", "solver=dopri5", "solver.t_end=1", "trainer.max_steps=4",
                f"hydra.run.dir={run_dir}", "+callbacks.fault._target_=ddp_helpers.ShrinkStepBudget",
                "+callbacks.fault.rank=1", "+callbacks.fault.step=2", cwd=tmp_path, timeout=180)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "odelm: error: on rank 1: ODE solve exceeded max_num_steps=1" in done.stderr
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "failed" and "on rank 1" in record["error"]


def test_a_retired_child_observer_no_longer_kills_the_process_it_guards() -> None:
    """Lightning's observer SIGKILLs the main process once a child has exited non-zero; after a failure
    every rank agreed on, the main process waits for its children itself and must exit 1, not -9. Here
    the observer guards a stand-in process (not this one): armed, it kills it; retired, it does not."""
    import time

    from lightning.fabric.strategies.launchers.subprocess_script import _ChildProcessObserver

    def observe(retire: bool) -> int | None:
        guarded = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        child = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
        child.wait()
        observer = _ChildProcessObserver(main_pid=guarded.pid, child_processes=[child], sleep_period=0.5)
        observer.start()  # a daemon thread named "child-process-observer", as Lightning starts it
        if retire:
            train._retire_child_observer()
        observer.join(timeout=5)
        time.sleep(0.2)
        code = guarded.poll()
        guarded.kill()
        guarded.wait()
        return code

    assert observe(retire=False) == -9  # the observer as Lightning arms it: the guarded process is killed
    assert observe(retire=True) is None  # retired before its first poll: the guarded process lives on
