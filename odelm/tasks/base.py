"""Shared types of the tasks: the example record, the error type, the task base class and `generate`."""
from __future__ import annotations

import abc
import hashlib
import random
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

DIGITS = "0123456789"


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

    def n_prompts(self, difficulty: int) -> int | None:
        """How many distinct prompts `sample` can produce at `difficulty` (None where not known in closed
        form); lets a split that asks for more distinct prompts than exist fail at once."""
        return None

    @abc.abstractmethod
    def alphabet(self) -> str:
        """Every character prompts and answers of this task can contain, sorted and unique."""

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


def derive_seed(seed: int, *parts: Any) -> int:
    """A seed for one stream (a split, a difficulty) derived from `seed` and `parts`: a 63-bit integer
    from SHA-256, the same on every machine and Python version (unlike `hash`)."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def generate_distinct(
    task: Task,
    difficulty: int,
    n: int,
    seed: int,
    *,
    exclude: frozenset[str] | set[str] = frozenset(),
    what: str = "generate_distinct",
    max_draws: int | None = None,
) -> list[Example]:
    """`n` examples of one difficulty with pairwise distinct prompts, none of them in `exclude`.

    Draws from `random.Random(seed)` in order and keeps each new prompt, so the first k examples of
    a call with n are exactly the examples of a call with n = k (a smaller held-out set is a prefix of
    a larger one). When the difficulty cannot supply them, raises TaskError naming `what`, the task,
    the difficulty, how many distinct prompts it has and how many were asked for: at once when the
    task counts its prompts (`Task.n_prompts`) and n exceeds the count or every prompt has been
    seen, otherwise after `max_draws` draws (default 50·n + 10000).
    """
    task.validate_difficulty(difficulty)
    if not is_int(n) or n < 0:
        raise TaskError(f"{what}: n must be an integer >= 0, got {short_repr(n)}")
    total = task.n_prompts(difficulty)
    limit = max_draws if max_draws is not None else 50 * n + 10_000
    rng = random.Random(seed)
    seen: set[str] = set()
    held: set[str] = set()  # prompts drawn that are excluded
    out: list[Example] = []
    draws = 0
    while len(out) < n:
        exhausted = total is not None and (n > total or len(seen) + len(held) >= total)
        if exhausted or draws >= limit:
            if total is not None:
                has = f"it has {total} distinct prompts" + (f", {len(held)} of them held out" if held else "")
            else:
                has = f"{len(seen)} distinct prompts" + (" not held out" if exclude else "") + f" found in {draws} draws"
            raise TaskError(
                f"{what}: task {task!r} at difficulty {difficulty} cannot supply {n} distinct prompts ({has}); "
                "ask for fewer examples or make the task bigger"
            )
        ex = task.sample(rng, difficulty)
        draws += 1
        if ex.prompt in seen or ex.prompt in held:
            continue
        if ex.prompt in exclude:
            held.add(ex.prompt)
            continue
        seen.add(ex.prompt)
        out.append(ex)
    return out


def generate_excluding(
    task: Task,
    difficulties: Sequence[int],
    n: int,
    seed: int,
    exclude: frozenset[str] | set[str],
    *,
    what: str = "generate_excluding",
    max_rejections: int = 10_000,
) -> list[Example]:
    """Like `generate(task, difficulties, n, seed)` (difficulty drawn per example; duplicates allowed),
    but a drawn prompt in `exclude` is rejected and redrawn at the same difficulty. TaskError naming
    `what` and the difficulty when `max_rejections` draws in a row are all excluded (every prompt of
    that difficulty held out, or nearly so)."""
    difficulties = _as_list(difficulties)
    generate(task, difficulties, 0, seed)  # validates the arguments the same way
    if not is_int(n) or n < 0:
        raise TaskError(f"{what}: n must be an integer >= 0, got {short_repr(n)}")
    rng = random.Random(seed)
    out: list[Example] = []
    for _ in range(n):
        difficulty = rng.choice(difficulties)
        for _ in range(max_rejections):
            ex = task.sample(rng, difficulty)
            if ex.prompt not in exclude:
                out.append(ex)
                break
        else:
            total = task.n_prompts(difficulty)
            has = f" of its {total} distinct prompts" if total is not None else ""
            raise TaskError(
                f"{what}: task {task!r} at difficulty {difficulty}: {max_rejections} draws in a row were all "
                f"held out for test/validation (nearly every one{has}); hold out fewer examples of this "
                "difficulty or make the task bigger"
            )
    return out


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
