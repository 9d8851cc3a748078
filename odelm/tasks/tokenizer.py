"""A character-level tokenizer with four special ids (PAD, BOS, SEP, EOS)."""
from __future__ import annotations

import operator
from typing import Any, Iterable, Mapping, Sequence

from .base import Example, TaskError, short_repr


class CharTokenizer:
    """Maps each character of a fixed vocabulary to an id; special ids come first.

    Ids 0..3 are PAD, BOS, SEP, EOS; the characters get ids 4.. in sorted order.
    `chars` is a string, or an iterable of strings whose characters are all added
    (e.g. `CharTokenizer(ex.prompt + ex.answer for ex in examples)`); duplicates are dropped.
    """

    PAD, BOS, SEP, EOS = 0, 1, 2, 3
    N_SPECIAL = 4

    def __init__(self, chars: str | Iterable[str]) -> None:
        if isinstance(chars, str):
            pieces: Iterable[Any] = [chars]
        else:
            try:
                pieces = list(chars)
            except TypeError:
                raise TaskError(
                    f"CharTokenizer: chars must be a str or an iterable of str, got {type(chars).__name__} "
                    f"{short_repr(chars)}"
                ) from None
        vocab: set[str] = set()
        for i, piece in enumerate(pieces):
            if not isinstance(piece, str):
                raise TaskError(
                    f"CharTokenizer: chars element {i} is a {type(piece).__name__} {short_repr(piece)}, expected a str"
                )
            vocab.update(piece)
        if not vocab:
            raise TaskError("CharTokenizer: chars is empty; the vocabulary needs at least one character")
        self._chars = "".join(sorted(vocab))
        self._id = {c: i + self.N_SPECIAL for i, c in enumerate(self._chars)}

    @property
    def chars(self) -> str:
        """The vocabulary characters, sorted; the character with id i is `chars[i - 4]`."""
        return self._chars

    @property
    def vocab_size(self) -> int:
        """Number of ids: the special ids plus one per character."""
        return self.N_SPECIAL + len(self._chars)

    def missing(self, text: str) -> str:
        """The sorted unique characters of `text` that are not in the vocabulary."""
        return "".join(sorted(set(text) - self._id.keys()))

    def encode(self, text: str) -> list[int]:
        """The ids of the characters of `text` (no special ids added)."""
        if not isinstance(text, str):
            raise TaskError(f"CharTokenizer.encode: text must be a str, got {type(text).__name__} {short_repr(text)}")
        try:
            return [self._id[c] for c in text]
        except KeyError:
            unknown = ", ".join(repr(c) for c in self.missing(text))
            raise TaskError(
                f"CharTokenizer.encode: {short_repr(text)} contains characters not in the vocabulary: {unknown} "
                f"(vocabulary: {short_repr(self._chars)})"
            ) from None

    def decode(self, ids: Sequence[int]) -> str:
        """The characters of `ids`; special ids are skipped, ids outside [0, vocab_size) are an error."""
        out = []
        for pos, raw in enumerate(ids):
            try:
                i = operator.index(raw)
            except TypeError:
                raise TaskError(
                    f"CharTokenizer.decode: id at position {pos} is {type(raw).__name__} {short_repr(raw)}, "
                    "expected an integer"
                ) from None
            if not 0 <= i < self.vocab_size:
                raise TaskError(
                    f"CharTokenizer.decode: id {i} at position {pos} is outside [0, vocab_size={self.vocab_size})"
                )
            if i >= self.N_SPECIAL:
                out.append(self._chars[i - self.N_SPECIAL])
        return "".join(out)

    def encode_example(self, ex: Example) -> tuple[list[int], int]:
        """Lay out one example for training: `[BOS] + prompt + [SEP] + answer + [EOS]`.

        Returns (ids, answer_start), answer_start = len(prompt) + 2 being the index of the first
        answer token. The model predicts ids[i] from position i-1, so the targets at positions
        answer_start-1 .. len(ids)-2 are the answer tokens followed by EOS.
        """
        prompt, answer = self.encode(ex.prompt), self.encode(ex.answer)
        ids = [self.BOS, *prompt, self.SEP, *answer, self.EOS]
        return ids, len(prompt) + 2

    def encode_per_position(self, ex: Example) -> tuple[list[int], list[int]]:
        """Lay out one example of a per-position task: (prompt ids, answer ids), of equal length, no special
        ids; the model reads the prompt and predicts answer[i] at position i."""
        prompt, answer = self.encode(ex.prompt), self.encode(ex.answer)
        if len(prompt) != len(answer):
            raise TaskError(
                f"per-position example {short_repr(ex.prompt, 40)}: prompt has {len(prompt)} characters and answer "
                f"{len(answer)}; a per-position answer has one character per prompt character"
            )
        return prompt, answer

    def to_dict(self) -> dict:
        """A JSON-serialisable description; `from_dict(to_dict())` gives an equal tokenizer."""
        return {"chars": self._chars}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CharTokenizer:
        """Rebuild a tokenizer from `to_dict()` output."""
        if not isinstance(d, Mapping):
            raise TaskError(f"CharTokenizer.from_dict: expected a mapping, got {type(d).__name__} {short_repr(d)}")
        if set(d) != {"chars"}:
            raise TaskError(
                f"CharTokenizer.from_dict: expected exactly the key 'chars', got keys {sorted(map(str, d))}"
            )
        chars = d["chars"]
        if not isinstance(chars, str):
            raise TaskError(
                f"CharTokenizer.from_dict: 'chars' must be a str, got {type(chars).__name__} {short_repr(chars)}"
            )
        return cls(chars)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CharTokenizer):
            return NotImplemented
        return self._chars == other._chars

    def __hash__(self) -> int:
        return hash(self._chars)

    def __repr__(self) -> str:
        return f"CharTokenizer(chars={self._chars!r})"
