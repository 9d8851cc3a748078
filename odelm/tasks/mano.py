"""Mano (Ouro / LoopLM): evaluate a random prefix-notation expression tree over +, -, * modulo p."""
from __future__ import annotations

import math
import random
from typing import ClassVar

from .base import Example, Task, TaskError, check_modulus, parse_residue, residue_digits, short_repr, sorted_unique

OPS = "+-*"


class Mano(Task):
    """A random binary expression tree with `difficulty` operators and `difficulty + 1` leaves.

    The prompt is the tree in prefix (Polish) notation, tokens separated by single spaces:
    "+ * 3 14 5" is (3*14)+5. Leaves are integers in [0, modulus); the answer is the value of
    the tree mod `modulus`, in decimal.
    """

    name: ClassVar[str] = "mano"

    def __init__(self, modulus: int = 23) -> None:
        self.modulus = check_modulus(self.name, modulus)

    def sample(self, rng: random.Random, difficulty: int) -> Example:
        """Grow the tree top-down (splitting the operator budget between the two subtrees at random),
        then evaluate it bottom-up over its child links."""
        self.validate_difficulty(difficulty)
        p = self.modulus
        tokens: list[str] = []  # the nodes in prefix order
        children: list[list[int]] = []  # node index -> [left child, right child], [] for a leaf
        values: list[int] = []  # node index -> value (leaves now, operators in the sweep below)
        pending = [(difficulty, -1)]  # (operator budget of a subtree, parent node index)
        while pending:
            budget, parent = pending.pop()
            index = len(tokens)
            if parent >= 0:
                children[parent].append(index)
            children.append([])
            if budget == 0:
                values.append(rng.randrange(p))
                tokens.append(str(values[index]))
            else:
                values.append(0)
                tokens.append(rng.choice(OPS))
                left_budget = rng.randrange(budget)
                # Push the right subtree first so that the left one is emitted next (prefix order).
                pending.append((budget - 1 - left_budget, index))
                pending.append((left_budget, index))
        # Children come after their parent in prefix order, so a reverse sweep sees them first.
        for index in reversed(range(len(tokens))):
            if children[index]:
                left, right = (values[c] for c in children[index])
                if tokens[index] == "+":
                    values[index] = (left + right) % p
                elif tokens[index] == "-":
                    values[index] = (left - right) % p
                else:
                    values[index] = (left * right) % p
        return Example(prompt=" ".join(tokens), answer=str(values[0]), difficulty=difficulty)

    def n_prompts(self, difficulty: int) -> int:
        """Catalan(k) tree shapes with k operators, 3 choices per operator, p per leaf (k + 1 leaves);
        every shape is reachable (the operator budget is split at random)."""
        self.validate_difficulty(difficulty)
        k = difficulty
        return math.comb(2 * k, k) // (k + 1) * 3**k * self.modulus ** (k + 1)

    def parse(self, prompt: str) -> list[str | int]:
        """The prompt's tokens (operators as str, leaves as int); TaskError if they are not well-formed
        prefix notation of this task."""
        if not isinstance(prompt, str):
            raise TaskError(f"{self.name}: prompt must be a str, got {type(prompt).__name__} {short_repr(prompt)}")
        tokens: list[str | int] = []
        need = 1  # operands still required to complete the expression
        for i, token in enumerate(prompt.split(" ")):
            if need == 0:
                raise TaskError(f"{self.name}: prompt {short_repr(prompt)} has extra tokens from token {i} ({token!r})")
            if token in OPS:
                tokens.append(token)
                need += 1
            else:
                value = parse_residue(token, self.modulus)
                if value is None:
                    raise TaskError(
                        f"{self.name}: prompt {short_repr(prompt)} token {i} is {token!r}, expected one of "
                        f"{OPS!r} or a leaf in [0, {self.modulus}) (tokens are separated by single spaces)"
                    )
                tokens.append(value)
                need -= 1
        if need:
            raise TaskError(f"{self.name}: prompt {short_repr(prompt)} is incomplete: {need} operand(s) missing")
        return tokens

    def check(self, example: Example) -> bool:
        """Scan the parsed tokens right to left with an explicit stack: push leaves, and for an operator
        pop its left then right operand and push the result."""
        p = self.modulus
        stack: list[int] = []
        for token in reversed(self.parse(example.prompt)):
            if isinstance(token, int):
                stack.append(token)
                continue
            left, right = stack.pop(), stack.pop()
            if token == "+":
                stack.append((left + right) % p)
            elif token == "-":
                stack.append((left - right) % p)
            else:
                stack.append((left * right) % p)
        (value,) = stack
        return example.answer == str(value)

    def alphabet(self) -> str:
        return sorted_unique(residue_digits(self.modulus) + OPS + " ")
