"""Config → objects. Everything is validated here, before any training or evaluation starts;
bad input raises `ConfigError` with one line that names the offending value."""
from __future__ import annotations

import logging
import math
import os
import random
from dataclasses import dataclass, field
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from .data import Curriculum
from .depth import Integrator, Loop, RandomDepth
from .errors import ConfigError
from .model import LatentLM, ModelConfig, TransformerLM
from .objectives import TERMS, Objective
from .tasks import (
    LAYOUTS, TASKS, CharTokenizer, Example, JsonlTask, Task, TaskError, build_task, derive_seed, generate_distinct,
    generate_excluding, load_jsonl,
)

log = logging.getLogger(__name__)

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
                        bptt_steps=depth.get("bptt_steps"), state_noise=depth.get("state_noise") or 0.0)
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


# Keys whose default changes behaviour, with the behaviour a config from before the key had: a stored
# config without one (a checkpoint's) is built as it was trained, never with today's default.
BEFORE_THE_KEY = {("model", "window_padding"): "none"}


def build_model(cfg: DictConfig, vocab_size: int, integrator: Integrator | None):
    m = cfg.model
    if m.get("pos_embedding", "none") == "auto" or (m.get("pos_embedding") == "learned" and m.get("max_len") is None):
        raise ConfigError(f"model.pos_embedding={m.pos_embedding} is resolved from the data (odelm.train and "
                          "odelm.eval call build.resolve_positions); set model.pos_embedding=none|learned and, for "
                          "learned, model.max_len=N when building a model by hand")
    try:
        config = ModelConfig(
            vocab_size=vocab_size, d_model=m.d_model, n_heads=m.n_heads, mlp_ratio=float(m.mlp_ratio),
            n_prelude=m.n_prelude, n_coda=m.n_coda, field_blocks=m.field_blocks, injection=m.injection,
            depth_conditioned=bool(m.depth_conditioned), exit_gate=bool(m.exit_gate),
            step_conditioned=bool(m.get("step_conditioned", False)),
            n_layers=m.n_layers, causal=m.get("causal", True), pos_embedding=m.get("pos_embedding", "none"),
            rotary=bool(m.get("rotary", True)), max_len=m.get("max_len"), row_end_id=m.get("row_end_id"),
            attn_window=m.get("attn_window"),
            window_padding=m.get("window_padding", BEFORE_THE_KEY[("model", "window_padding")]),
            dropout=m.get("dropout", 0.0), attn_score=m.get("attn_score", "softmax"),
            state_decay=m.get("state_decay", 0.0),
        )
        if m.family == "transformer":
            return TransformerLM(config)
        return LatentLM(config, integrator)
    except ValueError as err:
        raise ConfigError(str(err)) from err


POS_EMBEDDING_CHOICES = ("auto", "learned", "none")


def _input_length(tokenizer: CharTokenizer, ex: Example, layout: str) -> int:
    """Tokens the model reads for `ex`: the prompt alone (per-position), or BOS prompt SEP answer
    without its final token (answer suffix under teacher forcing)."""
    if layout == "per_position":
        return len(ex.prompt)
    return len(tokenizer.encode_example(ex)[0]) - 1


def resolve_positions(cfg: DictConfig, data: "TaskData", tokenizer: CharTokenizer,
                      splits: tuple[str, ...] = ("train", "val", "test")) -> None:
    """Fix the model's position scheme from the data, before the model is built; writes into `cfg`,
    so the run's config.yaml and checkpoints carry the resolved values.

    model.pos_embedding=auto (the default) becomes `learned` when no test input is longer than the
    longest training input (or validation input at a trained level), and `none` (rotary positions
    only) when the test split, or validation at another level, asks for longer inputs than were
    trained: a learned row for a position never seen in training is untrained, so length
    generalisation needs relative positions. With `learned`, a null
    model.max_len becomes the longest input of `splits`; a given one that is too short fails here.
    """
    m = cfg.model
    row_end = m.get("row_end")
    if row_end is not None:  # 2-D rotary positions for grid text: the row-end character's token id
        if not isinstance(row_end, str) or len(row_end) != 1 or tokenizer.missing(row_end):
            raise ConfigError(f"model.row_end must be one character of the task's alphabet (the one that ends "
                              f"every grid row, e.g. '|' for task=maze), got {row_end!r}")
        with open_dict(cfg):
            m.row_end_id = tokenizer.encode(row_end)[0]
    choice = m.get("pos_embedding", "none")
    if choice not in POS_EMBEDDING_CHOICES:
        raise ConfigError(f"unknown model.pos_embedding {choice!r}; choose one of {POS_EMBEDDING_CHOICES}")

    def _longest(examples) -> int:
        return max((_input_length(tokenizer, ex, data.layout) for ex in examples), default=0)

    longest = {name: _longest(getattr(data, name)) for name in splits}
    if choice == "auto":
        # validation at a trained level counts as trained; at another level (task.val_difficulties) it asks
        # for lengths as the test split does
        levels = {ex.difficulty for ex in data.train}
        val = data.val if "val" in splits else []
        trained = max(longest.get("train", 0), _longest(ex for ex in val if ex.difficulty in levels))
        asked = max(longest.get("test", 0), _longest(ex for ex in val if ex.difficulty not in levels))
        choice = "learned" if asked <= trained else "none"
        log.info("model.pos_embedding=auto -> %s (longest input: trained %d, test/validation %d tokens)", choice,
                 trained, asked)
        with open_dict(cfg):
            m.pos_embedding = choice
    if choice != "learned":
        return
    need = max(longest.values(), default=1)
    if m.get("max_len") is None:
        with open_dict(cfg):
            m.max_len = need
    elif isinstance(m.max_len, int) and not isinstance(m.max_len, bool) and m.max_len < need:
        raise ConfigError(f"model.max_len={m.max_len} is shorter than the longest input of the data "
                          f"({need} tokens); raise it or leave it null (the data's longest)")


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
    if depth.get("state_noise") and integrator != "loop":
        raise ConfigError(f"objective.depth.state_noise={depth.state_noise} (noise on the loop's state) needs "
                          "model=looped")
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
    """The splits of a task. `report`: what was done to keep them disjoint, for metrics.json —
    split_overlap_dropped {"train": n, "val": n} (examples dropped because their prompt is in the test
    split, or for training in the validation split; JSONL only: generated splits are drawn disjoint),
    test_duplicate_prompts (test examples whose prompt repeats an earlier test example; kept)."""

    name: str
    tokenizer: CharTokenizer
    train: list[Example]
    val: list[Example]
    test: list[Example]
    report: dict = field(default_factory=dict)
    layout: str = "suffix"  # the task's layout (odelm.tasks.LAYOUTS)
    task: Task | None = None  # scores answers (constraint metrics) and augments training data; None: neither


def _select(examples: list[Example], difficulties: list[int] | None, split: str, source: str) -> list[Example]:
    if difficulties is None:
        return examples
    chosen = [ex for ex in examples if ex.difficulty in set(difficulties)]
    if not chosen:
        present = sorted({ex.difficulty for ex in examples})
        raise ConfigError(f"{split} difficulties {difficulties} select no examples of {source} (it has {present})")
    return chosen


def _require_levels(examples: list[Example], difficulties: list[int] | None, what: str) -> None:
    """Every requested level is present: a validation level without examples would silently never be
    judged (and a curriculum waiting on it would never advance)."""
    present = {ex.difficulty for ex in examples}
    missing = [d for d in (difficulties or []) if d not in present]
    if missing:
        raise ConfigError(f"{what} has no examples of difficulty {missing} (it has {sorted(present)}); "
                          "give them or drop them from task.val_difficulties")


def _val_holdout(examples: list[Example], per_difficulty: int, seed: int, source: str,
                 trained: list[int] | None = None) -> list[Example]:
    """The validation slice held back from the training file: per difficulty, `per_difficulty` distinct
    prompts chosen by a seeded shuffle (each with its first example). A trained difficulty (`trained`;
    None: every one) that would be left without training prompts is an error; one that is only
    validated on gives up to `per_difficulty`."""
    by_level: dict[int, dict[str, Example]] = {}
    for ex in examples:
        by_level.setdefault(ex.difficulty, {}).setdefault(ex.prompt, ex)
    out = []
    for d, first in sorted(by_level.items()):
        prompts = list(first)
        if (trained is None or d in trained) and len(prompts) <= per_difficulty:
            raise ConfigError(
                f"task.train {source}: difficulty {d} has {len(prompts)} distinct prompts outside the test file; "
                f"holding back data.n_val_per_difficulty={per_difficulty} for validation would leave none to train "
                "on: lower data.n_val_per_difficulty or give a validation file task.val=FILE"
            )
        random.Random(derive_seed(seed, "val", d)).shuffle(prompts)
        out += [first[p] for p in prompts[:per_difficulty]]
    return out


def _jsonl_splits(cfg: DictConfig, train: bool, val: bool, train_d, test_d, val_d, n_val: int):
    t = cfg.task
    need = ("train", "test") if train or (val and not t.get("val")) else ("test",)
    for key in need:
        if OmegaConf.is_missing(t, key) or not t[key]:
            raise ConfigError(f"task=jsonl needs task.{key}=FILE (a JSONL file of prompt/answer lines)")
    val_file = str(t.val) if t.get("val") else None
    if "train" in need:
        source = JsonlTask(train=str(t.train), test=str(t.test), val=val_file if val else None)
        test_all, train_all, alphabet = source.test_examples, source.train_examples, source.alphabet()
        val_all = source.val_examples
    else:
        test_all, train_all, alphabet = load_jsonl(str(t.test)), [], ""
        val_all = load_jsonl(val_file) if val and val_file else []
    # user grid data is validated by its checker (size, alphabet, solvability) before anything else
    checked = _layout_and_scorer(cfg, None, {"train": train_all, "val": val_all, "test": test_all})
    test_prompts = {ex.prompt for ex in test_all}  # every test prompt, selected or not, is held out
    report = {"split_overlap_dropped": {"train": 0, "val": 0},
              "test_duplicate_prompts": len(test_all) - len(test_prompts)}
    test_ex = _select(test_all, test_d, "test", str(t.test))
    val_ex: list[Example] = []
    if val:
        if val_file:
            chosen = _select(val_all, val_d, "val", val_file)
            val_ex = [ex for ex in chosen if ex.prompt not in test_prompts]
            report["split_overlap_dropped"]["val"] = len(chosen) - len(val_ex)
            if not val_ex:
                raise ConfigError(f"task.val {val_file}: every validation prompt occurs in the test file {t.test}")
        else:
            candidates = [ex for ex in _select(train_all, val_d, "train", str(t.train))
                          if ex.prompt not in test_prompts]
            val_ex = _val_holdout(candidates, n_val, int(t.test_seed), str(t.train), train_d)
        if t.get("val_difficulties") is not None:  # asked for by name: each must be there
            _require_levels(val_ex, val_d, f"validation ({val_file or 'held back from task.train ' + str(t.train)})")
    train_ex: list[Example] = []
    if train:
        chosen = _select(train_all, train_d, "train", str(t.train))
        held = test_prompts | {ex.prompt for ex in val_ex}
        train_ex = [ex for ex in chosen if ex.prompt not in held]
        report["split_overlap_dropped"]["train"] = len(chosen) - len(train_ex)
        if not train_ex:
            raise ConfigError(f"task.train {t.train}: every training prompt occurs in the test file {t.test}"
                              + (f" or the validation file {val_file}" if val_file else ""))
    return train_ex, val_ex, test_ex, alphabet, report, checked


def _generated_splits(cfg: DictConfig, seed: int, train: bool, val: bool, train_d, test_d, val_d, n_val: int):
    """Test: per difficulty its own stream (task.test_seed, difficulty), distinct prompts, so a smaller
    task.n_test_per_difficulty is a prefix of a larger one. Validation: per validation difficulty (the
    trained ones unless task.val_difficulties) its own stream, distinct prompts, none in test.
    Training: drawn from the run's seed, rejecting every test and validation prompt (duplicates
    within training allowed), by the task built with task.params updated by task.train_params (a
    training distribution of its own; validation and test keep task.params)."""
    t = cfg.task
    name = t.name
    params = OmegaConf.to_container(t.params, resolve=True)
    task = build_task(name, **params)
    train_params = _train_params(t)
    train_task = task
    if train_params:
        try:
            train_task = build_task(name, **{**params, **train_params})
        except TaskError as err:
            raise ConfigError(f"task.train_params={train_params}: {err}") from None
        extra = sorted(set(train_task.alphabet()) - set(task.alphabet()))  # (the layout is the task class's)
        if extra:
            raise ConfigError(f"task.train_params={train_params} changes the task's alphabet (adds "
                              f"{''.join(extra)!r}): the vocabulary comes from task.params, so training may only "
                              "change how examples are drawn, not what they are written with")
    if train_d is None or test_d is None:
        raise ConfigError(f"task {name} needs task.train_difficulties and task.test_difficulties")
    n_test = _positive_int(t.n_test_per_difficulty, "task.n_test_per_difficulty")
    test_seed = t.test_seed
    if isinstance(test_seed, bool) or not isinstance(test_seed, int):
        raise ConfigError(f"task.test_seed must be an integer, got {test_seed!r}")
    for d in dict.fromkeys([*test_d, *train_d, *val_d]):
        task.validate_difficulty(d)
    test_ex = [ex for d in sorted(set(test_d)) for ex in generate_distinct(
        task, d, n_test, derive_seed(test_seed, "test", d),
        what=f"task {name}: the test split (task.n_test_per_difficulty={n_test})")]
    held = {ex.prompt for ex in test_ex}
    val_ex: list[Example] = []
    if val or train:
        val_ex = [ex for d in sorted(set(val_d)) for ex in generate_distinct(
            task, d, n_val, derive_seed(test_seed, "val", d), exclude=held,
            what=f"task {name}: the validation split (data.n_val_per_difficulty={n_val}, beside the test split)")]
    train_ex: list[Example] = []
    if train:
        n_train = _positive_int(t.n_train, "task.n_train")
        held |= {ex.prompt for ex in val_ex}
        train_ex = generate_excluding(train_task, train_d, n_train, seed, held, what=f"task {name}: the training split")
    report = {"split_overlap_dropped": {"train": 0, "val": 0}, "test_duplicate_prompts": 0}
    return train_ex, val_ex, test_ex, task.alphabet(), report, _layout_and_scorer(cfg, task, {})


def _train_params(t: DictConfig) -> dict:
    """task.train_params: a mapping of task.params keys whose values hold for the training split only."""
    given = t.get("train_params")
    if given is None:
        return {}
    if not isinstance(given, DictConfig):
        raise ConfigError(f"task.train_params must be a mapping of task.params keys, got {given!r}")
    return OmegaConf.to_container(given, resolve=True)


def build_data(cfg: DictConfig, seed: int, tokenizer: CharTokenizer | None = None, train: bool = True,
               val: bool | None = None) -> TaskData:
    """The train / val / test examples and the tokenizer (built from the task unless given, as
    when a checkpoint is evaluated). With train=False, the training split is not built; `val`
    (default: as `train`) builds the validation split.

    The splits are disjoint in prompts: no test prompt is in training or validation, and no
    validation prompt in training. Validation never comes from the test data (JSONL: task.val=FILE,
    else a held-back slice of the training file). Every number of examples dropped to keep them
    disjoint is logged and returned in `report`."""
    t = cfg.task
    name = t.name
    val = train if val is None else val
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    train_d = _difficulties(t.get("train_difficulties"), "task.train_difficulties")
    test_d = _difficulties(t.get("test_difficulties"), "task.test_difficulties")
    val_d = _difficulties(t.get("val_difficulties"), "task.val_difficulties") or train_d
    n_val = _positive_int(cfg.data.n_val_per_difficulty, "data.n_val_per_difficulty")
    train_params = _train_params(t)
    if name == "jsonl" and train_params:
        raise ConfigError(f"task.train_params={train_params} is for generated tasks; a JSONL task's "
                          "training distribution is its training file")
    try:
        if name == "jsonl":
            splits = _jsonl_splits(cfg, train, val, train_d, test_d, val_d, n_val)
        else:
            splits = _generated_splits(cfg, seed, train, val, train_d, test_d, val_d, n_val)
    except TaskError as err:
        raise ConfigError(str(err)) from err
    train_ex, val_ex, test_ex, alphabet, report, (layout, scorer) = splits
    dropped = report["split_overlap_dropped"]
    if name == "jsonl" and (dropped["train"] or dropped["val"] or report["test_duplicate_prompts"]):
        log.info("task %s: dropped %d training and %d validation examples whose prompt is in the test split "
                 "(training: or in validation); %d test examples repeat an earlier test prompt (kept)",
                 name, dropped["train"], dropped["val"], report["test_duplicate_prompts"])
    if tokenizer is None:
        tokenizer = CharTokenizer(alphabet)
    return TaskData(name=name, tokenizer=tokenizer, train=train_ex, val=val_ex, test=test_ex, layout=layout,
                    task=scorer, report=report)


def _layout_and_scorer(cfg: DictConfig, task: Task | None, splits: dict[str, list[Example]]) -> tuple[str, Task | None]:
    """A generated task declares its layout (task.layout may only repeat it). JSONL data takes task.layout
    (default suffix) and, with task.checker=NAME, a generated task's checker (built with task.params) that
    validates every example before training (size, alphabet, solvability) and scores answers."""
    t = cfg.task
    given = t.get("layout")
    if given is not None and given not in LAYOUTS:
        raise ConfigError(f"unknown task.layout {given!r}; choose one of {LAYOUTS}")
    if task is not None:
        if given is not None and given != task.layout:
            raise ConfigError(f"task.layout={given} contradicts task {task.name!r}, whose layout is {task.layout!r}")
        return task.layout, task
    layout = given or "suffix"
    checker = t.get("checker")
    if checker is None:
        return layout, None
    if checker == "jsonl" or checker not in TASKS:
        raise ConfigError(f"unknown task.checker {checker!r}; choose a generated task: "
                          f"{sorted(n for n in TASKS if n != 'jsonl')}")
    try:
        scorer = build_task(checker, **OmegaConf.to_container(t.params, resolve=True))
    except TaskError as err:
        raise ConfigError(f"task.checker={checker}: {err}") from err
    if scorer.layout != layout:
        raise ConfigError(f"task.checker={checker} needs task.layout={scorer.layout}, got {layout}")
    validate = getattr(scorer, "validate_example", None)
    for split, examples in splits.items():
        for i, ex in enumerate(examples):
            try:
                if validate is not None:
                    validate(ex)
                elif not scorer.check(ex):
                    raise TaskError("the answer does not solve the prompt")
            except TaskError as err:
                raise ConfigError(f"task.{split} file {t.get(split)}, example {i + 1}: {err}") from err
    return layout, scorer


def check_task_model(cfg: DictConfig, layout: str) -> None:
    """A bidirectional model reads the whole sequence at once: with an answer suffix under teacher forcing
    it would see the answer it is asked for, so it needs a per-position task."""
    if not cfg.model.get("causal", True) and layout != "per_position":
        raise ConfigError(f"model.causal=false needs a per-position task (task layout per_position); task "
                          f"{cfg.task.name!r} has layout {layout!r}, whose answer a bidirectional model would see")


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
    schedule = cfg.optim.get("schedule", "steps")
    if schedule not in ("steps", "time"):
        raise ConfigError(f"optim.schedule must be steps or time, got {schedule!r}")
    if schedule == "time" and not cfg.trainer.get("max_time_minutes") and cfg.trainer.get("max_time") is None:
        raise ConfigError("optim.schedule=time runs the cosine over the wall-clock cap: set trainer.max_time_minutes "
                          "(or trainer.max_time)")
    grad_ema = cfg.optim.get("grad_ema")
    if grad_ema is not None:
        if not isinstance(grad_ema, DictConfig) or set(grad_ema) != {"alpha", "gain"}:
            raise ConfigError(f"optim.grad_ema must be null or {{alpha: A, gain: G}}, got {grad_ema!r}")
        alpha, gain = grad_ema.get("alpha"), grad_ema.get("gain")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha < 1:
            raise ConfigError(f"optim.grad_ema.alpha must be a number in [0, 1), got {alpha!r}")
        if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not 0 <= gain < math.inf:
            raise ConfigError(f"optim.grad_ema.gain must be a finite number >= 0, got {gain!r}")
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int):
        raise ConfigError(f"seed must be an integer, got {cfg.seed!r}")
    if cfg.model.get("dropout") and cfg.model.get("integrator") == "ode" and cfg.model.get("family") == "latent":
        from .depth import ADAPTIVE_METHODS

        drawn = OmegaConf.select(cfg, "objective.depth.methods", default=None)
        methods = list(drawn) if drawn is not None else [cfg.solver.method]
        adaptive = [m for m in methods if m in ADAPTIVE_METHODS]
        if adaptive:
            raise ConfigError(f"model.dropout={cfg.model.dropout} draws a new mask at every field evaluation, so an "
                              f"adaptive solver ({', '.join(adaptive)}) would compare stages of different fields and "
                              "fail its error control: train on a fixed grid (solver=euler_grid) or set model.dropout=0")
        if cfg.solver.get("adjoint"):
            raise ConfigError(f"model.dropout={cfg.model.dropout} with solver.adjoint=true: the adjoint's backward "
                              "solve re-evaluates the field with new masks, so its gradient would belong to other "
                              "fields than the forward pass; back-propagate through the solver (solver.adjoint=false)")
    lr = cfg.optim.lr
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0:
        raise ConfigError(f"optim.lr must be > 0, got {lr!r}")
    target = cfg.get("target_accuracy")
    if target is not None and (not isinstance(target, (int, float)) or not 0 < target <= 1):
        raise ConfigError(f"target_accuracy must be in (0, 1], got {target!r}")
    if cfg.ckpt_path is not None:
        if not os.path.isfile(str(cfg.ckpt_path)):
            raise ConfigError(f"ckpt_path {cfg.ckpt_path!r} is not a file")


def build_curriculum(cfg: DictConfig, train: list[Example], val: list[Example]) -> Curriculum | None:
    """The difficulty curriculum over the training split's difficulties (None when disabled or
    when the data has a single difficulty). Its gate reads validation accuracy per level, so the
    validation split must have every level (else that level could never unlock the next)."""
    c = cfg.data.get("curriculum")
    if not c or not c.get("enabled", False):
        return None
    levels = sorted({ex.difficulty for ex in train})
    if len(levels) < 2:
        return None
    missing = [d for d in levels if d not in {ex.difficulty for ex in val}]
    if missing:
        raise ConfigError(f"data.curriculum.enabled=true (the default): the validation split has no examples of training "
                          f"difficulties {missing} (the curriculum unlocks a level by its validation accuracy); "
                          "give every trained difficulty validation examples (task.val_difficulties must include "
                          "them) or set data.curriculum.enabled=false")
    try:
        return Curriculum(levels, threshold=float(c.threshold), newest_share=float(c.newest_share),
                          patience=c.get("patience"), min_delta=c.get("min_delta", 0.02))
    except ValueError as err:
        raise ConfigError(str(err)) from err
