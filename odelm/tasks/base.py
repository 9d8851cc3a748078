"""Shared types of the tasks: the example record, the error type, the task base class and `generate`."""
from __future__ import annotations

import abc
import random
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

DIGITS = "0123456789"

# How an example is laid out for the model (a task's `layout`):
#   suffix        [BOS] prompt [SEP] answer [EOS]; the answer is predicted token by token (causal models)
#   per_position  prompt and answer of equal length; the model reads the prompt and predicts answer[i] at
#                 position i, every position at once (grids, prefix sums; bidirectional or causal models)
LAYOUTS = ("suffix", "per_position")


class TaskError(ValueError):
    """Bad input to this package: a one-line message that names the offending value."""


def short_repr(value: Any, limit: int = 80) -> str:
    """`repr(value)` cut to `limit` characters, so that error messages stay one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_int(value: Any) -> bool:
    """True for a Python int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def sorted_unique(chars: str) -> str:
    """The distinct characters of `chars`, sorted."""
    return "".join(sorted(set(chars)))


def parse_residue(token: str, modulus: int) -> int | None:
    """The value of `token` if it is a canonical decimal in [0, modulus) ("7", not "07", "+7" or " 7"), else None."""
    if not token or any(c not in DIGITS for c in token) or (len(token) > 1 and token[0] == "0"):
        return None
    value = int(token)
    return value if value < modulus else None


def residue_digits(modulus: int) -> str:
    """The digits that the decimal numbers 0 .. modulus-1 use."""
    return DIGITS[: min(modulus, 10)]


def check_modulus(task_name: str, modulus: Any) -> int:
    """Validate a task's modulus: an int >= 2."""
    if not is_int(modulus) or modulus < 2:
        raise TaskError(f"{task_name}: modulus must be an integer >= 2, got {short_repr(modulus)}")
    return modulus


@dataclass(frozen=True)
class Example:
    """One prompt/answer pair; `difficulty` is the task's difficulty knob (0 where unknown, e.g. user data)."""

    prompt: str
    answer: str
    difficulty: int

    def __post_init__(self) -> None:
        for key in ("prompt", "answer"):
            value = getattr(self, key)
            if not isinstance(value, str):
                raise TaskError(f"Example.{key} must be a str, got {type(value).__name__} {short_repr(value)}")
        if not is_int(self.difficulty):
            raise TaskError(
                f"Example.difficulty must be an int, got {type(self.difficulty).__name__} {short_repr(self.difficulty)}"
            )


class Task(abc.ABC):
    """A source of examples with a difficulty knob and an answer checker.

    `sample` draws one example from the given `random.Random` (never global state), so that
    `generate` is deterministic given its seed. `check` re-derives the answer from the prompt
    alone, by a different algorithm than the one `sample` builds the answer with.
    """

    name: ClassVar[str]
    layout: ClassVar[str] = "suffix"  # one of LAYOUTS
    augments: ClassVar[bool] = False  # True: `augment` draws validity-preserving variants (training only)

    def validate_difficulty(self, difficulty: Any) -> None:
        """Raise TaskError unless `difficulty` is one this task can sample (an int >= 1 by default)."""
        if not is_int(difficulty) or difficulty < 1:
            raise TaskError(f"{self.name}: difficulty must be an integer >= 1, got {short_repr(difficulty)}")

    @abc.abstractmethod
    def sample(self, rng: random.Random, difficulty: int) -> Example:
        """Draw one example of the given difficulty, using only `rng` for randomness."""

    @abc.abstractmethod
    def check(self, example: Example) -> bool:
        """True iff `example.answer` is the correct answer to `example.prompt` (difficulty is not consulted)."""

    @abc.abstractmethod
    def alphabet(self) -> str:
        """Every character prompts and answers of this task can contain, sorted and unique."""

    def score(self, example: Example, predicted: str) -> dict[str, float]:
        """Constraint metrics of a model's `predicted` answer to `example.prompt` (any valid answer counts,
        not only the reference): e.g. {"constraint_satisfied": 0/1, "violations": n}. Empty by default."""
        return {}

    def augment(self, example: Example, rng: random.Random) -> Example:
        """A random variant of `example` that is as valid as it (tasks with `augments`); the example itself otherwise."""
        return example

    def describe(self) -> dict:
        """The settings that define this task, for metrics.json."""
        return {"name": self.name, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "name")
        return f"{type(self).__name__}({settings})"


def generate(
    task: Task,
    difficulties: Sequence[int],
    n: int,
    seed: int,
    *,
    per_difficulty: bool = False,
) -> list[Example]:
    """Generate examples deterministically from `seed` (through `random.Random(seed)` only).

    per_difficulty=False: `n` examples, each with a difficulty drawn uniformly from `difficulties`
    (a repeated value is drawn proportionally more often).
    per_difficulty=True: `n` examples for each distinct difficulty, ordered by increasing difficulty
    (for test sets; the examples of a difficulty do not depend on the higher ones listed).
    """
    if not isinstance(task, Task):
        raise TaskError(f"generate: task must be a Task instance, got {type(task).__name__} {short_repr(task)}")
    difficulties = _as_list(difficulties)
    if not difficulties:
        raise TaskError("generate: difficulties is empty; give at least one difficulty")
    for difficulty in difficulties:
        task.validate_difficulty(difficulty)
    if not is_int(n) or n < 0:
        raise TaskError(f"generate: n must be an integer >= 0, got {short_repr(n)}")
    if not is_int(seed):
        raise TaskError(f"generate: seed must be an integer, got {short_repr(seed)}")

    rng = random.Random(seed)
    if per_difficulty:
        return [task.sample(rng, d) for d in sorted(set(difficulties)) for _ in range(n)]
    return [task.sample(rng, rng.choice(difficulties)) for _ in range(n)]


def _as_list(difficulties: Any) -> list:
    """Accept any non-string iterable of difficulties (e.g. a config list); reject anything else loudly."""
    if isinstance(difficulties, (str, bytes)):
        raise TaskError(f"generate: difficulties must be a sequence of ints, got {short_repr(difficulties)}")
    try:
        return list(difficulties)
    except TypeError:
        raise TaskError(
            f"generate: difficulties must be a sequence of ints, got {type(difficulties).__name__} "
            f"{short_repr(difficulties)}"
        ) from None
