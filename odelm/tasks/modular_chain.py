"""Left-to-right chains of +, -, * modulo p: "3+5*2" is ((3+5)*2) mod p."""
from __future__ import annotations

import operator
import random
from typing import ClassVar

from .base import Example, Task, TaskError, check_modulus, parse_residue, residue_digits, short_repr, sorted_unique

OPS = "+-*"
_EXACT = {"+": operator.add, "-": operator.sub, "*": operator.mul}


class ModularChain(Task):
    """A chain of `difficulty` operations over operands in [0, modulus), evaluated strictly left to right.

    No precedence: "3+5*2" mod 7 is ((3+5)*2) mod 7 = 2. For modulus <= 10 every operand is one
    digit and the prompt has no spaces ("3+5*2-1"); for modulus > 10 operands can have several
    digits, so every token is separated by one space ("3 + 15 * 2 - 1"). The answer is the
    result in [0, modulus) in decimal.
    """

    name: ClassVar[str] = "modular_chain"

    def __init__(self, modulus: int = 7) -> None:
        self.modulus = check_modulus(self.name, modulus)

    @property
    def _sep(self) -> str:
        return " " if self.modulus > 10 else ""

    def sample(self, rng: random.Random, difficulty: int) -> Example:
        """Build the chain and its value together, reducing mod p after every operation."""
        self.validate_difficulty(difficulty)
        p = self.modulus
        value = rng.randrange(p)
        tokens = [str(value)]
        for _ in range(difficulty):
            op, operand = rng.choice(OPS), rng.randrange(p)
            if op == "+":
                value = (value + operand) % p
            elif op == "-":
                value = (value - operand) % p
            else:
                value = (value * operand) % p
            tokens += [op, str(operand)]
        return Example(prompt=self._sep.join(tokens), answer=str(value), difficulty=difficulty)

    def n_prompts(self, difficulty: int) -> int:
        """p starting operands, then 3 operators × p operands per operation: p · (3p)^difficulty."""
        self.validate_difficulty(difficulty)
        return self.modulus * (3 * self.modulus) ** difficulty

    def parse(self, prompt: str) -> tuple[list[int], list[str]]:
        """Split a prompt into its operands and operators; TaskError if it is not a chain of this task."""
        if not isinstance(prompt, str):
            raise TaskError(f"{self.name}: prompt must be a str, got {type(prompt).__name__} {short_repr(prompt)}")
        tokens = prompt.split(" ") if self._sep else list(prompt)
        if len(tokens) % 2 == 0:
            raise TaskError(
                f"{self.name}: prompt {short_repr(prompt)} has {len(tokens)} tokens; a chain has an odd number "
                "(operand, then operator-operand pairs)"
            )
        operands, ops = [], []
        for i, token in enumerate(tokens):
            if i % 2:
                if token not in OPS:
                    raise TaskError(
                        f"{self.name}: prompt {short_repr(prompt)} token {i} is {token!r}, expected one of {OPS!r}"
                    )
                ops.append(token)
            else:
                value = parse_residue(token, self.modulus)
                if value is None:
                    raise TaskError(
                        f"{self.name}: prompt {short_repr(prompt)} token {i} is {token!r}, expected an operand "
                        f"in [0, {self.modulus})"
                    )
                operands.append(value)
        return operands, ops

    def check(self, example: Example) -> bool:
        """Re-parse the prompt, fold it left to right in exact integers, and reduce mod p once at the end.

        (+, -, * commute with reduction mod p, so this equals reducing after every step.)
        """
        operands, ops = self.parse(example.prompt)
        exact = operands[0]
        for op, operand in zip(ops, operands[1:]):
            exact = _EXACT[op](exact, operand)
        return example.answer == str(exact % self.modulus)

    def alphabet(self) -> str:
        return sorted_unique(residue_digits(self.modulus) + OPS + self._sep)
