"""The Lightning module (optimisation, logging, checkpoint metadata) and run-directory callbacks."""
from __future__ import annotations

import csv
import math
import os
import random
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Timer

from . import dist
from .data import Batch, Curriculum, TrainBatchSampler
from .depth import SolverError
from .evaluation import EvalAccumulator, exact_match
from .model import LatentLM
from .objectives import Objective


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or inf; the run stops and keeps its last good checkpoint."""


class NonFiniteGradientError(NonFiniteLossError):
    """A finite loss back-propagated to NaN/inf gradients; caught before the optimiser step, so no
    non-finite weight ever reaches a checkpoint."""


class TrainingInterrupted(RuntimeError):
    """SIGTERM / SIGUSR1 arrived: a checkpoint was saved and the run stopped (resume with ckpt_path)."""


# Step failures that one process can meet alone (its shard, its solve). Under DDP they are caught,
# every process is told, and all raise the same error instead of leaving the others in an all-reduce.
STEP_FAILURES = (SolverError, NonFiniteLossError)


SCHEDULES = ("steps", "time")


class LitLM(L.LightningModule):
    """Trains `model` on `objective` with AdamW and linear-warmup cosine decay.

    `schedule` says what the cosine runs over: "steps" (from the warm-up's end to `max_steps`) or "time"
    (from the warm-up's end to the Trainer's wall-clock cap, its Timer callback; for runs that a time
    budget ends, so that the rate has decayed when the cap fires wherever the step count ends). A resume
    continues from the checkpoint's elapsed time (resumed with another cap, the cosine is rescaled to
    it); a rate that follows the clock makes a resumed run differ from an uninterrupted one.

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
        schedule: str = "steps",
        metadata: dict | None = None,
        log_every_n_steps: int = 25,
        curriculum: Curriculum | None = None,
        sampler: TrainBatchSampler | None = None,
        grad_ema: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.objective = objective
        self.lr, self.weight_decay, self.betas = lr, weight_decay, tuple(betas)
        self.warmup_steps, self.max_steps, self.min_lr_ratio = warmup_steps, max_steps, min_lr_ratio
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        self.schedule = schedule
        if grad_ema is not None:
            alpha, gain = (float(v) for v in grad_ema)
            if not 0 <= alpha < 1 or gain < 0:
                raise ValueError(f"grad_ema needs (alpha in [0, 1), gain >= 0), got {tuple(grad_ema)!r}")
            grad_ema = (alpha, gain)
        self.grad_ema = grad_ema  # (alpha, gain): Grokfast's slow-gradient amplification, or None
        self._grad_ema_state: dict[str, torch.Tensor] = {}  # parameter name -> EMA of its gradient
        self.time_progress = 0.0  # schedule="time": share of the cap after the warm-up spent, updated every batch
        self.warmup_end_seconds: float | None = None  # schedule="time": training time when the warm-up ended
        self.metadata = metadata or {}
        self.log_every_n_steps = max(1, log_every_n_steps)
        self.curriculum = curriculum
        self.sampler = sampler  # its state goes into every checkpoint (exact resume)
        self.batches_trained = 0  # training batches that reached training_step, over the whole run
        self._record = False
        self.last_train: dict[str, float] = {}
        self.last_val: dict[str, Any] = {}
        self._val = EvalAccumulator()

    # --- training -------------------------------------------------------------------------
    def _field_nfe(self):
        return self.model.field.nfe if isinstance(self.model, LatentLM) else None

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self.schedule == "time":
            self.time_progress = self._wall_clock_progress()

    def _wall_clock_progress(self) -> float:
        """Share of the wall-clock cap spent since the warm-up ended, in [0, 1] (0 during the warm-up),
        the same on every process (elapsed and cap averaged under DDP)."""
        timer = next((cb for cb in self.trainer.callbacks if isinstance(cb, Timer)), None)
        remaining = timer.time_remaining() if timer is not None else None
        if remaining is None:
            raise ValueError("optim.schedule=time needs a wall-clock cap: set trainer.max_time_minutes")
        elapsed = timer.time_elapsed()
        cap = elapsed + remaining
        if dist.world_size() > 1:
            elapsed, cap = dist.mean([elapsed, cap])
        if self.global_step < self.warmup_steps:
            return 0.0
        if self.warmup_end_seconds is None:  # the first step after the warm-up: the cosine starts here
            self.warmup_end_seconds = elapsed
        start = self.warmup_end_seconds
        return min(1.0, max(0.0, (elapsed - start) / max(cap - start, 1e-9)))

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        self.batches_trained += 1
        failure: BaseException | None = None
        try:
            loss = self._training_step(batch)
        except STEP_FAILURES as err:
            failure = err
        self._agree_on_failure(failure)
        return loss

    def _agree_on_failure(self, failure: BaseException | None) -> None:
        """Under DDP, one all-reduce per step (before backward): if any process failed, every process
        raises the first failing rank's error, so none is left waiting in the gradient all-reduce."""
        if dist.world_size() == 1:
            if failure is not None:
                raise failure
            return
        if not dist.any_true(failure is not None):
            return
        reports = dist.gather(None if failure is None else (type(failure).__name__, str(failure)))
        rank, (name, message) = next((r, rep) for r, rep in enumerate(reports) if rep is not None)
        if failure is not None and dist.rank() == rank:
            raise failure
        cls = SolverError if name == "SolverError" else NonFiniteLossError
        raise cls(f"on rank {rank}: {message}")

    def _training_step(self, batch: Batch) -> torch.Tensor:
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
        self._record = (self.global_step + 1) % self.log_every_n_steps == 0
        if self._record:  # the full row costs host syncs: build it only for steps that are written
            self.last_train = {
                "loss": loss.item(),
                **{name: value.item() for name, value in objective.terms.items()},
                # every field evaluation of the step before back-propagation: the solve's and the terms' own
                "nfe_forward": counter.forward if counter is not None else out.depth.nfe_forward,
                "steps_accepted": out.depth.steps_accepted if out is not None else 0,
                "steps_rejected": out.depth.steps_rejected if out is not None else 0,
                "accuracy": (exact_match(out.logits.detach(), batch.targets).float().mean().item()
                             if out is not None else None),
                "lr": self.optimizers().param_groups[0]["lr"],
                "curriculum_level": self.curriculum.level if self.curriculum is not None else None,
            }
        return loss

    def backward(self, loss: torch.Tensor, *args, **kwargs) -> None:
        """A solver failure inside the backward pass (the adjoint's backward solve) becomes a
        SolverError with advice, like one in the forward solve."""
        try:
            super().backward(loss, *args, **kwargs)
        except AssertionError as err:
            integrator = getattr(self.model, "integrator", None)
            explain = getattr(integrator, "_explain", None)
            explained = explain(err) if explain is not None else err
            if not isinstance(explained, SolverError):
                raise
            raise SolverError(
                f"in the backward pass (adjoint solve) at step {self.global_step}: {explained} "
                "(the backward solve uses the same rtol/atol and max_num_steps; solver.adjoint=false avoids it)"
            ) from err

    def on_before_optimizer_step(self, optimizer) -> None:
        """Non-finite gradients stop the run before they reach the weights (and so a checkpoint).
        Under DDP the gradients are already averaged, so every process decides the same."""
        bad = [name for name, p in self.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        if bad:
            raise NonFiniteGradientError(
                f"non-finite gradients at step {self.global_step} in {len(bad)} parameter(s), e.g. {bad[0]} "
                "(the loss was finite); the last checkpoint is kept. Lower optim.lr, raise optim.warmup_steps, "
                "or tighten the solver tolerance"
            )
        if self.grad_ema is not None:
            self._amplify_slow_gradients()

    @torch.no_grad()
    def _amplify_slow_gradients(self) -> None:
        """Grokfast-EMA (Lee et al. 2024): m ← α·m + (1 − α)·g (m starts at the first g), then
        g ← g + λ·m, before clipping and the optimiser. Under DDP g is already averaged, so every
        process keeps the same m."""
        alpha, gain = self.grad_ema
        for name, p in self.named_parameters():
            if p.grad is None:
                continue
            ema = self._grad_ema_state.get(name)
            if ema is None:
                ema = self._grad_ema_state[name] = p.grad.detach().clone()
            else:
                if ema.device != p.grad.device:  # restored from a checkpoint before the model moved to its device
                    ema = self._grad_ema_state[name] = ema.to(p.grad.device)
                ema.mul_(alpha).add_(p.grad, alpha=1 - alpha)
            p.grad.add_(ema, alpha=gain)

    def _log_train(self, row: dict) -> dict:
        """The row averaged over processes (one all-reduce); NFE stays a per-process count (each
        process solves its own shard), averaged over processes."""
        keys = [k for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        reduced = dict(row)
        if dist.world_size() > 1:
            reduced.update(zip(keys, dist.mean([float(row[k]) for k in keys])))
        return reduced

    def on_after_backward(self) -> None:
        if not self._record:
            return
        counter = self._field_nfe()
        self.last_train["nfe_backward"] = counter.backward if counter is not None else 0  # VJPs of .backward()
        self.last_train["nfe_probe"] = counter.probe if counter is not None else 0  # regulariser VJPs (RNODE)
        self.last_train = self._log_train(self.last_train)
        for key in ("loss", "nfe_forward", "nfe_backward", "nfe_probe", "accuracy", "lr", *self.objective.names):
            if self.last_train[key] is not None:
                self.log(f"train/{key}", float(self.last_train[key]), batch_size=1, prog_bar=key == "loss")

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
            if self.schedule == "time":
                progress = self.time_progress
            else:
                progress = min(1.0, (step - self.warmup_steps) / max(1, self.max_steps - self.warmup_steps))
            return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # --- validation: exact match on a fixed slice (the trained levels unless task.val_difficulties) ---
    def on_validation_epoch_start(self) -> None:
        self._val = EvalAccumulator()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        out = self.model(batch.tokens)
        self._val.add(batch, out.logits, out.depth.nfe_forward)

    def on_validation_epoch_end(self) -> None:
        # every process validated its shard: merge them, so that every process computes the same
        # summary and takes the same curriculum and stopping decisions
        parts = dist.gather(self._val) if dist.world_size() > 1 else [self._val]
        merged = EvalAccumulator.merge(parts)
        if not merged.correct:
            return
        self.last_val = merged.summary()
        if self.curriculum is not None and not self.trainer.sanity_checking:
            self.curriculum.update(self.last_val["accuracy_by_difficulty"])
        # identical on every process already (merged above); sync_dist averages equal numbers
        sync = dist.world_size() > 1
        self.log("val/accuracy", self.last_val["accuracy"], prog_bar=True, sync_dist=sync)
        self.log("val/nfe", self.last_val["nfe_forward"], sync_dist=sync)
        self.log("val/loss", self.last_val["loss"], sync_dist=sync)
        for level, accuracy in self.last_val["accuracy_by_difficulty"].items():  # a checkpoint monitor per level
            self.log(f"val/accuracy_d{level}", accuracy, sync_dist=sync)

    # --- checkpoints carry what eval needs to rebuild the model, and what exact resume needs -----
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["odelm"] = self.metadata
        if self.curriculum is not None:
            checkpoint["curriculum"] = self.curriculum.state_dict()
        checkpoint["resume"] = {
            "batches_trained": self.batches_trained,
            # the sampler as it was before the next batch to train was drawn (the loader prefetches)
            "sampler": self.sampler.state_dict(self.batches_trained) if self.sampler is not None else None,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "python_rng": random.getstate(),
            "warmup_end_seconds": self.warmup_end_seconds,
            "grad_ema": {k: v.clone() for k, v in self._grad_ema_state.items()},
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.curriculum is not None and "curriculum" in checkpoint:
            self.curriculum.load_state_dict(checkpoint["curriculum"])
        state = checkpoint.get("resume")
        if state is None:  # written before exact resume existed: weights and optimiser only
            return
        self.batches_trained = int(state["batches_trained"])
        if self.sampler is not None and state.get("sampler") is not None:
            self.sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        random.setstate(state["python_rng"])
        self.warmup_end_seconds = state.get("warmup_end_seconds")
        self._grad_ema_state = dict(state.get("grad_ema") or {})  # moved to each gradient's device at first use


class MetricsCSV(L.Callback):
    """Appends one row per logged training step and per validation to `path` (rank zero only; the
    rows hold values averaged over processes).

    Columns are fixed when the file is created; rows are flushed as written, so a run that dies
    keeps every row it logged. `wall_time` is training time: validation time is excluded; it
    accumulates over resumes (the callback's state is in every checkpoint), and a resumed run first
    drops the rows logged after its checkpoint, so each step appears once.
    """

    BASE = ["step", "split", "loss", "accuracy", "nfe_forward", "nfe_backward", "nfe_probe", "steps_accepted",
            "steps_rejected", "lr", "curriculum_level", "wall_time"]

    def __init__(self, path: str, term_names: list[str]) -> None:
        self.path = path
        self.columns = self.BASE + [n for n in term_names if n not in self.BASE]
        self.start: float | None = None
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self._val_start = 0.0
        self._before = 0.0  # training seconds of earlier runs of this one (restored from a checkpoint)

    def state_dict(self) -> dict:
        return {"train_seconds": self.train_seconds}

    def load_state_dict(self, state: dict) -> None:
        self._before = self.train_seconds = float(state.get("train_seconds", 0.0))

    def _write(self, trainer: L.Trainer, row: dict) -> None:
        if not trainer.is_global_zero:
            return
        new = not os.path.exists(self.path)
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def on_train_start(self, trainer: L.Trainer, pl_module: LitLM) -> None:
        self.start = time.perf_counter()
        if trainer.is_global_zero and trainer.global_step > 0 and os.path.exists(self.path):
            with open(self.path, newline="") as f:  # resumed: rows after the checkpoint are re-done
                rows = list(csv.DictReader(f))
            kept = [r for r in rows if r.get("step") and int(r["step"]) <= trainer.global_step]
            if len(kept) < len(rows):
                tmp = f"{self.path}.{os.getpid()}.tmp"
                with open(tmp, "w", newline="") as f:
                    writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
                    writer.writeheader()
                    writer.writerows(kept)
                os.replace(tmp, self.path)

    def _elapsed(self) -> float:
        return self._before + time.perf_counter() - self.start - self.eval_seconds

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: LitLM, outputs, batch, batch_idx: int) -> None:
        self.train_seconds = self._elapsed()
        if pl_module._record:
            self._write(trainer, {"step": trainer.global_step, "split": "train",
                                  "wall_time": round(self.train_seconds, 4), **pl_module.last_train})

    def on_validation_start(self, trainer: L.Trainer, pl_module: LitLM) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: LitLM) -> None:
        if trainer.sanity_checking or self.start is None or not pl_module.last_val:
            return
        self.eval_seconds += time.perf_counter() - self._val_start
        v = pl_module.last_val
        self._write(trainer, {"step": trainer.global_step, "split": "val", "loss": v["loss"],
                              "accuracy": v["accuracy"], "nfe_forward": v["nfe_forward"],
                              "wall_time": round(self._elapsed(), 4)})


class StopAtAccuracy(L.Callback):
    """Stops training once validation accuracy reaches `target` (time-to-accuracy benchmarks).
    The accuracy is merged over processes first, so every process stops at the same step."""

    def __init__(self, target: float) -> None:
        self.target = target
        self.reached_at_step: int | None = None

    def state_dict(self) -> dict:
        return {"reached_at_step": self.reached_at_step}

    def load_state_dict(self, state: dict) -> None:
        self.reached_at_step = state.get("reached_at_step")

    def on_validation_end(self, trainer: L.Trainer, pl_module: LitLM) -> None:
        if trainer.sanity_checking or not pl_module.last_val:
            return
        if pl_module.last_val["accuracy"] >= self.target:
            self.reached_at_step = trainer.global_step
            trainer.should_stop = True
