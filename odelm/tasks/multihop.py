"""k-hop variable binding (pointer chasing): follow `c=b`, `b=a`, `a=4` from the query `c` to the digit 4."""
from __future__ import annotations

import random
import string
from typing import ClassVar

from .base import DIGITS, Example, Task, TaskError, is_int, short_repr, sorted_unique

LETTERS = string.ascii_lowercase


class Multihop(Task):
    """Resolve a query variable through exactly `difficulty` bindings.

    The prompt binds `n_vars` distinct lowercase letters, each either to a digit in
    [0, n_values) or to another variable, as comma-separated bindings in random order, then
    ";" and the query variable followed by "?": "c=b,a=4,b=a,d=7;c?" -> "4". The query's
    chain has exactly `difficulty` hops (bindings followed: c=b, b=a, a=4 is 3 hops). The
    other variables are distractors: each binds to a digit or to an earlier-built variable,
    so they form chains (possibly merging into the query's chain) that all end at digits.
    There is always at least one distractor, so difficulty <= n_vars - 1.
    """

    name: ClassVar[str] = "multihop"

    def __init__(self, n_vars: int = 8, n_values: int = 10) -> None:
        if not is_int(n_vars) or not 2 <= n_vars <= len(LETTERS):
            raise TaskError(f"{self.name}: n_vars must be an integer in [2, {len(LETTERS)}], got {short_repr(n_vars)}")
        if not is_int(n_values) or not 2 <= n_values <= len(DIGITS):
            raise TaskError(f"{self.name}: n_values must be an integer in [2, 10], got {short_repr(n_values)}")
        self.n_vars = n_vars
        self.n_values = n_values

    def validate_difficulty(self, difficulty: int) -> None:
        super().validate_difficulty(difficulty)
        if difficulty > self.n_vars - 1:
            raise TaskError(
                f"{self.name}: difficulty (hops) {difficulty} exceeds n_vars - 1 = {self.n_vars - 1} "
                f"(n_vars={self.n_vars}); lower the difficulty or raise n_vars"
            )

    def sample(self, rng: random.Random, difficulty: int) -> Example:
        """Build the query's chain with its digit, then the distractors, then shuffle the bindings."""
        self.validate_difficulty(difficulty)
        names = rng.sample(LETTERS, self.n_vars)
        chain, distractors = names[:difficulty], names[difficulty:]
        answer = DIGITS[rng.randrange(self.n_values)]
        bindings = [f"{var}={target}" for var, target in zip(chain, chain[1:] + [answer])]
        built = list(chain)
        for var in distractors:
            if rng.random() < 0.5:
                target = DIGITS[rng.randrange(self.n_values)]
            else:
                target = rng.choice(built)
            bindings.append(f"{var}={target}")
            built.append(var)
        rng.shuffle(bindings)
        return Example(prompt=",".join(bindings) + f";{chain[0]}?", answer=answer, difficulty=difficulty)

    def parse(self, prompt: str) -> tuple[dict[str, str], str]:
        """The binding map (variable -> variable or digit) and the query variable of a prompt;
        TaskError if the prompt is malformed or binds a variable twice."""
        if not isinstance(prompt, str):
            raise TaskError(f"{self.name}: prompt must be a str, got {type(prompt).__name__} {short_repr(prompt)}")
        head, sep, tail = prompt.partition(";")
        if not sep or len(tail) != 2 or tail[0] not in LETTERS or tail[1] != "?":
            raise TaskError(f"{self.name}: prompt {short_repr(prompt)} does not end with ';<variable>?'")
        values = DIGITS[: self.n_values]
        bindings: dict[str, str] = {}
        for i, binding in enumerate(head.split(",")):
            well_formed = len(binding) == 3 and binding[0] in LETTERS and binding[1] == "="
            if not well_formed or binding[2] not in LETTERS + values:
                raise TaskError(
                    f"{self.name}: prompt {short_repr(prompt)} binding {i} is {binding!r}, expected "
                    f"'<variable>=<variable or digit in [0, {self.n_values})>'"
                )
            if binding[0] in bindings:
                raise TaskError(f"{self.name}: prompt {short_repr(prompt)} binds {binding[0]!r} twice")
            bindings[binding[0]] = binding[2]
        return bindings, tail[0]

    def resolve(self, prompt: str) -> tuple[str, int] | None:
        """Chase pointers from the query: (digit reached, hops followed), or None on a cycle or an
        unbound variable."""
        bindings, current = self.parse(prompt)
        seen: set[str] = set()
        while current in LETTERS:
            if current in seen or current not in bindings:
                return None
            seen.add(current)
            current = bindings[current]
        return current, len(seen)

    def check(self, example: Example) -> bool:
        """True iff the pointer chase from the query reaches a digit equal to the answer (False on a cycle)."""
        resolved = self.resolve(example.prompt)
        return resolved is not None and example.answer == resolved[0]

    def alphabet(self) -> str:
        return sorted_unique(LETTERS + DIGITS[: self.n_values] + ",;=?")
