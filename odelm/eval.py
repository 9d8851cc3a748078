"""Re-evaluate a checkpoint at any depth setting, without retraining (the test-time compute knob):

    python -m odelm.eval ckpt=PATH solver.rtol=1e-5
    python -m odelm.eval ckpt=PATH solver=rk4 solver.step_size=0.5
    python -m odelm.eval ckpt=PATH solver.t_end=8          # longer horizon
    python -m odelm.eval ckpt=PATH model.loops=8           # looped model, more loops

The checkpoint's stored config is the base; each key given on the command line replaces the
stored value (switching the solver group keeps the trained t_end unless solver.t_end is given).
Writes metrics.json with the schema of training's, plus `ckpt`.
"""
from __future__ import annotations

import time
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from .build import ConfigError, build_data, build_integrator, build_model
from .data import EncodedExamples, collate
from .depth import SolverError
from .evaluation import evaluate
from .runs import base_record, run_cli, write_json
from .tasks import CharTokenizer

EXPECTED_FAILURES = (ConfigError, SolverError)


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ckpt {str(path)!r} is not a file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a truncated or foreign file
        raise ConfigError(f"ckpt {str(path)!r} could not be loaded: {err}") from err
    if "odelm" not in checkpoint or "state_dict" not in checkpoint:
        raise ConfigError(f"ckpt {str(path)!r} is not an odelm training checkpoint (no 'odelm' metadata)")
    return checkpoint


def _override_keys(overrides: list[str]) -> list[str]:
    keys = []
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        if key not in ("ckpt",) and not key.startswith("hydra"):
            keys.append(key)
    return keys


def merged_config(stored: dict, given: DictConfig, overrides: list[str]) -> DictConfig:
    """The checkpoint's config with each command-line key replaced by its composed value."""
    cfg = OmegaConf.create(stored)
    keys = _override_keys(overrides)
    with open_dict(cfg):
        for key in keys:
            value = OmegaConf.select(given, key, throw_on_missing=False)
            OmegaConf.update(cfg, key, value, merge=False, force_add=True)
        if "solver" in keys and "solver.t_end" not in keys:  # a new method keeps the trained horizon
            cfg.solver.t_end = stored["solver"]["t_end"]
        cfg.data.eval_batch_size = given.data.eval_batch_size
    return cfg


def run(given: DictConfig, run_dir: str | Path | None = None, overrides: list[str] | None = None) -> dict:
    run_dir = Path(run_dir or HydraConfig.get().runtime.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if overrides is None:
        overrides = list(HydraConfig.get().overrides.task)
    checkpoint = load_checkpoint(given.ckpt)
    meta = checkpoint["odelm"]
    cfg = merged_config(meta["config"], given, overrides)
    tokenizer = CharTokenizer.from_dict(meta["tokenizer"])
    data = build_data(cfg, cfg.seed, tokenizer=tokenizer, train=False)
    integrator = build_integrator(cfg)
    model = build_model(cfg, tokenizer.vocab_size, integrator)
    state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state)
    test = EncodedExamples(data.test, tokenizer, "test")
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)

    start = time.perf_counter()
    loader = torch.utils.data.DataLoader(test, batch_size=cfg.data.eval_batch_size, collate_fn=collate)
    results = evaluate(model, loader)
    record = {
        **base_record(cfg, integrator, model.num_params()),
        **results,
        "train_steps": checkpoint.get("global_step"),
        "eval_seconds": round(time.perf_counter() - start, 3),
        "ckpt": str(given.ckpt),
        "checkpoint": str(given.ckpt),
        "run_dir": str(run_dir),
    }
    write_json(run_dir / "metrics.json", record)
    return record


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> float:
    return run_cli(run, cfg, EXPECTED_FAILURES)


if __name__ == "__main__":
    main()
