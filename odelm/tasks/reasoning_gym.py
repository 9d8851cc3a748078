"""reasoning-gym's procedural generators as an odelm task (the optional extra `reasoning-gym`).

    python -m odelm.train task=reasoning_gym task.params.dataset=mini_sudoku \
        task.params.levels='{1: {min_empty: 4, max_empty: 4}, 2: {min_empty: 8, max_empty: 8}}'

A difficulty level maps to keyword arguments of the dataset's config (`levels`, merged over the shared
`config`). Each example is item 0 of a dataset created with a seed drawn from the split's random
generator (48 random bits): reasoning-gym draws item i with seed + i, so consecutive seeds would share
items between datasets; independent 48-bit seeds make two splits' seeds collide with negligible
probability (identical texts from different seeds are a matter for the split's de-duplication).

The prompt is the item's question and the answer its answer, laid out as an answer suffix. Answers are
scored twice: exact match with the reference (the model's accuracy) and the dataset's own
`score_answer` (metric `rg_score`, which may give partial credit or accept equivalent answers).
Examples with characters outside `alphabet` are rejected with an error naming the dataset and seed.
"""
from __future__ import annotations

import random
import string
from typing import Any, ClassVar, Mapping

from .base import Example, Task, TaskError, is_int, short_repr, sorted_unique

INSTALL = "task=reasoning_gym needs the optional extra: pip install 'odelm[reasoning-gym]' (or pip install reasoning-gym)"
DEFAULT_ALPHABET = sorted_unique(string.digits + string.ascii_letters + string.punctuation + " \n")


def import_reasoning_gym():
    """The reasoning_gym module, or TaskError with the install command."""
    try:
        import reasoning_gym
    except ImportError as err:
        raise TaskError(f"{INSTALL} ({err})") from None
    return reasoning_gym


class ReasoningGym(Task):
    """Args:
        dataset: a reasoning-gym dataset name (e.g. mini_sudoku, maze, basic_arithmetic).
        config: dataset config arguments shared by every level (not seed or size).
        levels: {difficulty: config arguments} (e.g. {1: {min_empty: 4, max_empty: 4}}); None: one level, 1.
        alphabet: the characters prompts and answers may use (the tokenizer's vocabulary).
    """

    name: ClassVar[str] = "reasoning_gym"

    def __init__(
        self, dataset: str = "mini_sudoku", config: Mapping[str, Any] | None = None,
        levels: Mapping[Any, Mapping[str, Any]] | None = None, alphabet: str = DEFAULT_ALPHABET,
    ) -> None:
        rg = import_reasoning_gym()
        if not isinstance(dataset, str) or dataset not in rg.factory.DATASETS:
            known = ", ".join(sorted(rg.factory.DATASETS))
            raise TaskError(f"{self.name}: unknown dataset {short_repr(dataset)}; reasoning-gym has: {known}")
        if not isinstance(alphabet, str) or not alphabet:
            raise TaskError(f"{self.name}: alphabet must be a non-empty string, got {short_repr(alphabet)}")
        self.dataset = dataset
        self.config = self._mapping(config or {}, "config")
        for key in ("seed", "size"):
            if key in self.config:
                raise TaskError(f"{self.name}: config.{key} is set by odelm (one item per drawn seed); remove it")
        self.levels: dict[int, dict] = {}
        for level, overrides in (levels or {1: {}}).items():
            try:
                d = int(level)
            except (TypeError, ValueError):
                raise TaskError(f"{self.name}: levels key {short_repr(level)} is not an integer difficulty") from None
            if d < 1:
                raise TaskError(f"{self.name}: levels key {d} must be >= 1")
            self.levels[d] = {**self.config, **self._mapping(overrides or {}, f"levels.{d}")}
        self.alphabet_chars = sorted_unique(alphabet)
        self._scorers = {d: self._create(d, 0) for d in self.levels}  # bad config arguments fail here
        self._entries: dict[str, tuple[int, dict]] = {}

    def _mapping(self, value: Any, key: str) -> dict:
        if not isinstance(value, Mapping):
            raise TaskError(f"{self.name}: {key} must be a mapping of config arguments, got {short_repr(value)}")
        return dict(value)

    def _create(self, difficulty: int, seed: int):
        rg = import_reasoning_gym()
        try:
            return rg.create_dataset(self.dataset, seed=seed, size=1, **self.levels[difficulty])
        except (TypeError, ValueError, AssertionError) as err:
            raise TaskError(
                f"{self.name}: dataset {self.dataset!r} rejects difficulty {difficulty}'s config "
                f"{self.levels[difficulty]}: {err}"
            ) from None

    def describe(self) -> dict:
        return {"name": self.name, "dataset": self.dataset, "config": self.config, "levels": self.levels}

    def alphabet(self) -> str:
        return self.alphabet_chars

    def validate_difficulty(self, difficulty) -> None:
        if not is_int(difficulty) or difficulty not in self.levels:
            raise TaskError(
                f"{self.name}: difficulty {short_repr(difficulty)} is not a level of task.params.levels "
                f"(levels: {sorted(self.levels)})"
            )

    def sample(self, rng: random.Random, difficulty: int) -> Example:
        self.validate_difficulty(difficulty)
        seed = rng.getrandbits(48)
        entry = self._create(difficulty, seed)[0]
        prompt, answer = str(entry["question"]), str(entry["answer"])
        outside = sorted_unique("".join(set(prompt + answer) - set(self.alphabet_chars)))
        if outside:
            raise TaskError(
                f"{self.name}: dataset {self.dataset!r} item (seed {seed}, difficulty {difficulty}) has characters "
                f"{outside!r} outside task.params.alphabet; widen the alphabet or choose a dataset whose answers fit it"
            )
        if not answer:
            raise TaskError(f"{self.name}: dataset {self.dataset!r} item (seed {seed}) has an empty answer")
        self._entries[prompt] = (difficulty, entry)
        return Example(prompt, answer, difficulty)

    def _entry(self, prompt: str) -> tuple[int, dict]:
        found = self._entries.get(prompt)
        if found is None:
            raise TaskError(f"{self.name}: prompt {short_repr(prompt, 60)} was not generated by this task instance")
        return found

    def rg_score(self, prompt: str, answer: str) -> float:
        """The dataset's own `score_answer` of `answer` (0..1)."""
        difficulty, entry = self._entry(prompt)
        return float(self._scorers[difficulty].score_answer(answer, entry))

    def score(self, example: Example, predicted: str) -> dict[str, float]:
        return {"rg_score": self.rg_score(example.prompt, predicted)}

    def check(self, example: Example) -> bool:
        """The dataset's scorer gives the answer full marks."""
        return self.rg_score(example.prompt, example.answer) == 1.0
