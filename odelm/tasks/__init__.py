"""Synthetic reasoning tasks with a difficulty knob, users' JSONL data, and a character tokenizer.

Pure Python (no torch). `TASKS` maps a config name to a class; `build_task` builds one by name:

    task = build_task("mano", modulus=23)
    train = generate(task, difficulties=[1, 2, 3], n=10_000, seed=0)
    test = generate(task, difficulties=[1, 2, 3, 4, 5, 6], n=200, seed=1, per_difficulty=True)
    tokenizer = CharTokenizer(task.alphabet())
"""
from __future__ import annotations

import inspect
from typing import Any

from .base import (LAYOUTS, Example, Task, TaskError, derive_seed, generate, generate_distinct,
                   generate_excluding, short_repr)
from .jsonl import JsonlTask, load_jsonl, save_jsonl
from .mano import Mano
from .maze import Maze
from .modular_chain import ModularChain
from .multihop import Multihop
from .pointer_chase import PointerChase
from .prefix_parity import PrefixParity
from .reasoning_gym import ReasoningGym
from .sudoku import Sudoku
from .tokenizer import CharTokenizer

TASKS: dict[str, type[Task]] = {
    cls.name: cls for cls in (ModularChain, Mano, Multihop, PointerChase, JsonlTask, Sudoku, Maze, PrefixParity, ReasoningGym)
}


def build_task(name: str, **kwargs: Any) -> Task:
    """Instantiate the task registered under `name` in `TASKS` with `kwargs`."""
    if not isinstance(name, str) or name not in TASKS:
        raise TaskError(f"unknown task {short_repr(name)}; known tasks: {', '.join(sorted(TASKS))}")
    cls = TASKS[name]
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as e:
        accepted = ", ".join(inspect.signature(cls).parameters) or "none"
        raise TaskError(f"task {name!r}: {e} (accepted arguments: {accepted})") from None
    return cls(**kwargs)


__all__ = [
    "LAYOUTS",
    "TASKS",
    "CharTokenizer",
    "Example",
    "JsonlTask",
    "Mano",
    "Maze",
    "ModularChain",
    "Multihop",
    "PointerChase",
    "PrefixParity",
    "ReasoningGym",
    "Sudoku",
    "Task",
    "TaskError",
    "build_task",
    "derive_seed",
    "generate",
    "generate_distinct",
    "generate_excluding",
    "load_jsonl",
    "save_jsonl",
]
