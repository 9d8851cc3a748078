"""Callbacks the DDP / resume / fault tests inject through the config (`+callbacks.NAME._target_=
ddp_helpers.X`): they run inside the training processes, which import them from tests/ on PYTHONPATH."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import lightning as L
import torch


class GradientDump(L.Callback):
    """Saves the gradients of the first optimiser step (after DDP's all-reduce, before clipping)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step == 0 and trainer.is_global_zero:
            grads = {n: p.grad.detach().double().cpu().clone() for n, p in pl_module.named_parameters()
                     if p.grad is not None}
            torch.save(grads, self.path)


class RecordDecisions(L.Callback):
    """Each process appends what it decided after every validation to <dir>/decisions_rank<r>.jsonl."""

    def __init__(self, dir: str) -> None:
        self.dir = dir

    def on_validation_end(self, trainer, pl_module) -> None:
        v = pl_module.last_val
        row = {"step": trainer.global_step, "accuracy": v.get("accuracy"), "n_examples": v.get("n_examples"),
               "unlocked": pl_module.curriculum.unlocked if pl_module.curriculum is not None else None}
        self._write(trainer, row)

    def on_train_end(self, trainer, pl_module) -> None:
        self._write(trainer, {"stopped_at": trainer.global_step})

    def _write(self, trainer, row: dict) -> None:
        with open(Path(self.dir) / f"decisions_rank{trainer.global_rank}.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


class ShrinkStepBudget(L.Callback):
    """From step `step` on, process `rank` solves with max_num_steps=1: a real SolverError there only."""

    def __init__(self, rank: int, step: int) -> None:
        self.rank, self.step = rank, step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_rank == self.rank and trainer.global_step >= self.step:
            pl_module.model.integrator.max_num_steps = 1


class SignalAt(L.Callback):
    """Sends this process `signal` during training step `step` (as a scheduler's preemption would)."""

    def __init__(self, step: int, signal_name: str = "SIGTERM") -> None:
        self.step, self.signum = step, getattr(signal, signal_name)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step - 1:
            os.kill(os.getpid(), self.signum)


class PoisonGradients(L.Callback):
    """At step `step`, turns one gradient into NaN after backward (the loss stays finite)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_after_backward(self, trainer, pl_module) -> None:
        if trainer.global_step == self.step - 1:
            next(p for p in pl_module.parameters() if p.grad is not None).grad.fill_(float("nan"))
