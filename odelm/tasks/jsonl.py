"""Users' own data: JSONL files of {"prompt": str, "answer": str, "difficulty": int (optional)}."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any, ClassVar

from .base import Example, Task, TaskError, is_int, short_repr, sorted_unique

_REQUIRED = ("prompt", "answer")


def _expand(path: Any, what: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TaskError(f"{what} must be a path (str or os.PathLike), got {type(path).__name__} {short_repr(path)}")
    return Path(path).expanduser()


def _parse_line(path: Path, lineno: int, line: str) -> Example:
    where = f"{path}:{lineno}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise TaskError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(record, dict):
        raise TaskError(f"{where}: expected a JSON object, got {type(record).__name__} {short_repr(record)}")
    for key in _REQUIRED:
        if key not in record:
            raise TaskError(f"{where}: missing required key {key!r} (keys present: {sorted(record)})")
        if not isinstance(record[key], str):
            raise TaskError(
                f"{where}: key {key!r} must be a string, got {type(record[key]).__name__} {short_repr(record[key])}"
            )
    if not record["answer"]:
        raise TaskError(f"{where}: key 'answer' is an empty string; every example needs a non-empty answer")
    difficulty = record.get("difficulty", 0)
    if not is_int(difficulty) or difficulty < 0:
        raise TaskError(
            f"{where}: key 'difficulty' must be an integer >= 0, "
            f"got {type(difficulty).__name__} {short_repr(difficulty)}"
        )
    return Example(prompt=record["prompt"], answer=record["answer"], difficulty=difficulty)


def load_jsonl(path: str | os.PathLike) -> list[Example]:
    """Read one example per line: {"prompt": str, "answer": str, "difficulty": int >= 0 (default 0)}.

    `~` is expanded, blank lines are skipped and extra keys are ignored. Anything else that is
    wrong (missing, unreadable or empty file, bad JSON, bad keys or values) raises TaskError
    naming the path and, where it applies, the 1-based line number.
    """
    path = _expand(path, "load_jsonl: path")
    if not path.exists():
        raise TaskError(f"{path}: JSONL file does not exist")
    if path.is_dir():
        raise TaskError(f"{path}: is a directory, expected a JSONL file")
    try:
        with open(path, "rb") as f:
            raw_lines = f.read().split(b"\n")
    except OSError as e:
        raise TaskError(f"{path}: cannot read JSONL file ({e.strerror or e})") from None
    examples = []
    for lineno, raw in enumerate(raw_lines, start=1):
        try:
            line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise TaskError(f"{path}:{lineno}: not valid UTF-8 (byte {e.start + 1} of the line)") from None
        if line.strip():
            examples.append(_parse_line(path, lineno, line))
    if not examples:
        raise TaskError(f"{path}: no examples (the file is empty or has only blank lines)")
    return examples


def save_jsonl(path: str | os.PathLike, examples) -> None:
    """Write `examples` one per line in the format `load_jsonl` reads (prompt, answer, difficulty)."""
    Path(path).write_text("".join(json.dumps({"prompt": e.prompt, "answer": e.answer, "difficulty": e.difficulty})
                                  + "\n" for e in examples))


class JsonlTask(Task):
    """A fixed train/test split read from two JSONL files (see `load_jsonl`), and optionally a
    validation file; not generative.

    Every file is loaded at construction, so bad data fails before any training. `check`
    compares an answer with the reference answer(s) of its prompt in the loaded data. How the
    files become disjoint training / validation / test splits is `odelm.build.build_data`'s job.
    """

    name: ClassVar[str] = "jsonl"

    def __init__(self, train: str, test: str, val: str | None = None) -> None:
        self.train = str(_expand(train, f"{self.name}: train"))
        self.test = str(_expand(test, f"{self.name}: test"))
        self.val = str(_expand(val, f"{self.name}: val")) if val is not None else None
        self.train_examples = load_jsonl(self.train)
        self.test_examples = load_jsonl(self.test)
        self.val_examples = load_jsonl(self.val) if self.val is not None else []
        everything = self.train_examples + self.val_examples + self.test_examples
        self._answers: dict[str, set[str]] = {}
        for ex in everything:
            self._answers.setdefault(ex.prompt, set()).add(ex.answer)
        self._alphabet = sorted_unique("".join(ex.prompt + ex.answer for ex in everything))

    def validate_difficulty(self, difficulty: int) -> None:
        raise TaskError(self._not_generative())

    def sample(self, rng: random.Random, difficulty: int) -> Example:
        raise TaskError(self._not_generative())

    def _not_generative(self) -> str:
        return (
            f"{self.name}: task is not generative (it reads {self.train} and {self.test}); "
            "use .train_examples / .test_examples instead of sample() or generate()"
        )

    def check(self, example: Example) -> bool:
        """True iff `example.answer` is a reference answer of `example.prompt` in the train, val or test file
        (a prompt listed more than once may have several accepted answers)."""
        answers = self._answers.get(example.prompt)
        if answers is None:
            raise TaskError(
                f"{self.name}: prompt {short_repr(example.prompt)} is in neither {self.train} nor {self.test}"
                + (f" nor {self.val}" if self.val is not None else "")
            )
        return example.answer in answers

    def alphabet(self) -> str:
        return self._alphabet

    def describe(self) -> dict:
        return {
            "name": self.name,
            "train": self.train,
            "test": self.test,
            "n_train": len(self.train_examples),
            "n_test": len(self.test_examples),
            **({"val": self.val, "n_val": len(self.val_examples)} if self.val is not None else {}),
        }
