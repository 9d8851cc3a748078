"""Re-evaluate a checkpoint at any depth setting, without retraining (the test-time compute knob):

    python -m odelm.eval ckpt=PATH solver.rtol=1e-5
    python -m odelm.eval ckpt=PATH solver=rk4 solver.step_size=0.5
    python -m odelm.eval ckpt=PATH solver.t_end=8          # longer horizon
    python -m odelm.eval ckpt=PATH model.loops=8           # looped model, more loops
    python -m odelm.eval ckpt=PATH exit=kl exit.threshold=1e-3           # adaptive depth (conf/exit/)
    python -m odelm.eval ckpt=PATH model.integrator=ode exit=state_change  # event-stopped ODE, per example
    python -m odelm.eval ckpt=PATH sweep.key=model.loops sweep.values=[2,4,8]
    python -m odelm.eval ckpt=PATH sweep.key=[solver.rtol,solver.atol] sweep.values=[1e-2,1e-3,1e-4]
    python -m odelm.eval ckpt=PATH lens.depths=[0,1,2,3,4]              # logit lens
    python -m odelm.eval ckpt=PATH probe_backward=true                  # + NFE backward of a training step
    python -m odelm.eval ckpt=PATH split=val task.val_difficulties=[48,64]  # validation: for choosing

The checkpoint's stored config is the base; each key given on the command line replaces the
stored value. Switching the solver group (solver=X) takes X's method and grid step and keeps the
trained tolerances, t_end, max_num_steps, norm and adjoint unless given; a looped checkpoint solved
as an ODE (model.integrator=ode) integrates over t_end = its loops unless solver.t_end is given.
`exit`, `sweep`, `lens`, `probe_backward` and `split` are evaluation settings and always come from the
command line. `split=val` evaluates the validation split instead of test (at task.val_difficulties, else
the trained levels; never a test prompt): what to choose checkpoints, seeds or settings on.
Writes metrics.json with the schema of training's, plus `ckpt`, `exit` and per-example compute
(NFE and depth per example, their means and histograms per difficulty). A sweep evaluates once
per value and writes one row per setting to sweep.csv (accuracy overall and per difficulty, mean
NFE and depth); metrics.json then holds every row under "sweep" and promotes none of them (the
rows are test-split numbers: picking a best one would select on test; sweep with split=val to choose).
The lens writes lens.csv.
"""
from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from .build import BEFORE_THE_KEY, ConfigError, build_data, build_integrator, build_model, check_task_model, resolve_positions
from .data import EncodedExamples
from .depth import FIXED_GRID_METHODS, SolverError
from .evaluation import answer_scorer, evaluate
from .exits import AdaptiveDepth, build_exit, logit_lens
from .objectives import answer_cross_entropy
from .precision import configure_arithmetic
from .runs import base_record, run_cli, write_csv, write_json
from .tasks import CharTokenizer

EXPECTED_FAILURES = (ConfigError, SolverError)
log = logging.getLogger(__name__)
EVAL_ONLY_KEYS = ("exit", "sweep", "lens", "probe_backward", "split", "device")
SPLITS = ("test", "val")


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
        if key not in ("ckpt",) and not key.startswith("hydra") and key.split(".")[0] not in EVAL_ONLY_KEYS:
            keys.append(key)
    return keys


SOLVER_CONF = Path(__file__).resolve().parents[1] / "conf" / "solver"


def _solver_file_keys(name: str) -> dict:
    """What conf/solver/<name>.yaml states itself (its method, and the grid step of fixed-grid methods)."""
    path = SOLVER_CONF / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown solver {name!r}")
    own = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    own.pop("defaults", None)
    return own


def _group_choice(overrides: list[str], group: str) -> str | None:
    for item in overrides:
        key, _, value = item.partition("=")
        if key.lstrip("+~") == group:
            return value
    return None


def merged_config(stored: dict, given: DictConfig, overrides: list[str]) -> DictConfig:
    """The checkpoint's config with each command-line key replaced by its composed value.

    The solver belongs to the ODE: it is kept only when the evaluated model integrates an ODE
    (`model.integrator=ode`, stored or given). Switching the method (`solver=X`) takes what
    conf/solver/X.yaml states (its method, a fixed-grid step) and keeps every other trained setting
    (tolerances, t_end, max_num_steps, norm, adjoint) unless given; a looped checkpoint solved as an
    ODE integrates over its own number of loops (t_end = model.loops) unless solver.t_end is given."""
    cfg = OmegaConf.create(stored)
    keys = _override_keys(overrides)
    with open_dict(cfg):
        for group in ("model", "task"):  # keys added since the checkpoint was written
            for key, default in given[group].items():  # take today's defaults (top level only)
                if key not in cfg[group]:  # ... unless its absence means the behaviour before the key
                    cfg[group][key] = copy.deepcopy(BEFORE_THE_KEY.get((group, key), default))
        for key in keys:
            if key == "solver" or key.startswith("solver."):
                continue  # below
            value = OmegaConf.select(given, key, throw_on_missing=False)
            OmegaConf.update(cfg, key, value, merge=False, force_add=True)
        solver_keys = [k for k in keys if k == "solver" or k.startswith("solver.")]
        if cfg.model.get("family") != "transformer" and cfg.model.get("integrator") == "ode":
            trained = stored.get("solver") if stored["model"].get("integrator") == "ode" else None
            if trained is None:  # a looped field solved as an ODE: its horizon is its number of loops
                solver = copy.deepcopy(given.solver)
                solver.t_end = float(stored["model"]["loops"])
            else:
                solver = OmegaConf.create(trained)
                for key, default in given.solver.items():  # keys added since the checkpoint was written
                    if key not in solver:
                        solver[key] = copy.deepcopy(default)
            choice = _group_choice(overrides, "solver")
            if choice is not None:
                solver.merge_with(_solver_file_keys(choice))
            for key in solver_keys:
                if key != "solver":
                    OmegaConf.update(solver, key.removeprefix("solver."), OmegaConf.select(given, key),
                                     merge=False, force_add=True)
            cfg.solver = solver
        else:
            if solver_keys:
                raise ConfigError(
                    f"{solver_keys[0]} applies to ODE models only; this checkpoint is a "
                    f"{stored['model'].get('name')} model: add model.integrator=ode to solve its field as an ODE"
                )
            cfg.pop("solver", None)  # a looped or transformer record carries no solver
        cfg.data.eval_batch_size = given.data.eval_batch_size
        for key in EVAL_ONLY_KEYS:
            cfg[key] = copy.deepcopy(given.get(key)) if given.get(key) is not None else None
    return cfg


def build_exit_strategy(cfg: DictConfig, model: torch.nn.Module) -> AdaptiveDepth | None:
    """The `exit` node as an AdaptiveDepth checked against `model`; ConfigError naming a bad value."""
    node = cfg.get("exit")
    try:
        strategy = build_exit(OmegaConf.to_container(node, resolve=True) if node is not None else None)
        if strategy is not None:
            strategy.check(model)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    return strategy


def sweep_settings(cfg: DictConfig) -> tuple[list[str], list] | None:
    """(keys, values) of the `sweep` node, or None when no sweep is asked for."""
    node = cfg.get("sweep")
    if node is None or node.get("key") is None:
        return None
    key = OmegaConf.to_container(node.key, resolve=True) if OmegaConf.is_list(node.key) else node.key
    keys = [key] if isinstance(key, str) else key
    if not keys or not all(isinstance(k, str) and k for k in keys):
        raise ConfigError(f"sweep.key must be a config key or a list of keys, got {key!r}")
    values = OmegaConf.to_container(node.get("values"), resolve=True) if node.get("values") is not None else []
    if not isinstance(values, list) or not values:
        raise ConfigError(f"sweep.key={key} needs a non-empty list sweep.values=[...], got {values!r}")
    missing = object()
    for k in keys:
        if k.split(".")[0] == "sweep" or OmegaConf.select(cfg, k, default=missing) is missing:
            raise ConfigError(f"sweep.key {k!r} is not a key of the evaluated config")
    return keys, values


class _Evaluation:
    """Builds and evaluates the checkpoint's model under one config."""

    def __init__(self, given: DictConfig, checkpoint: dict) -> None:
        self.checkpoint = checkpoint
        self.ckpt = str(given.ckpt)
        meta = checkpoint["odelm"]
        self.tokenizer = CharTokenizer.from_dict(meta["tokenizer"])
        self.state = {
            k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")
        }

    def model(self, cfg: DictConfig):
        integrator = build_integrator(cfg, training=False)
        model = build_model(cfg, self.tokenizer.vocab_size, integrator)
        model.load_state_dict(self.state)
        return model.to(eval_device(cfg)).eval(), integrator

    def loader(self, cfg: DictConfig) -> torch.utils.data.DataLoader:
        return self.data_and_loader(cfg)[1]

    def data_and_loader(self, cfg: DictConfig):
        """The evaluated split (`split`: test, or val to choose among runs or settings) and its loader."""
        split = _split(cfg)
        data = build_data(cfg, cfg.seed, tokenizer=self.tokenizer, train=False)
        if split == "val":
            test_prompts = {ex.prompt for ex in data.test}
            data.val, data.report["val_dropped_test_prompts"] = self.validation(cfg, test_prompts)
        check_task_model(cfg, data.layout)
        examples = EncodedExamples(getattr(data, split), self.tokenizer, split, data.layout)  # vocabulary first
        resolve_positions(cfg, data, self.tokenizer, splits=(split,))  # learned positions: inputs must fit
        return data, torch.utils.data.DataLoader(examples, batch_size=cfg.data.eval_batch_size,
                                                 collate_fn=examples.collate)

    def validation(self, cfg: DictConfig, test_prompts: set[str]) -> tuple[list, int]:
        """The validation split as the run drew it, so that it holds no training prompt: drawn against the
        run's own test split (the draws reject its prompts), at the run's count on every trained level,
        then without any prompt of the test split evaluated now (a longer or larger test set may reach
        validation's prompts; those are dropped, not redrawn, so validation never gains a training prompt).
        Levels the run never trained on take any count. Anything that would change the draws is an error.
        Returns the examples and how many were dropped as prompts of the test split."""
        stored = self.checkpoint["odelm"]["config"]
        run_task, ours = stored["task"], OmegaConf.to_container(cfg.task, resolve=True)
        for key in ("name", "params", "train", "val", "test_seed"):
            if key in run_task and ours.get(key) != run_task[key]:
                raise ConfigError(f"split=val rebuilds the run's validation split: task.{key}={ours.get(key)!r} "
                                  f"differs from the run's {run_task[key]!r} (validation could then hold training prompts)")
        trained = run_task.get("train_difficulties")  # None: every level of the training file (JSONL)
        run_levels = run_task.get("val_difficulties") or trained
        levels = ours.get("val_difficulties") or ours.get("train_difficulties")  # None: every level
        on_trained = None if levels is None else [d for d in levels if trained is None or d in trained]
        unvalidated = [d for d in on_trained or [] if run_levels is not None and d not in run_levels]
        if unvalidated:
            raise ConfigError(f"split=val: trained level(s) {unvalidated} were not validation levels of the run "
                              f"({run_levels}), so their prompts may be in training; validate only at levels the run "
                              "validated on or never trained on")
        n_val, run_n_val = cfg.data.n_val_per_difficulty, stored["data"]["n_val_per_difficulty"]
        if (on_trained is None or on_trained) and not run_task.get("val") and n_val != run_n_val:
            raise ConfigError(f"split=val: data.n_val_per_difficulty={n_val} differs from the run's {run_n_val} at "
                              f"trained level(s) {on_trained or 'all'}: the extra prompts may be training prompts; keep "
                              "the run's count there (any count is fine at levels it never trained on)")
        as_drawn = copy.deepcopy(cfg)
        with open_dict(as_drawn):
            for key in ("test_difficulties", "n_test_per_difficulty", "test"):
                if key in run_task:
                    as_drawn.task[key] = copy.deepcopy(run_task[key])
        val = build_data(as_drawn, cfg.seed, tokenizer=self.tokenizer, train=False, val=True).val
        kept = [ex for ex in val if ex.prompt not in test_prompts]
        if not kept:
            raise ConfigError("split=val: every validation prompt is a prompt of the test split evaluated now")
        return kept, len(val) - len(kept)

    def run(self, cfg: DictConfig, run_dir: Path) -> dict:
        warning = off_grid_warning(self.checkpoint["odelm"]["config"], cfg)
        if warning:
            log.warning(warning)
        device = eval_device(cfg)
        model, integrator = self.model(cfg)  # on `device`
        strategy = build_exit_strategy(cfg, model)
        data, loader = self.data_and_loader(cfg)
        split = _split(cfg)
        scorer = answer_scorer(data.task, self.tokenizer, getattr(data, split), data.layout)
        start = time.perf_counter()
        try:
            results = evaluate(model, loader, device=device, exit_strategy=strategy, scorer=scorer)
        except ValueError as err:  # a setting only the data can reveal (e.g. a lens depth off the loop grid)
            raise ConfigError(str(err)) from err
        eval_seconds = round(time.perf_counter() - start, 3)  # the evaluation pass alone, not the probe
        probe = backward_probe(model, next(iter(loader)).to(device)) if cfg.get("probe_backward") else {}
        return {
            **base_record(cfg, integrator, model.num_params()),
            "exit": strategy.describe() if strategy is not None else {"name": "none"},
            "split": split,
            **({"off_grid_warning": warning} if warning else {}),
            **({"val_dropped_test_prompts": data.report["val_dropped_test_prompts"]} if split == "val" else {}),
            **results,
            **probe,
            "flops_per_token": model.flops_per_token(results["nfe_forward"]),
            "train_steps": self.checkpoint.get("global_step"),
            "eval_seconds": eval_seconds,
            "device": str(device),
            "ckpt": self.ckpt,
            "checkpoint": self.ckpt,
            "run_dir": str(run_dir),
        }


def eval_device(cfg: DictConfig) -> torch.device:
    """`device`: auto (the first GPU when torch sees one, else the CPU), cpu, cuda or cuda:N."""
    name = cfg.get("device", "auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device={name!r} is not a device; choose auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name}: torch sees no GPU here; use device=cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device={name}: torch sees {torch.cuda.device_count()} GPU(s), numbered from 0")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={name!r}: choose auto, cpu, cuda or cuda:N")
    return device


def off_grid_warning(stored: dict, cfg: DictConfig) -> str | None:
    """A warning when a field trained on one fixed grid (a loop, or an ODE on a fixed grid without random
    discretisation) is solved any other way: such a field is a model of its grid, not a flow (measured:
    dopri5 loses 16-86 points on user tasks), so the numbers describe another model. None otherwise."""
    solver = cfg.get("solver")
    if solver is None or cfg.model.get("integrator") != "ode":
        return None
    model = stored["model"]
    if model.get("integrator") == "loop":  # a loop of T steps is Euler of step 1 over [0, T]
        grid = ("euler", 1.0, float(model.get("loops")))
        trained = f"as a loop of {model.get('loops')} steps"
    else:
        trained_solver = stored.get("solver") or {}
        drawn = ((stored.get("objective") or {}).get("depth") or {}).get("methods")
        if trained_solver.get("method") not in FIXED_GRID_METHODS or drawn:
            return None  # trained adaptively or on random grids
        grid = (trained_solver.get("method"), trained_solver.get("step_size"), trained_solver.get("t_end"))
        trained = f"on the {grid[0]} grid of step {grid[1]} over [0, {grid[2]}]"
    if (solver.method, solver.step_size, solver.t_end) == grid:
        return None
    how = (f"step {solver.step_size}" if solver.method in FIXED_GRID_METHODS  # an adaptive solve ignores the step
           else f"rtol {solver.get('rtol')}, atol {solver.get('atol')}")
    return (f"this field was trained {trained} and is solved here by {solver.method} ({how}, "
            f"t_end {solver.t_end}): a field trained on one grid is a model of that grid, not a flow, and another "
            "solve can lose most of its accuracy; train with objective=random_solver for a field any solver agrees on")


def _split(cfg: DictConfig) -> str:
    split = cfg.get("split") or "test"
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS} (val: the validation split, at task.val_difficulties or "
                          f"the trained levels), got {split!r}")
    return split


def backward_probe(model: torch.nn.Module, batch) -> dict:
    """One forward + backward of the answer cross-entropy on `batch`, the model in eval mode (no
    training-only randomisation): the NFE a training step at this setting would cost."""
    field = getattr(model, "field", None)
    model.zero_grad(set_to_none=True)
    if field is not None:
        field.nfe.reset()
    device = batch.tokens.device
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    sync()  # CUDA runs asynchronously: time the finished work, not the queueing
    start = time.perf_counter()
    with torch.enable_grad():
        out = model(batch.tokens)
        answer_cross_entropy(out.logits, batch.targets).backward()
    sync()
    seconds = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    if field is None:  # the plain transformer: one pass back through each layer
        return {"nfe_backward": out.depth.nfe_forward, "train_step_seconds": seconds}
    return {"nfe_backward": field.nfe.backward, "probe_nfe_forward": field.nfe.forward, "train_step_seconds": seconds}


def sweep_row(keys: list[str], value, record: dict) -> dict:
    row = {"key": "+".join(keys), "value": value, "accuracy": record["accuracy"]}
    row.update({f"accuracy_d{d}": a for d, a in record["accuracy_by_difficulty"].items()})
    row["nfe_forward"] = record["nfe_forward"]
    row.update({f"nfe_d{d}": v for d, v in record["nfe_forward_by_difficulty"].items()})
    row["depth"] = record.get("depth")
    for name in ("cell_accuracy", *record.get("answer_metrics", [])):  # per-position / constraint metrics
        if name in record:
            row[name] = record[name]
            row.update({f"{name}_d{d}": v for d, v in record.get(f"{name}_by_difficulty", {}).items()})
    if "nfe_backward" in record:
        row["nfe_backward"] = record["nfe_backward"]
        row["train_step_seconds"] = record["train_step_seconds"]
    row["eval_seconds"] = record["eval_seconds"]
    return row


SWEEP_SHARED_KEYS = ("status", "model", "task", "solver", "objective", "seed", "study", "arm", "params", "exit", "split",
                     "train_steps", "ckpt", "checkpoint", "run_dir")


def sweep_record(keys: list[str], values: list, rows: list[dict], records: list[dict]) -> dict:
    """The metrics.json of a sweep: every setting's record under "sweep", and at the top level only the
    settings all of them share. No setting is promoted to the top level: these are test-split numbers,
    and choosing a "best" setting on them would be selection on test (choose on validation instead)."""
    first = records[0]
    shared = {k: first[k] for k in SWEEP_SHARED_KEYS if k in first and all(r.get(k) == first[k] for r in records)}
    return {**shared, "sweep": {"keys": keys, "values": values, "rows": rows, "records": records}}


def run(given: DictConfig, run_dir: str | Path | None = None, overrides: list[str] | None = None) -> dict:
    configure_arithmetic()  # the one arithmetic of every entry point (odelm/precision.py)
    run_dir = Path(run_dir or HydraConfig.get().runtime.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if overrides is None:
        overrides = list(HydraConfig.get().overrides.task)
    checkpoint = load_checkpoint(given.ckpt)
    cfg = merged_config(checkpoint["odelm"]["config"], given, overrides)
    eval_device(cfg)  # a bad device fails before any data is built
    evaluation = _Evaluation(given, checkpoint)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)

    settings = sweep_settings(cfg)
    if settings is None:
        record = evaluation.run(cfg, run_dir)
    else:
        keys, values = settings
        rows, records = [], []
        for value in values:
            setting = copy.deepcopy(cfg)
            with open_dict(setting):
                for key in keys:
                    OmegaConf.update(setting, key, value, merge=False, force_add=True)
            one = evaluation.run(setting, run_dir)
            records.append({"value": value, **one})
            rows.append(sweep_row(keys, value, one))
        write_csv(run_dir / "sweep.csv", rows)
        record = sweep_record(keys, values, rows, records)

    lens_depths = cfg.lens.get("depths") if cfg.get("lens") is not None else None
    if lens_depths is not None:
        depths = list(lens_depths) if OmegaConf.is_list(lens_depths) else [lens_depths]
        model, _ = evaluation.model(cfg)
        try:
            lens = logit_lens(model, (b.to(eval_device(cfg)) for b in evaluation.loader(cfg)), depths)
        except ValueError as err:
            raise ConfigError(f"lens.depths={depths}: {err}") from err
        flat = [
            {"depth": r["depth"], "accuracy": r["accuracy"],
             **{f"accuracy_d{d}": a for d, a in r["accuracy_by_difficulty"].items()},
             "entropy": r["entropy"], "distance_to_final": r["distance_to_final"]}
            for r in lens
        ]
        write_csv(run_dir / "lens.csv", flat)
        record["lens"] = lens
    write_json(run_dir / "metrics.json", record)
    return record


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> float:
    return run_cli(run, cfg, EXPECTED_FAILURES)


if __name__ == "__main__":
    main()
