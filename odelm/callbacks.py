"""Run-safety callbacks that odelm.train adds to every run (the run-directory ones live in lit.py)."""
from __future__ import annotations

import signal
import threading
from pathlib import Path

import lightning as L

from . import dist
from .lit import TrainingInterrupted

DEFAULT_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2")


class CheckpointOnSignal(L.Callback):
    """On SIGTERM / SIGUSR1 / SIGUSR2 (a scheduler's preemption or time-limit warning), finish the current
    step (and its validation, if one is due), save `<ckpt_dir>/last.ckpt`, and stop with TrainingInterrupted; `ckpt_path=<that file>` (or simply
    re-running into the same run directory, as a requeued SLURM job does) continues exactly.

    The handler only sets a flag; the step in flight completes first, so the checkpoint is consistent.
    Under DDP the flag is OR-reduced each step, so every process saves and stops at the same step even
    when only one got the signal. A handler that was installed before (submitit's requeue handler,
    say) is called after the checkpoint is written.
    """

    def __init__(self, ckpt_dir: str | Path, signals: list[str] | tuple[str, ...] = DEFAULT_SIGNALS) -> None:
        unknown = [name for name in signals if not hasattr(signal, name)]
        if unknown:
            raise ValueError(f"unknown signal(s) {unknown}")
        self.ckpt_dir = Path(ckpt_dir)
        self.signals = tuple(getattr(signal, name) for name in signals)
        self.received: int | None = None
        self._previous: dict[int, object] = {}
        self._saving = False

    def _handler(self, signum, frame) -> None:
        self.received = signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handler)

    def _restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if not self._saving:
            return
        # Lightning has counted the batch about to start as fetched ("ready"); it is not trained. Record the
        # loop as between two batches, so the resumed run neither skips that batch in its validation
        # schedule nor repeats the validation that already ran.
        progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress")
        if progress is not None:
            for part in ("total", "current"):
                progress[part]["ready"] = progress[part]["started"] = progress[part]["completed"]
                progress[part]["processed"] = progress[part]["completed"]

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx) -> None:
        # checked before a step rather than after one: the previous step's validation (and the
        # curriculum update it makes) has run, so the checkpoint holds everything a resumed run needs
        if not dist.any_true(self.received is not None):
            return
        path = self.ckpt_dir / "last.ckpt"
        self._saving = True
        try:
            trainer.save_checkpoint(path)  # every process calls it (rank zero writes, all wait)
        finally:
            self._saving = False
        name = signal.Signals(self.received).name if self.received is not None else "a signal on another rank"
        previous = self._previous.get(self.received) if self.received is not None else None
        self._restore()
        if callable(previous) and not getattr(previous, "__module__", "").startswith("lightning"):
            previous(self.received, None)  # e.g. submitit: requeue the job now that the state is saved
        raise TrainingInterrupted(
            f"stopped by {name} after step {trainer.global_step}; checkpoint saved to {path}. "
            f"Resume with ckpt_path={path}"
        )
