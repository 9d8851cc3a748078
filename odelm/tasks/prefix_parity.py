"""Prefix parity (prefix sums mod 2) over bits; difficulty = number of bits.

The prompt is a string of bits, "0110"; the answer (per-position layout) holds at position i the
parity of bits 0..i, "0100". Every answer bit depends on all bits before it, so a model must carry
information the whole length of the string: trained on short strings, tested far longer ones
(DeepThinking's prefix-sum task). A causal model suffices; a bidirectional one can learn it too.
"""
from __future__ import annotations

import random
from typing import ClassVar

from .base import Example, Task, TaskError, short_repr

BITS = "01"


class PrefixParity(Task):
    name: ClassVar[str] = "prefix_parity"
    layout: ClassVar[str] = "per_position"

    def alphabet(self) -> str:
        return BITS

    def sample(self, rng: random.Random, difficulty: int) -> Example:
        """Random bits and their running XOR."""
        self.validate_difficulty(difficulty)
        bits = [rng.randrange(2) for _ in range(difficulty)]
        out, acc = [], 0
        for b in bits:
            acc ^= b
            out.append(str(acc))
        return Example("".join(map(str, bits)), "".join(out), difficulty)

    def parse(self, prompt: str) -> str:
        if not isinstance(prompt, str) or not prompt or set(prompt) - set(BITS):
            raise TaskError(f"{self.name}: prompt {short_repr(prompt, 40)} must be a non-empty string of bits {BITS!r}")
        return prompt

    def _reference(self, prompt: str) -> str:
        """Parity at i = number of ones in prompt[: i + 1] mod 2 (counted afresh, not a running XOR)."""
        return "".join(str(prompt[: i + 1].count("1") % 2) for i in range(len(prompt)))

    def score(self, example: Example, predicted: str) -> dict[str, float]:
        """violations = wrong (or missing) answer bits; constraint_satisfied = none."""
        reference = self._reference(self.parse(example.prompt))
        wrong = sum(1 for a, b in zip(predicted, reference) if a != b) + abs(len(predicted) - len(reference))
        return {"constraint_satisfied": float(wrong == 0), "violations": float(wrong)}

    def check(self, example: Example) -> bool:
        return example.answer == self._reference(self.parse(example.prompt))

    def validate_example(self, example: Example) -> None:
        if not self.check(example):
            raise TaskError(f"{self.name}: answer {short_repr(example.answer, 40)} is not the prefix parity of "
                            f"{short_repr(example.prompt, 40)}")
