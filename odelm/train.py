"""Train a model: `python -m odelm.train model=ode solver=dopri5 solver.rtol=1e-3 ...`.

The run directory (Hydra's output dir) receives config.yaml (resolved), metrics.csv (per logged
step), checkpoints/, and metrics.json (final evaluation on the validation and the test split). Returns the *validation*
accuracy, for sweepers (Optuna): model selection never reads the test split.
"""
from __future__ import annotations

import time
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

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
from .data import TaskDataModule
from .depth import SolverError
from .evaluation import answer_scorer, evaluate
from .lit import LitLM, MetricsCSV, NonFiniteLossError, StopAtAccuracy
from .precision import configure_arithmetic
from .runs import base_record, run_cli, write_json

EXPECTED_FAILURES = (ConfigError, SolverError, NonFiniteLossError)


def _loggers(cfg: DictConfig, run_dir: Path) -> list:
    wandb_cfg = cfg.logger.get("wandb")
    if not wandb_cfg:
        return []
    from lightning.pytorch.loggers import WandbLogger

    return [
        WandbLogger(
            project=wandb_cfg.project, offline=bool(wandb_cfg.offline), group=wandb_cfg.get("group"),
            name=wandb_cfg.get("name") or run_dir.name, tags=list(wandb_cfg.get("tags") or []),
            save_dir=str(run_dir), config=OmegaConf.to_container(cfg, resolve=True),
        )
    ]


def run(cfg: DictConfig, run_dir: str | Path | None = None) -> dict:
    """Build, train, evaluate on the test split, write metrics.json; returns the record."""
    run_dir = Path(run_dir or HydraConfig.get().runtime.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    configure_arithmetic()  # the one arithmetic of every entry point (odelm/precision.py)
    # Everything that can be wrong with the input fails here, before any training.
    check_training_config(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    data = build_data(cfg, cfg.seed)
    check_task_model(cfg, data.layout)
    resolve_positions(cfg, data, data.tokenizer)
    integrator = build_integrator(cfg)
    model = build_model(cfg, data.tokenizer.vocab_size, integrator)
    objective = build_objective(cfg)
    prepare_objective(cfg, objective, model, build_teacher(cfg, data.tokenizer))  # teacher, RNODE states, freezing
    curriculum = build_curriculum(cfg, data.train, data.val)
    datamodule = TaskDataModule(
        data.tokenizer, data.train, data.val, data.test, cfg.data.batch_size, cfg.data.eval_batch_size, cfg.seed,
        curriculum=curriculum, layout=data.layout,
        augment=data.task if cfg.task.get("augment", True) else None,
    )
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)

    lit = LitLM(
        model, objective, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, betas=cfg.optim.betas,
        warmup_steps=cfg.optim.warmup_steps, max_steps=cfg.trainer.max_steps, min_lr_ratio=cfg.optim.min_lr_ratio,
        metadata={"config": OmegaConf.to_container(cfg, resolve=True), "tokenizer": data.tokenizer.to_dict()},
        log_every_n_steps=cfg.trainer.log_every_n_steps,
        curriculum=curriculum,
    )
    metrics_csv = MetricsCSV(str(run_dir / "metrics.csv"), objective.names)
    callbacks: list[L.Callback] = [
        metrics_csv,
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints", filename="step{step}", auto_insert_metric_name=False,
            every_n_train_steps=cfg.trainer.checkpoint_every_n_steps, save_last=True, save_top_k=1,
        ),
    ]
    stopper = None
    if cfg.get("target_accuracy") is not None:
        stopper = StopAtAccuracy(float(cfg.target_accuracy))
        callbacks.append(stopper)
    loggers = _loggers(cfg, run_dir)
    t = cfg.trainer
    trainer = L.Trainer(
        max_steps=t.max_steps,
        max_time={"minutes": t.max_time_minutes} if t.max_time_minutes else None,
        val_check_interval=t.val_check_interval,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        log_every_n_steps=t.log_every_n_steps,
        accelerator=t.accelerator,
        devices=t.devices,
        precision=t.precision,
        gradient_clip_val=cfg.optim.grad_clip,
        enable_progress_bar=t.enable_progress_bar,
        enable_model_summary=False,
        default_root_dir=str(run_dir),
        logger=loggers or False,
        callbacks=callbacks,
    )
    try:
        trainer.fit(lit, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
        final_ckpt = run_dir / "checkpoints" / "final.ckpt"
        trainer.save_checkpoint(final_ckpt)

        val_results = evaluate(model, datamodule.val_dataloader(), lit.device)  # for selection (sweepers)
        start = time.perf_counter()
        scorer = answer_scorer(data.task, data.tokenizer, data.test, data.layout)
        results = evaluate(model, datamodule.test_dataloader(), lit.device, scorer=scorer)
        record = {
            **base_record(cfg, integrator, model.num_params()),
            **results,
            "val_accuracy": val_results["accuracy"],
            "val_accuracy_by_difficulty": val_results["accuracy_by_difficulty"],
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
            "checkpoint": str(final_ckpt),
            "run_dir": str(run_dir),
        }
        write_json(run_dir / "metrics.json", record)
        for logger in loggers:
            logger.log_metrics({f"test/{k}": v for k, v in results.items() if isinstance(v, (int, float))})
        return record
    finally:
        if loggers:
            import wandb

            wandb.finish()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    return run_cli(run, cfg, EXPECTED_FAILURES, score="val_accuracy")


if __name__ == "__main__":
    main()
