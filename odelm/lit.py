"""The Lightning module (optimisation, logging, checkpoint metadata) and run-directory callbacks."""
from __future__ import annotations

import csv
import math
import os
import time
from typing import Any

import lightning as L
import torch

from .data import Batch, Curriculum
from .evaluation import EvalAccumulator, exact_match
from .model import LatentLM
from .objectives import Objective


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or inf; the run stops and keeps its last good checkpoint."""


class LitLM(L.LightningModule):
    """Trains `model` on `objective` with AdamW and linear-warmup cosine decay.

    `metadata` (resolved config, tokenizer) is stored in every checkpoint under "odelm", so
    `odelm.eval` can rebuild the model and its vocabulary from the checkpoint alone.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        objective: Objective,
        lr: float,
        weight_decay: float,
        betas: tuple[float, float],
        warmup_steps: int,
        max_steps: int,
        min_lr_ratio: float = 0.1,
        metadata: dict | None = None,
        log_every_n_steps: int = 25,
        curriculum: Curriculum | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.objective = objective
        self.lr, self.weight_decay, self.betas = lr, weight_decay, tuple(betas)
        self.warmup_steps, self.max_steps, self.min_lr_ratio = warmup_steps, max_steps, min_lr_ratio
        self.metadata = metadata or {}
        self.log_every_n_steps = max(1, log_every_n_steps)
        self.curriculum = curriculum
        self._record = False
        self.last_train: dict[str, float] = {}
        self.last_val: dict[str, Any] = {}
        self._val = EvalAccumulator()

    # --- training -------------------------------------------------------------------------
    def _field_nfe(self):
        return self.model.field.nfe if isinstance(self.model, LatentLM) else None

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        counter = self._field_nfe()
        if counter is not None:
            counter.reset()
        out = None  # simulation-free objectives (distillation) never solve the student
        if self.objective.needs_output:
            trajectory_at = self.objective.trajectory_at
            plan = self.objective.plan(self.model)  # this batch's depth draws (STEER, RNODE states, ...)
            out = self.model(batch.tokens, trajectory_at=trajectory_at, plan=plan)
        objective = self.objective(self.model, batch, out)
        loss = objective.loss
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss became {loss.item()} at step {self.global_step}; the last checkpoint is kept. "
                "Lower optim.lr, raise optim.warmup_steps, or tighten the solver tolerance"
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        self._record = (self.global_step + 1) % self.log_every_n_steps == 0
        if self._record:  # the full row costs host syncs: build it only for steps that are written
            self.last_train = {
                "loss": loss.item(),
                **{name: value.item() for name, value in objective.terms.items()},
                # without a solve: the field evaluations the terms made (one per flow-matching term)
                "nfe_forward": out.depth.nfe_forward if out is not None else (counter.forward if counter else 0),
                "steps_accepted": out.depth.steps_accepted if out is not None else 0,
                "steps_rejected": out.depth.steps_rejected if out is not None else 0,
                "accuracy": (exact_match(out.logits.detach(), batch.targets).float().mean().item()
                             if out is not None else None),
                "lr": self.optimizers().param_groups[0]["lr"],
                "curriculum_level": self.curriculum.level if self.curriculum is not None else None,
            }
        return loss

    def on_after_backward(self) -> None:
        if not self._record:
            return
        counter = self._field_nfe()
        self.last_train["nfe_backward"] = counter.backward if counter is not None else 0
        for key in ("nfe_forward", "nfe_backward", "accuracy", "lr", *self.objective.names):
            if self.last_train[key] is not None:
                self.log(f"train/{key}", float(self.last_train[key]), batch_size=1)

    def configure_optimizers(self):
        trainable = [p for p in self.model.parameters() if p.requires_grad]  # frozen by an objective: left out
        decay = [p for p in trainable if p.dim() >= 2]
        no_decay = [p for p in trainable if p.dim() < 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.lr, betas=self.betas,
        )

        def schedule(step: int) -> float:
            if step < self.warmup_steps:
                return (step + 1) / self.warmup_steps
            progress = min(1.0, (step - self.warmup_steps) / max(1, self.max_steps - self.warmup_steps))
            return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # --- validation: exact match on a fixed in-distribution slice -------------------------
    def on_validation_epoch_start(self) -> None:
        self._val = EvalAccumulator()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        out = self.model(batch.tokens)
        self._val.add(batch, out.logits, out.depth.nfe_forward)

    def on_validation_epoch_end(self) -> None:
        if not self._val.correct:
            return
        self.last_val = self._val.summary()
        if self.curriculum is not None and not self.trainer.sanity_checking:
            self.curriculum.update(self.last_val["accuracy_by_difficulty"])
        self.log("val/accuracy", self.last_val["accuracy"], prog_bar=True)
        self.log("val/nfe", self.last_val["nfe_forward"])
        self.log("val/loss", self.last_val["loss"])

    # --- checkpoints carry what eval needs to rebuild the model ---------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["odelm"] = self.metadata
        if self.curriculum is not None:
            checkpoint["curriculum"] = self.curriculum.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.curriculum is not None and "curriculum" in checkpoint:
            self.curriculum.load_state_dict(checkpoint["curriculum"])


class MetricsCSV(L.Callback):
    """Appends one row per logged training step and per validation to `path`.

    Columns are fixed when the file is created; rows are flushed as written, so a run that dies
    keeps every row it logged. `wall_time` is training time: validation time is excluded.
    """

    BASE = ["step", "split", "loss", "accuracy", "nfe_forward", "nfe_backward", "steps_accepted",
            "steps_rejected", "lr", "curriculum_level", "wall_time"]

    def __init__(self, path: str, term_names: list[str]) -> None:
        self.path = path
        self.columns = self.BASE + [n for n in term_names if n not in self.BASE]
        self.start: float | None = None
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self._val_start = 0.0

    def _write(self, row: dict) -> None:
        new = not os.path.exists(self.path)
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def on_train_start(self, trainer: L.Trainer, pl_module: LitLM) -> None:
        self.start = time.perf_counter()

    def _elapsed(self) -> float:
        return time.perf_counter() - self.start - self.eval_seconds

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: LitLM, outputs, batch, batch_idx: int) -> None:
        self.train_seconds = self._elapsed()
        if pl_module._record:
            self._write({"step": trainer.global_step, "split": "train", "wall_time": round(self.train_seconds, 4),
                         **pl_module.last_train})

    def on_validation_start(self, trainer: L.Trainer, pl_module: LitLM) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: LitLM) -> None:
        if trainer.sanity_checking or self.start is None or not pl_module.last_val:
            return
        self.eval_seconds += time.perf_counter() - self._val_start
        v = pl_module.last_val
        self._write({"step": trainer.global_step, "split": "val", "loss": v["loss"], "accuracy": v["accuracy"],
                     "nfe_forward": v["nfe_forward"], "wall_time": round(self._elapsed(), 4)})


class StopAtAccuracy(L.Callback):
    """Stops training once validation accuracy reaches `target` (time-to-accuracy benchmarks)."""

    def __init__(self, target: float) -> None:
        self.target = target
        self.reached_at_step: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: LitLM) -> None:
        if trainer.sanity_checking or not pl_module.last_val:
            return
        if pl_module.last_val["accuracy"] >= self.target:
            self.reached_at_step = trainer.global_step
            trainer.should_stop = True
