"""Train a model: `python -m odelm.train model=ode solver=dopri5 solver.rtol=1e-3 ...`.

The Trainer, its callbacks and loggers are instantiated from conf/trainer, conf/callbacks and
conf/logger, so every Lightning option is an override (`trainer.devices=2 trainer.strategy=ddp`).
The run directory (Hydra's output dir) receives config.yaml (resolved), metrics.csv (per logged
step), checkpoints/, and metrics.json (final evaluation on the validation and the test split); under DDP
only rank zero writes them. Returns the *validation* accuracy, for sweepers (Optuna): model selection
never reads the test split.
"""
from __future__ import annotations

import inspect
import json
import math
import os
import sys
import threading
import time
import warnings
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from . import dist
from .build import (
    ConfigError,
    build_curriculum,
    build_data,
    build_integrator,
    build_model,
    build_objective,
    build_teacher,
    check_task_model,
    check_training_config,
    prepare_objective,
    resolve_positions,
)
from .data import TaskDataModule, collate
from .depth import SolverError
from .evaluation import answer_scorer, evaluate
from .lit import LitLM, MetricsCSV, NonFiniteLossError, StopAtAccuracy, TrainingInterrupted
from .precision import configure_arithmetic
from .runs import base_record, run_cli, write_json, write_text

EXPECTED_FAILURES = (ConfigError, SolverError, NonFiniteLossError, TrainingInterrupted)
# Keys of the trainer node that odelm translates instead of passing them to the Trainer.
ODELM_TRAINER_KEYS = ("max_time_minutes", "checkpoint_every_n_steps")
DDP_JOB_ENV = "ODELM_DDP_JOB"  # a multirun job's own overrides, for the DDP processes it starts


def _check_node_keys(node: dict, target, group: str) -> None:
    """Names a key the target does not take (Hydra would report only a TypeError deep inside)."""
    params = inspect.signature(target).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    for key in node:
        if not key.startswith("_") and key not in params:
            raise ConfigError(f"{group}.{key} is not an argument of {target.__module__}.{target.__qualname__}")


def _instantiate(node: dict, group: str, recursive: bool = True, **kwargs):
    target = node.get("_target_")
    if not target:
        raise ConfigError(f"{group} needs a _target_ (the class to instantiate), got {node!r}")
    try:
        cls = hydra.utils.get_class(target)
    except Exception as err:
        raise ConfigError(f"{group}._target_={target!r} cannot be imported: {err}") from err
    _check_node_keys({**node, **kwargs}, cls, group)
    try:
        return hydra.utils.instantiate(node, **kwargs, _convert_="all", _recursive_=recursive)
    except Exception as err:  # Hydra wraps the constructor's error; report the cause, naming the node
        cause = err.__cause__ or err
        raise ConfigError(f"{group}: {type(cause).__name__}: {cause}") from err


def _group(cfg: DictConfig, key: str) -> dict:
    node = cfg.get(key)
    return (OmegaConf.to_container(node, resolve=True) or {}) if node is not None else {}


def build_callbacks(cfg: DictConfig, ckpt_dir: Path) -> list[L.Callback]:
    """The callbacks of conf/callbacks (a ModelCheckpoint without dirpath writes to `ckpt_dir`)."""
    callbacks = []
    for name, node in _group(cfg, "callbacks").items():
        if node is None:  # callbacks.NAME=null switches one off
            continue
        if str(node.get("_target_", "")).endswith("ModelCheckpoint") and node.get("dirpath") is None:
            node["dirpath"] = str(ckpt_dir)
        if "ckpt_dir" in node and node["ckpt_dir"] is None:
            node["ckpt_dir"] = str(ckpt_dir)
        callbacks.append(_instantiate(node, f"callbacks.{name}"))
    return callbacks


def build_loggers(cfg: DictConfig, run_dir: Path) -> list:
    """The loggers of conf/logger; save_dir and name left null take the run directory and its name."""
    loggers = []
    for name, node in _group(cfg, "logger").items():
        if node is None:
            continue
        node = dict(node)
        if "save_dir" in node and node["save_dir"] is None:
            node["save_dir"] = str(run_dir)
        if "name" in node and node["name"] is None:
            node["name"] = run_dir.name
        if str(node.get("_target_", "")).endswith("WandbLogger"):
            node["config"] = OmegaConf.to_container(cfg, resolve=True)  # passed on to wandb.init
        loggers.append(_instantiate(node, f"logger.{name}", recursive=False))  # the config holds _target_s
    return loggers


def trainer_kwargs(cfg: DictConfig) -> dict:
    """The trainer node as Trainer arguments: odelm's keys translated, invalid combinations named."""
    node = OmegaConf.to_container(cfg.trainer, resolve=True)
    minutes = node.pop("max_time_minutes", None)
    node.pop("checkpoint_every_n_steps", None)  # → callbacks.model_checkpoint.every_n_train_steps
    if minutes:
        if node.get("max_time") is not None:
            raise ConfigError("set trainer.max_time_minutes or trainer.max_time, not both")
        node["max_time"] = {"minutes": minutes}
    if node.get("use_distributed_sampler"):
        raise ConfigError("trainer.use_distributed_sampler must stay false: odelm shards its training batches "
                          "itself (odelm.data.TrainBatchSampler), identically seeded on every process")
    return node


def _world_size(node: dict) -> int:
    """The number of processes the Trainer settings ask for (devices × nodes)."""
    devices, nodes = node.get("devices", 1), int(node.get("num_nodes", 1) or 1)
    if isinstance(devices, str) and devices.lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, int) and devices > 0:
        return devices * nodes
    if isinstance(devices, (list, tuple)):
        return len(devices) * nodes
    # "auto" / -1: every visible GPU when one is used, else one CPU process
    gpus = torch.cuda.device_count() if str(node.get("accelerator", "auto")) in ("auto", "gpu", "cuda") else 0
    return max(1, gpus) * nodes


def unused_parameters(lit: LitLM, datamodule: TaskDataModule) -> list[str]:
    """Trainable parameters that one training step leaves without a gradient (an exit gate under
    plain CE, the embedding and head under fm_distill): DDP must be told, or it fails at step 2.
    One forward/backward on the first training examples, with every RNG state restored after."""
    items = [datamodule.train_set[i] for i in range(min(4, len(datamodule.train_set)))]
    batch = collate(items)
    every = lit.log_every_n_steps
    with torch.random.fork_rng(devices=[]):
        lit.model.train()
        lit.model.zero_grad(set_to_none=True)
        lit.log_every_n_steps = 1 << 30  # no logging row: there is no trainer yet
        try:
            lit._training_step(batch).backward()
        except Exception:  # the real step will report it properly
            return []
        finally:
            lit._record, lit.log_every_n_steps = False, every
    names = [n for n, p in lit.model.named_parameters() if p.requires_grad and p.grad is None]
    lit.model.zero_grad(set_to_none=True)
    return names


def resume_paths(cfg: DictConfig, run_dir: Path) -> tuple[Path, str | None]:
    """(run directory, checkpoint to resume from). `ckpt_path=<run>/checkpoints/X.ckpt` continues in
    <run>; without ckpt_path, a run directory that already holds checkpoints/last.ckpt (a requeued or
    restarted job) continues from it."""
    if cfg.ckpt_path is not None:
        ckpt = Path(str(cfg.ckpt_path)).resolve()
        owner = ckpt.parent.parent
        if ckpt.parent.name == "checkpoints" and (owner / "config.yaml").is_file():
            return owner, str(ckpt)
        return run_dir, str(ckpt)
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.is_file():
        print(f"odelm: {run_dir} already holds {last.name}: resuming from it", file=sys.stderr)
        return run_dir, str(last)
    return run_dir, None


def _retire_child_observer() -> None:
    """Lightning's child-process observer (a thread polling every 5 s) SIGKILLs this process as soon as
    a child has exited non-zero. After an error every rank agreed on, the children exit 1 while this
    process still writes the failure record, so on a loaded machine the run died with -9 instead of
    exiting 1. From here on this process waits for its children itself, so the observer is given an
    empty list to watch (it then ends without killing); during fit it stays armed, where a crashed child
    would otherwise leave this process hanging in a collective."""
    for thread in threading.enumerate():
        if thread.name == "child-process-observer" and hasattr(thread, "_child_processes"):
            thread._child_processes = []


def _release_processes(trainer: L.Trainer) -> None:
    """After a DDP fit that this process launched: wait for its children, drop the process group and
    the launcher's environment, so that the next job of a multirun starts its own group."""
    procs = getattr(getattr(trainer.strategy, "launcher", None), "procs", None) or []
    if procs:
        _retire_child_observer()
    for proc in procs:
        try:
            proc.wait(timeout=120)
        except Exception:
            proc.kill()
    if procs or HydraConfig.initialized() and os.environ.get(DDP_JOB_ENV):
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key in ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", DDP_JOB_ENV):
            os.environ.pop(key, None)


def _announce_multirun_job(run_dir: Path) -> None:
    """Lightning starts the other DDP processes by re-running this command line, which in a Hydra
    multirun would re-run the whole sweep in every process; the job's own overrides are handed to
    them instead (see `_ddp_child_argv`)."""
    if not HydraConfig.initialized():
        return
    from hydra.types import RunMode

    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:
        os.environ[DDP_JOB_ENV] = json.dumps({"overrides": list(hc.overrides.task), "run_dir": str(run_dir)})


def _ddp_child_argv() -> None:
    """In a DDP process that Lightning started for a multirun job: run that one job, in its directory."""
    job = os.environ.get(DDP_JOB_ENV)
    local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
    if job and local_rank > 0:
        spec = json.loads(job)
        sys.argv = [sys.argv[0], *spec["overrides"], f'hydra.run.dir="{spec["run_dir"]}"', "hydra.output_subdir=null",
                    f"hydra.job.name=train_ddp_process_{local_rank}"]


def compile_blocks(model: torch.nn.Module) -> int:
    """`model.compile=true`: torch.compile each block of the field (of a transformer: each layer), in
    place, so state-dict keys and checkpoints are unchanged. The integrator's loop, the solver and the
    NFE counters stay eager Python (a solver's step-size control is data-dependent control flow).
    Returns the number of compiled blocks."""
    field = getattr(model, "field", None)
    blocks = list(field.blocks) if field is not None else list(getattr(model, "layers", []))
    for block in blocks:
        block.compile()
    return len(blocks)


MEMORISATION_GAP = 0.1  # training-sample minus validation accuracy on a level that counts as memorising


def memorised_levels(record: dict, gap: float = MEMORISATION_GAP) -> dict[str, tuple[float, float]]:
    """{level: (training-sample accuracy, validation accuracy)} for the levels where the final model
    scores at least `gap` higher on training examples than on unseen validation ones, and the
    difference is also more than two standard errors (binomial, from the `*_n_by_difficulty` counts)
    so that sampling noise on small splits does not raise it."""
    train, val = record.get("train_sample_accuracy_by_difficulty") or {}, record.get("val_accuracy_by_difficulty") or {}
    n_train, n_val = record.get("train_sample_n_by_difficulty") or {}, record.get("val_n_by_difficulty") or {}
    out = {}
    for d in train:
        if d not in val or train[d] - val[d] < gap - 1e-9:  # a gap of exactly `gap` counts
            continue
        if d in n_train and d in n_val:
            se = math.sqrt(train[d] * (1 - train[d]) / n_train[d] + val[d] * (1 - val[d]) / n_val[d])
            if train[d] - val[d] <= 2 * se:
                continue
        out[d] = (train[d], val[d])
    return out


def warn_memorisation(record: dict) -> None:
    levels = memorised_levels(record)
    if levels:
        shown = ", ".join(f"level {d}: {t:.2f} vs {v:.2f}" for d, (t, v) in levels.items())
        print(f"odelm: accuracy on training examples exceeds validation accuracy by {MEMORISATION_GAP} or more "
              f"({shown}): the model may be memorising its training examples there; more distinct training "
              f"examples may help", file=sys.stderr)


def run(cfg: DictConfig, run_dir: str | Path | None = None) -> dict:
    """Build, train, evaluate on the test split, write metrics.json; returns the record."""
    # Lightning warns that a mid-epoch resume cannot restore a plain DataLoader; odelm restores its
    # sampler itself (LitLM checkpoints its state), so the warning does not apply
    warnings.filterwarnings("ignore", message=".*dataloader is not resumable.*")
    run_dir = Path(run_dir or HydraConfig.get().runtime.output_dir)

    configure_arithmetic()  # the one arithmetic of every entry point (odelm/precision.py)
    # Everything that can be wrong with the input fails here, before any training.
    check_training_config(cfg)
    run_dir, ckpt_path = resume_paths(cfg, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    kwargs = trainer_kwargs(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    data = build_data(cfg, cfg.seed)
    check_task_model(cfg, data.layout)
    resolve_positions(cfg, data, data.tokenizer)
    integrator = build_integrator(cfg)
    model = build_model(cfg, data.tokenizer.vocab_size, integrator)
    if cfg.model.get("compile", False):
        compile_blocks(model)
    objective = build_objective(cfg)
    prepare_objective(cfg, objective, model, build_teacher(cfg, data.tokenizer))  # teacher, RNODE states, freezing
    curriculum = build_curriculum(cfg, data.train, data.val)
    datamodule = TaskDataModule(
        data.tokenizer, data.train, data.val, data.test, cfg.data.batch_size, cfg.data.eval_batch_size, cfg.seed,
        curriculum=curriculum, layout=data.layout,
        augment=data.task if cfg.task.get("augment", True) else None,
    )
    if dist.is_rank_zero():
        write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    lit = LitLM(
        model, objective, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, betas=cfg.optim.betas,
        warmup_steps=cfg.optim.warmup_steps, max_steps=cfg.trainer.max_steps, min_lr_ratio=cfg.optim.min_lr_ratio,
        schedule=cfg.optim.get("schedule", "steps"),
        grad_ema=(None if cfg.optim.get("grad_ema") is None
                  else (cfg.optim.grad_ema.alpha, cfg.optim.grad_ema.gain)),
        metadata={"config": OmegaConf.to_container(cfg, resolve=True), "tokenizer": data.tokenizer.to_dict(),
                  # the command line's overrides, when run from it (provenance)
                  "overrides": list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else None},
        log_every_n_steps=cfg.trainer.log_every_n_steps,
        curriculum=curriculum, sampler=datamodule.train_sampler,
    )
    ckpt_dir = run_dir / "checkpoints"
    metrics_csv = MetricsCSV(str(run_dir / "metrics.csv"), objective.names)
    callbacks: list[L.Callback] = [*build_callbacks(cfg, ckpt_dir), metrics_csv]
    stopper = None
    if cfg.get("target_accuracy") is not None:
        stopper = StopAtAccuracy(float(cfg.target_accuracy))
        callbacks.append(stopper)
    loggers = build_loggers(cfg, run_dir)

    distributed = _world_size(kwargs) > 1 or "ddp" in str(kwargs.get("strategy", ""))
    if distributed and kwargs.get("strategy") in (None, "auto"):
        kwargs["strategy"] = "ddp"  # what Lightning picks for a script; named so the probe below applies
    if distributed and kwargs.get("strategy") in ("ddp", "ddp_spawn"):
        unused = unused_parameters(lit, datamodule)
        if unused:
            kwargs["strategy"] = f"{kwargs['strategy']}_find_unused_parameters_true"
            print(f"odelm: {len(unused)} parameter(s) get no gradient under this objective (e.g. {unused[0]}): "
                  f"trainer.strategy={kwargs['strategy']}", file=sys.stderr)
    kwargs["default_root_dir"] = str(run_dir)
    trainer = _instantiate(kwargs, "trainer", logger=loggers or False, callbacks=callbacks)
    if distributed:
        _announce_multirun_job(run_dir)
    try:
        trainer.fit(lit, datamodule=datamodule, ckpt_path=ckpt_path)
        final_ckpt = run_dir / "checkpoints" / "final.ckpt"
        trainer.save_checkpoint(final_ckpt)  # every process calls it; rank zero writes
        if not trainer.is_global_zero:  # the test set is evaluated once, by rank zero, on the plain model
            return {"status": "ok", "accuracy": float("nan"), "val_accuracy": float("nan"), "rank": trainer.global_rank}

        # for selection (sweepers); the whole validation split, not this process's shard
        val_results = evaluate(model, datamodule.full_val_dataloader(), lit.device)
        # a fixed sample of training examples of the levels trained on: its accuracy minus validation's
        # is what is memorised (a curriculum's locked levels were never trained: left out)
        trained_levels = curriculum.levels[:curriculum.unlocked] if curriculum else None
        train_sample = datamodule.train_sample_dataloader(trained_levels)
        sample_results = evaluate(model, train_sample, lit.device) if train_sample is not None else None
        start = time.perf_counter()
        scorer = answer_scorer(data.task, data.tokenizer, data.test, data.layout)
        results = evaluate(model, datamodule.test_dataloader(), lit.device, scorer=scorer)
        record = {
            **base_record(cfg, integrator, model.num_params()),
            **results,
            "val_accuracy": val_results["accuracy"],
            "val_accuracy_by_difficulty": val_results["accuracy_by_difficulty"],
            "val_n_by_difficulty": val_results["n_by_difficulty"],
            "train_sample_accuracy": sample_results["accuracy"] if sample_results else None,
            "train_sample_accuracy_by_difficulty": sample_results["accuracy_by_difficulty"] if sample_results else None,
            "train_sample_n_by_difficulty": sample_results["n_by_difficulty"] if sample_results else None,
            "n_train": len(data.train),
            "n_val": len(data.val),
            **data.report,
            "flops_per_token": model.flops_per_token(results["nfe_forward"]),
            "train_steps": trainer.global_step,
            "train_seconds": round(metrics_csv.train_seconds, 3),
            "eval_seconds": round(time.perf_counter() - start, 3),
            "target_accuracy": cfg.get("target_accuracy"),
            "target_reached_at_step": stopper.reached_at_step if stopper else None,
            "curriculum_level": curriculum.level if curriculum else None,
            "curriculum_forced": curriculum.forced if curriculum else None,  # levels unlocked by patience
            "world_size": trainer.world_size,
            "checkpoint": str(final_ckpt),
            "run_dir": str(run_dir),
        }
        write_json(run_dir / "metrics.json", record)
        warn_memorisation(record)
        for logger in loggers:
            logger.log_metrics({f"test/{k}": v for k, v in results.items() if isinstance(v, (int, float))})
        return record
    finally:
        if distributed:
            _release_processes(trainer)
        if any(type(logger).__name__ == "WandbLogger" for logger in loggers) and trainer.is_global_zero:
            import wandb

            wandb.finish()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    return run_cli(run, cfg, EXPECTED_FAILURES, score="val_accuracy")


if __name__ == "__main__":
    _ddp_child_argv()
    main()
