"""Pointer chasing to a terminal: follow indices through a table until a letter is reached.

"4a1jb0c2dc:7" -> read slot 7 ("2"), slot 2 ("1"), slot 1 ("a"): the answer is "a" (3 reads).
"""
from __future__ import annotations

import random
import string
from typing import ClassVar

from .base import DIGITS, Example, Task, TaskError, is_int, short_repr, sorted_unique

LETTERS = string.ascii_lowercase


class PointerChase(Task):
    """A table of `n_slots` symbols, then ":" and a start slot; the answer is the letter the chain ends on.

    Slot i holds either a digit (a pointer: go to that slot) or a letter (a terminal: the answer).
    Starting from the given slot, the chain reads exactly `difficulty` slots, all distinct, the last
    a letter. Every other slot holds a random letter or a random pointer, so distractor chains exist
    and a pointer may lead into the query's chain, but never out of it (the chain is fixed by the
    table). Reading a slot is one lookup by position: followed one read per step, the answer takes
    `difficulty` steps; composed in parallel (every slot learns where two, then four reads lead:
    pointer doubling) it takes about log2(difficulty). Either way the depth grows with the
    difficulty, and a state that stays put once it holds a letter is a fixed point, so harder levels
    test integrating longer.

    The number of distinct prompts is astronomically larger than any split (about (n_slots +
    n_letters)^(n_slots - difficulty) per chain), so disjoint splits cost nothing.
    """

    name: ClassVar[str] = "pointer_chase"

    def __init__(self, n_slots: int = 10, n_letters: int = 10) -> None:
        if not is_int(n_slots) or not 2 <= n_slots <= len(DIGITS):
            raise TaskError(f"{self.name}: n_slots must be an integer in [2, 10], got {short_repr(n_slots)}")
        if not is_int(n_letters) or not 2 <= n_letters <= len(LETTERS):
            raise TaskError(f"{self.name}: n_letters must be an integer in [2, {len(LETTERS)}], got {short_repr(n_letters)}")
        self.n_slots = n_slots
        self.n_letters = n_letters

    def validate_difficulty(self, difficulty: int) -> None:
        super().validate_difficulty(difficulty)
        if difficulty > self.n_slots:
            raise TaskError(
                f"{self.name}: difficulty (reads) {difficulty} exceeds n_slots = {self.n_slots}; "
                "a chain visits each slot at most once"
            )

    def sample(self, rng: random.Random, difficulty: int) -> Example:
        """Place the chain on `difficulty` distinct slots, end it on a letter, fill the rest at random."""
        self.validate_difficulty(difficulty)
        letters = LETTERS[: self.n_letters]
        chain = rng.sample(range(self.n_slots), difficulty)
        table: list[str | None] = [None] * self.n_slots
        for here, there in zip(chain, chain[1:]):
            table[here] = DIGITS[there]
        answer = rng.choice(letters)
        table[chain[-1]] = answer
        for i, symbol in enumerate(table):
            if symbol is None:
                table[i] = rng.choice(letters) if rng.random() < 0.5 else DIGITS[rng.randrange(self.n_slots)]
        return Example(prompt="".join(table) + ":" + DIGITS[chain[0]], answer=answer, difficulty=difficulty)

    def parse(self, prompt: str) -> tuple[str, int]:
        """The table and the start slot of a prompt; TaskError if it is not a prompt of this task."""
        if not isinstance(prompt, str):
            raise TaskError(f"{self.name}: prompt must be a str, got {type(prompt).__name__} {short_repr(prompt)}")
        table, sep, start = prompt.partition(":")
        if not sep or len(table) != self.n_slots or len(start) != 1 or start not in DIGITS[: self.n_slots]:
            raise TaskError(
                f"{self.name}: prompt {short_repr(prompt)} is not '<{self.n_slots} slots>:<start slot in "
                f"[0, {self.n_slots})>'"
            )
        allowed = DIGITS[: self.n_slots] + LETTERS[: self.n_letters]
        for i, symbol in enumerate(table):
            if symbol not in allowed:
                raise TaskError(
                    f"{self.name}: prompt {short_repr(prompt)} slot {i} is {symbol!r}, expected a pointer in "
                    f"[0, {self.n_slots}) or one of the letters {LETTERS[: self.n_letters]!r}"
                )
        return table, int(start)

    def walk(self, prompt: str) -> tuple[str | None, int | None]:
        """(letter reached, slots read) following the table from the start slot; (None, None) if the
        chain cycles before reaching a letter."""
        table, slot = self.parse(prompt)
        seen: set[int] = set()
        while slot not in seen:
            seen.add(slot)
            if table[slot] in LETTERS:
                return table[slot], len(seen)
            slot = int(table[slot])
        return None, None

    def reads(self, prompt: str) -> int | None:
        """How many slots the chain of `prompt` reads before a letter; None if it cycles."""
        return self.walk(prompt)[1]

    def check(self, example: Example) -> bool:
        """Walk the table from the start slot (a cycle never checks) and compare the letter reached."""
        letter, _ = self.walk(example.prompt)
        return letter is not None and example.answer == letter

    def alphabet(self) -> str:
        return sorted_unique(DIGITS[: self.n_slots] + LETTERS[: self.n_letters] + ":")
