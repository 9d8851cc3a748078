"""Examples → padded token batches, and the Lightning data module.

A sequence is [BOS] prompt [SEP] answer [EOS]. Only the answer and EOS are supervised
(final-answer supervision): target[i] = ids[i+1] for i in answer_start-1 … len(ids)-2, else IGNORE.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from .tasks import CharTokenizer, Example

IGNORE = -100


@dataclass
class Batch:
    tokens: torch.Tensor  # (B, L) input ids, PAD on the right
    targets: torch.Tensor  # (B, L) next-token targets, IGNORE where unsupervised
    difficulty: torch.Tensor  # (B,)
    index: torch.Tensor  # (B,) position of each example in its split

    def to(self, device: torch.device) -> "Batch":
        return Batch(*(t.to(device) for t in (self.tokens, self.targets, self.difficulty, self.index)))

    def __len__(self) -> int:
        return self.tokens.shape[0]


class EncodedExamples(Dataset):
    """Examples encoded once up front, so a vocabulary problem surfaces before any training."""

    def __init__(self, examples: Sequence[Example], tokenizer: CharTokenizer, split: str) -> None:
        if not examples:
            raise ValueError(f"the {split} split has no examples")
        self.examples = list(examples)
        self.encoded = []
        for i, ex in enumerate(self.examples):
            missing = tokenizer.missing(ex.prompt + ex.answer)
            if missing:
                raise ValueError(
                    f"{split} example {i} has characters {missing!r} outside the vocabulary "
                    f"(a checkpoint can only be evaluated on text its vocabulary covers)"
                )
            self.encoded.append(tokenizer.encode_example(ex))

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> tuple[list[int], int, int, int]:
        ids, answer_start = self.encoded[i]
        return ids, answer_start, self.examples[i].difficulty, i


def collate(items: Sequence[tuple[list[int], int, int, int]]) -> Batch:
    length = max(len(ids) for ids, *_ in items) - 1  # inputs drop the last token
    tokens = torch.full((len(items), length), CharTokenizer.PAD, dtype=torch.long)
    targets = torch.full((len(items), length), IGNORE, dtype=torch.long)
    for row, (ids, answer_start, _, _) in enumerate(items):
        seq = torch.tensor(ids, dtype=torch.long)
        tokens[row, : len(ids) - 1] = seq[:-1]
        targets[row, answer_start - 1 : len(ids) - 1] = seq[answer_start:]
    difficulty = torch.tensor([d for *_, d, _ in items], dtype=torch.long)
    index = torch.tensor([i for *_, i in items], dtype=torch.long)
    return Batch(tokens, targets, difficulty, index)


class TaskDataModule(L.LightningDataModule):
    """Serves encoded train / val / test splits. The val split is a fixed slice used to watch
    progress during training; the test split is what metrics.json reports."""

    def __init__(
        self,
        tokenizer: CharTokenizer,
        train: Sequence[Example],
        val: Sequence[Example],
        test: Sequence[Example],
        batch_size: int,
        eval_batch_size: int,
        seed: int,
    ) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.train_set = EncodedExamples(train, tokenizer, "train")
        self.val_set = EncodedExamples(val, tokenizer, "val")
        self.test_set = EncodedExamples(test, tokenizer, "test")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self.train_set, batch_size=self.batch_size, shuffle=True, collate_fn=collate,
            generator=generator,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.eval_batch_size, collate_fn=collate)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=self.eval_batch_size, collate_fn=collate)
