"""Config → objects. Everything is validated here, before any training or evaluation starts;
bad input raises `ConfigError` with one line that names the offending value."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from .data import Curriculum
from .depth import Integrator, Loop, RandomDepth
from .errors import ConfigError
from .model import LatentLM, ModelConfig, TransformerLM
from .objectives import TERMS, Objective
from .tasks import TASKS, CharTokenizer, Example, JsonlTask, TaskError, build_task, generate, load_jsonl

FAMILIES = ("latent", "transformer")
INTEGRATOR_NAMES = ("loop", "ode")


def _positive_int(value: Any, key: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return value


def _difficulties(value: Any, key: str) -> list[int] | None:
    if value is None:
        return None
    values = list(value) if not isinstance(value, (int, str)) else [value]
    if not values or any(isinstance(d, bool) or not isinstance(d, int) for d in values):
        raise ConfigError(f"{key} must be a non-empty list of integers, got {value!r}")
    return values


def build_integrator(cfg: DictConfig, training: bool = True) -> Integrator | None:
    """The depth integrator named by model.integrator (None for the plain transformer).

    `training=False` (evaluation, a teacher) leaves out the objective's training-only depth
    randomisation (Huginn random depth / truncated BPTT): it would act on nothing there, and its
    checks would reject depth settings that are valid to evaluate (model.loops=1). The ODE model's
    per-batch draws (STEER, random discretisation) are the objective's: see build_objective."""
    family = cfg.model.family
    if family not in FAMILIES:
        raise ConfigError(f"unknown model.family {family!r}; choose one of {FAMILIES}")
    if family == "transformer":
        return None
    name = cfg.model.integrator
    # Training-only depth randomisation of the objective recipe (inert in evaluation; absent in old runs).
    depth = (OmegaConf.select(cfg, "objective.depth", default=None) or {}) if training else {}
    try:
        if name == "loop":
            return Loop(cfg.model.loops, random_depth=bool(depth.get("random_depth", False)),
                        bptt_steps=depth.get("bptt_steps"))
        if name == "ode":
            return hydra.utils.instantiate(cfg.solver)  # STEER etc. reach it per call (Objective.plan)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    except Exception as err:  # Hydra wraps constructor errors in InstantiationException
        cause = err.__cause__ if isinstance(err.__cause__, ValueError) else None
        if cause is not None:
            raise ConfigError(str(cause)) from err
        raise
    raise ConfigError(f"unknown model.integrator {name!r}; choose one of {INTEGRATOR_NAMES}")


def build_model(cfg: DictConfig, vocab_size: int, integrator: Integrator | None):
    m = cfg.model
    try:
        config = ModelConfig(
            vocab_size=vocab_size, d_model=m.d_model, n_heads=m.n_heads, mlp_ratio=float(m.mlp_ratio),
            n_prelude=m.n_prelude, n_coda=m.n_coda, field_blocks=m.field_blocks, injection=m.injection,
            depth_conditioned=bool(m.depth_conditioned), exit_gate=bool(m.exit_gate),
            step_conditioned=bool(m.get("step_conditioned", False)),
            n_layers=m.n_layers,
        )
        if m.family == "transformer":
            return TransformerLM(config)
        return LatentLM(config, integrator)
    except ValueError as err:
        raise ConfigError(str(err)) from err


def build_objective(cfg: DictConfig) -> Objective:
    terms = OmegaConf.to_container(cfg.objective.terms, resolve=True)
    if not isinstance(terms, dict) or not terms:
        raise ConfigError(f"objective.terms must map term names to weights, got {terms!r}")
    unknown = [name for name in terms if name not in TERMS]
    if unknown:
        raise ConfigError(f"unknown objective term(s) {unknown}; choose from {sorted(TERMS)}")
    options = cfg.objective.get("options")
    options = OmegaConf.to_container(options, resolve=True) if options is not None else {}
    depth = cfg.objective.get("depth")
    depth = OmegaConf.to_container(depth, resolve=True) if depth is not None else {}
    try:
        random_depth = RandomDepth(steer_b=depth.get("steer_b", 0.0) or 0.0, methods=depth.get("methods") or (),
                                   steps=depth.get("steps"))
    except ValueError as err:
        raise ConfigError(str(err)) from err
    try:
        built = {name: (TERMS[name](**options.get(name, {})), weight) for name, weight in terms.items()}
        return Objective(built, depth=random_depth if random_depth.active else None)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"objective: {err}") from err


def build_teacher(cfg: DictConfig, tokenizer: CharTokenizer) -> LatentLM | None:
    """The trained checkpoint named by objective.teacher (None when unset), frozen, in eval mode.

    It must be a latent (looped or ODE) odelm checkpoint trained on the same vocabulary."""
    path = OmegaConf.select(cfg, "objective.teacher", default=None)
    if path is None:
        return None
    path = str(path)
    if not os.path.isfile(path):
        raise ConfigError(f"objective.teacher {path!r} is not a file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a truncated or foreign file
        raise ConfigError(f"objective.teacher {path!r} could not be loaded: {err}") from err
    if not isinstance(checkpoint, dict) or "odelm" not in checkpoint or "state_dict" not in checkpoint:
        raise ConfigError(f"objective.teacher {path!r} is not an odelm training checkpoint (no 'odelm' metadata)")
    meta = checkpoint["odelm"]
    if CharTokenizer.from_dict(meta["tokenizer"]).to_dict() != tokenizer.to_dict():
        raise ConfigError(f"objective.teacher {path!r} was trained on another vocabulary than task {cfg.task.name!r}")
    teacher_cfg = OmegaConf.create(meta["config"])
    if teacher_cfg.model.family != "latent":
        raise ConfigError(f"objective.teacher {path!r} must be a latent (looped or ODE) model, "
                          f"got family {teacher_cfg.model.family!r}")
    teacher = build_model(teacher_cfg, tokenizer.vocab_size, build_integrator(teacher_cfg, training=False))
    state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    teacher.load_state_dict(state)
    teacher.eval().requires_grad_(False)
    return teacher


def copy_from_teacher(model: torch.nn.Module, teacher: LatentLM, field: bool) -> list[str]:
    """Copies the teacher's embedding, prelude, coda, norm and head into `model` (the hidden space
    the distillation targets live in), and with `field` its vector field too; returns the copied
    names. Parameters only one side has (e.g. an exit gate) are left as they are."""
    if not isinstance(model, LatentLM):
        raise ConfigError("objective.teacher initialises a latent student: use model=looped or model=ode")
    own = model.state_dict()
    copied = []
    for name, value in teacher.state_dict().items():
        if name not in own or (name.startswith("field.") and not field):
            continue
        if own[name].shape != value.shape:
            raise ConfigError(f"objective.teacher: parameter {name} has shape {tuple(value.shape)} in the teacher, "
                              f"{tuple(own[name].shape)} in the student (match model.d_model, n_heads, ...)")
        own[name] = value.clone()
        copied.append(name)
    model.load_state_dict(own)
    return copied


def prepare_objective(cfg: DictConfig, objective: Objective, model: torch.nn.Module,
                      teacher: LatentLM | None) -> None:
    """Training-time wiring of the objective: teacher initialisation and attachment, each term's
    checks and set-up on the model (RNODE states, frozen parameters), depth-randomisation checks."""
    o = cfg.objective
    depth = o.get("depth") or {}
    integrator = cfg.model.get("integrator")
    if depth.get("steer_b") and integrator != "ode":
        raise ConfigError(f"objective.depth.steer_b={depth.steer_b} (STEER random end time) needs model=ode")
    if depth.get("methods") and integrator != "ode":
        raise ConfigError(f"objective.depth.methods={list(depth.methods)} (random discretisation) needs model=ode")
    if (depth.get("random_depth") or depth.get("bptt_steps") is not None) and integrator != "loop":
        raise ConfigError("objective.depth.random_depth / bptt_steps (Huginn) need model=looped")
    needs = objective.needs_teacher
    if needs and teacher is None:
        raise ConfigError(f"objective term(s) {needs} need objective.teacher=PATH (a trained looped checkpoint)")
    init = bool(o.get("init_from_teacher", False))
    if init and teacher is None:
        raise ConfigError("objective.init_from_teacher=true needs objective.teacher=PATH")
    if teacher is not None and (needs or init):
        copy_from_teacher(model, teacher, field=init)
    try:
        if needs:
            objective.attach_teacher(teacher)
        objective.prepare(model)
    except ValueError as err:
        raise ConfigError(f"objective: {err}") from err


@dataclass
class TaskData:
    name: str
    tokenizer: CharTokenizer
    train: list[Example]
    val: list[Example]
    test: list[Example]


def _select(examples: list[Example], difficulties: list[int] | None, split: str, source: str) -> list[Example]:
    if difficulties is None:
        return examples
    chosen = [ex for ex in examples if ex.difficulty in set(difficulties)]
    if not chosen:
        present = sorted({ex.difficulty for ex in examples})
        raise ConfigError(f"{split} difficulties {difficulties} select no examples of {source} (it has {present})")
    return chosen


def _val_slice(examples: list[Example], per_difficulty: int) -> list[Example]:
    seen: dict[int, int] = {}
    out = []
    for ex in examples:
        if seen.get(ex.difficulty, 0) < per_difficulty:
            seen[ex.difficulty] = seen.get(ex.difficulty, 0) + 1
            out.append(ex)
    return out


def build_data(cfg: DictConfig, seed: int, tokenizer: CharTokenizer | None = None, train: bool = True) -> TaskData:
    """The train / val / test examples and the tokenizer (built from the task unless given, as
    when a checkpoint is evaluated). With train=False, only the test split is built."""
    t = cfg.task
    name = t.name
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    train_d = _difficulties(t.get("train_difficulties"), "task.train_difficulties")
    test_d = _difficulties(t.get("test_difficulties"), "task.test_difficulties")
    n_val = _positive_int(cfg.data.n_val_per_difficulty, "data.n_val_per_difficulty")
    try:
        if name == "jsonl":
            for key in ("train", "test") if train else ("test",):
                if OmegaConf.is_missing(t, key) or not t[key]:
                    raise ConfigError(f"task=jsonl needs task.{key}=FILE (a JSONL file of prompt/answer lines)")
            if train:
                source = JsonlTask(train=str(t.train), test=str(t.test))
                train_ex, test_ex = source.train_examples, source.test_examples
                alphabet = source.alphabet()
            else:
                train_ex, test_ex, alphabet = [], load_jsonl(str(t.test)), ""
            train_ex = _select(train_ex, train_d, "train", str(t.get("train"))) if train else []
            test_ex = _select(test_ex, test_d, "test", str(t.test))
            val_ex = _val_slice(test_ex, n_val)
        else:
            task = build_task(name, **OmegaConf.to_container(t.params, resolve=True))
            if train_d is None or test_d is None:
                raise ConfigError(f"task {name} needs task.train_difficulties and task.test_difficulties")
            n_train = _positive_int(t.n_train, "task.n_train")
            n_test = _positive_int(t.n_test_per_difficulty, "task.n_test_per_difficulty")
            train_ex = generate(task, train_d, n_train, seed) if train else []
            test_ex = generate(task, test_d, n_test, t.test_seed, per_difficulty=True)
            val_ex = generate(task, train_d, n_val, t.test_seed + 1, per_difficulty=True)
            alphabet = task.alphabet()
    except TaskError as err:
        raise ConfigError(str(err)) from err
    if tokenizer is None:
        tokenizer = CharTokenizer(alphabet)
    return TaskData(name=name, tokenizer=tokenizer, train=train_ex, val=val_ex, test=test_ex)


def check_training_config(cfg: DictConfig) -> None:
    """Values the Lightning side consumes, checked up front."""
    budget = cfg.get("budget")  # a study's budgets per scale (conf/experiment/)
    if budget is not None and cfg.get("scale") not in budget:
        raise ConfigError(f"scale={cfg.get('scale')!r} is not a budget of study {cfg.get('study')!r}; "
                          f"choose one of {list(budget)}")
    _positive_int(cfg.trainer.max_steps, "trainer.max_steps")
    _positive_int(cfg.trainer.val_check_interval, "trainer.val_check_interval")
    _positive_int(cfg.trainer.checkpoint_every_n_steps, "trainer.checkpoint_every_n_steps")
    _positive_int(cfg.data.batch_size, "data.batch_size")
    _positive_int(cfg.data.eval_batch_size, "data.eval_batch_size")
    _positive_int(cfg.optim.warmup_steps, "optim.warmup_steps", minimum=0)
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int):
        raise ConfigError(f"seed must be an integer, got {cfg.seed!r}")
    lr = cfg.optim.lr
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0:
        raise ConfigError(f"optim.lr must be > 0, got {lr!r}")
    target = cfg.get("target_accuracy")
    if target is not None and (not isinstance(target, (int, float)) or not 0 < target <= 1):
        raise ConfigError(f"target_accuracy must be in (0, 1], got {target!r}")
    if cfg.ckpt_path is not None:
        if not os.path.isfile(str(cfg.ckpt_path)):
            raise ConfigError(f"ckpt_path {cfg.ckpt_path!r} is not a file")


def build_curriculum(cfg: DictConfig, train: list[Example]) -> Curriculum | None:
    """The difficulty curriculum over the training split's difficulties (None when disabled or
    when the data has a single difficulty)."""
    c = cfg.data.get("curriculum")
    if not c or not c.get("enabled", False):
        return None
    levels = sorted({ex.difficulty for ex in train})
    if len(levels) < 2:
        return None
    try:
        return Curriculum(levels, threshold=float(c.threshold), newest_share=float(c.newest_share))
    except ValueError as err:
        raise ConfigError(str(err)) from err
