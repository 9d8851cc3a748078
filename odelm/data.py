"""Examples → padded token batches, and the Lightning data module.

Two layouts (a task's `layout`):
- suffix: a sequence is [BOS] prompt [SEP] answer [EOS]. Only the answer and EOS are supervised
  (final-answer supervision): target[i] = ids[i+1] for i in answer_start-1 … len(ids)-2, else IGNORE.
- per_position: the input is the prompt alone and target[i] = answer[i] at every prompt position
  (the whole answer at once, no teacher forcing); padding is IGNORE.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator, Sequence

import lightning as L
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from .errors import ConfigError
from .tasks import LAYOUTS, CharTokenizer, Example, Task, TaskError

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
    """Examples encoded once up front, so a vocabulary problem surfaces before any training.

    Items: (ids, answer_start, difficulty, index) in the suffix layout; (prompt ids, answer ids,
    difficulty, index) in the per_position layout; `collate` is the matching collate function.
    `augment` (training only): a task whose `augments` is true draws a validity-preserving variant of
    the example at every access. Accessed as `dataset[(i, draw_id)]` (what TrainBatchSampler yields
    with `tag_draws`), the variant is seeded by (seed, draw_id): reproducible, and restored exactly when
    a run resumes; a plain `dataset[i]` draws from a generator seeded with `seed`.
    """

    def __init__(
        self, examples: Sequence[Example], tokenizer: CharTokenizer, split: str, layout: str = "suffix",
        augment: Task | None = None, seed: int = 0,
    ) -> None:
        if not examples:
            raise ConfigError(f"the {split} split has no examples")
        if layout not in LAYOUTS:
            raise ConfigError(f"unknown task layout {layout!r}; choose one of {LAYOUTS}")
        self.examples = list(examples)
        self.tokenizer, self.layout = tokenizer, layout
        self.collate = collate if layout == "suffix" else collate_per_position
        self.augment = augment if augment is not None and augment.augments else None
        self.seed = seed
        self._rng = random.Random(seed)
        self.encoded = []
        for i, ex in enumerate(self.examples):
            missing = tokenizer.missing(ex.prompt + ex.answer)
            if missing:
                raise ConfigError(
                    f"{split} example {i} has characters {missing!r} outside the vocabulary "
                    f"(a checkpoint can only be evaluated on text its vocabulary covers)"
                )
            try:
                self.encoded.append(self._encode(ex))
            except TaskError as err:
                raise ConfigError(f"{split} example {i}: {err}") from err

    def _encode(self, ex: Example) -> tuple[list[int], int | list[int]]:
        if self.layout == "per_position":
            return self.tokenizer.encode_per_position(ex)
        return self.tokenizer.encode_example(ex)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[list[int], int | list[int], int, int]:
        i, draw = key if isinstance(key, tuple) else (key, None)
        if self.augment is not None:
            rng = self._rng if draw is None else random.Random(f"{self.seed}-{draw}")
            ids, answer = self._encode(self.augment.augment(self.examples[i], rng))
        else:
            ids, answer = self.encoded[i]
        return ids, answer, self.examples[i].difficulty, i


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


def collate_per_position(items: Sequence[tuple[list[int], list[int], int, int]]) -> Batch:
    """Per-position items (prompt ids, answer ids, difficulty, index) → tokens = prompt, targets = answer,
    padded on the right with PAD / IGNORE."""
    length = max(len(ids) for ids, *_ in items)
    tokens = torch.full((len(items), length), CharTokenizer.PAD, dtype=torch.long)
    targets = torch.full((len(items), length), IGNORE, dtype=torch.long)
    for row, (ids, answer, _, _) in enumerate(items):
        tokens[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        targets[row, : len(answer)] = torch.tensor(answer, dtype=torch.long)
    difficulty = torch.tensor([d for *_, d, _ in items], dtype=torch.long)
    index = torch.tensor([i for *_, i in items], dtype=torch.long)
    return Batch(tokens, targets, difficulty, index)


class Curriculum:
    """Accuracy-gated difficulty curriculum.

    Training starts on the easiest difficulty; each validation that finds the newest unlocked
    difficulty at >= `threshold` accuracy unlocks the next. Until every level is unlocked, a
    `newest_share` of each batch comes from the newest level and the rest uniformly from all
    unlocked levels (so earlier levels are rehearsed).

    With `patience` = k the curriculum cannot stall: a level whose validation accuracy has not
    improved on its best by at least `min_delta` for k validations in a row is unlocked past
    (recorded in `forced`). A level that is still improving keeps its place, so a slow but steady
    learner is not pushed on early; since accuracy is bounded by 1, a level waits at most
    k * (1 + ceil(1 / min_delta)) validations. None: wait for the threshold forever (a level the
    model cannot learn then stalls the curriculum for good).
    """

    def __init__(self, difficulties: Sequence[int], threshold: float = 0.9, newest_share: float = 0.5,
                 patience: int | None = None, min_delta: float = 0.02) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"data.curriculum.threshold must be in (0, 1], got {threshold!r}")
        if not 0 <= newest_share <= 1:
            raise ValueError(f"data.curriculum.newest_share must be in [0, 1], got {newest_share!r}")
        if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
            raise ValueError(f"data.curriculum.patience must be an integer >= 1 or null, got {patience!r}")
        if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float)) or not 0 < min_delta <= 1:
            raise ValueError(f"data.curriculum.min_delta must be in (0, 1] (progress that resets the patience), "
                             f"got {min_delta!r}")
        self.levels = sorted(set(difficulties))
        self.threshold = threshold
        self.newest_share = newest_share
        self.patience = patience
        self.min_delta = float(min_delta)
        self.unlocked = 1
        self.waited = 0  # validations since the newest level last improved by min_delta
        self.best = 0.0  # the newest level's best validation accuracy so far
        self.forced: list[int] = []  # levels unlocked past by patience, not by accuracy

    @property
    def level(self) -> int:
        """The hardest difficulty currently trained on."""
        return self.levels[self.unlocked - 1]

    def update(self, accuracy_by_difficulty: dict[str, float]) -> bool:
        """Unlocks the next level if the newest one is learned, or has gone `patience` validations
        without improving by `min_delta`; True if it did. The validation results must include the
        newest level (a missing level would never unlock: an error)."""
        if self.unlocked >= len(self.levels):
            return False
        if str(self.level) not in accuracy_by_difficulty:
            raise ValueError(f"curriculum: validation has no examples of difficulty {self.level} "
                             f"(it has {sorted(accuracy_by_difficulty)}); the level could never unlock the next")
        accuracy = accuracy_by_difficulty[str(self.level)]
        learned = accuracy >= self.threshold
        if accuracy >= self.best + self.min_delta:
            self.best, self.waited = accuracy, 0
        else:
            self.waited += 1
        if learned or (self.patience is not None and self.waited >= self.patience):
            if not learned:
                self.forced.append(self.level)
            self.unlocked += 1
            self.waited, self.best = 0, 0.0
            return True
        return False

    def state_dict(self) -> dict:
        return {"unlocked": self.unlocked, "waited": self.waited, "best": self.best, "forced": list(self.forced)}

    def load_state_dict(self, state: dict) -> None:
        self.unlocked = int(state["unlocked"])
        self.waited = int(state.get("waited", 0))  # checkpoints written before patience existed
        self.best = float(state.get("best", 0.0))
        self.forced = [int(d) for d in state.get("forced", [])]


class TrainBatchSampler(BatchSampler):
    """Seeded training batches, sharded over processes, with an exactly restorable state.

    Every process draws the same *global* batch of `batch_size × num_replicas` indices from the same
    seeded generator and keeps its own contiguous slice, so DDP over N processes sees exactly the
    batch one process would see with N × batch_size (gradients agree; a test checks it), and every
    rank follows the same curriculum. `batch_size` is per process.

    Without a curriculum, each epoch is a seeded permutation of the split (every example once per
    epoch). With one, examples are drawn from the levels it has unlocked (read at every draw, so an
    unlock takes effect at the next batch drawn). `len` is one pass over the data.

    `state_before(k)` is the generator state before the k-th batch was drawn (counted over the whole
    run): a checkpoint stores the state before the next batch to train, so a resumed run draws the
    same batches as an uninterrupted one, whatever the data loader prefetched. Batches the loader had
    drawn ahead were drawn at the curriculum level of that moment (before a later validation could
    unlock the next level); the state records those levels and a resumed run replays them.
    """

    HISTORY = 16  # batches of look-ahead a loader may have drawn before a checkpoint is written

    def __init__(self, difficulties: Sequence[int], batch_size: int, seed: int,
                 curriculum: Curriculum | None = None) -> None:
        # not BatchSampler.__init__: there is no inner sampler; Lightning must not replace this one
        self.by_level: dict[int, list[int]] = {}
        for i, d in enumerate(difficulties):
            self.by_level.setdefault(d, []).append(i)
        if curriculum is not None:
            missing = [d for d in curriculum.levels if d not in self.by_level]
            if missing:
                raise ValueError(f"curriculum levels {missing} have no training examples")
        self.n = len(difficulties)
        self.curriculum = curriculum
        self.batch_size = batch_size
        self.drop_last = True
        self.rank, self.num_replicas = 0, 1
        self.rng = random.Random(seed)
        # yield (index, draw id) pairs instead of indices; the draw id (position in the run's stream of
        # drawn examples, the same on every process) seeds a per-draw augmentation, so augmented
        # batches are restored exactly on resume and do not depend on the number of processes
        self.tag_draws = False
        self.perm: list[int] = []
        self.pos = 0
        self.drawn = 0  # batches drawn so far over the whole run
        self._history: dict[int, dict] = {}
        self._unlocked_at: dict[int, int] = {}  # batch → curriculum levels unlocked when it was drawn
        self._replay: dict[int, int] = {}  # the same, restored from a checkpoint for the batches to re-draw

    def set_distributed(self, rank: int, num_replicas: int) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1}")
        self.rank, self.num_replicas = rank, num_replicas

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.num_replicas

    def __len__(self) -> int:
        return max(1, self.n // self.global_batch)

    def _draw_curriculum(self) -> int:
        c = self.curriculum
        n_unlocked = self._replay.get(self.drawn, c.unlocked)
        unlocked = c.levels[:n_unlocked]
        if n_unlocked < len(c.levels) and self.rng.random() < c.newest_share:
            level = unlocked[-1]
        else:
            level = self.rng.choice(unlocked)
        return self.rng.choice(self.by_level[level])

    def _draw_shuffled(self) -> int:
        if self.pos >= len(self.perm):
            self.perm = list(range(self.n))
            self.rng.shuffle(self.perm)
            self.pos = 0
        self.pos += 1
        return self.perm[self.pos - 1]

    def _state(self) -> dict:
        return {"rng": self.rng.getstate(), "perm": self.perm, "pos": self.pos, "drawn": self.drawn}

    def next_batch(self) -> list[int]:
        """This process's slice of the next global batch."""
        self._history[self.drawn] = self._state()
        self._history.pop(self.drawn - self.HISTORY, None)
        self._unlocked_at.pop(self.drawn - self.HISTORY, None)
        draw = self._draw_curriculum if self.curriculum is not None else self._draw_shuffled
        if self.curriculum is not None:
            self._unlocked_at[self.drawn] = self._replay.get(self.drawn, self.curriculum.unlocked)
        batch = [draw() for _ in range(self.global_batch)]
        lo = self.rank * self.batch_size
        if self.tag_draws:  # (index, draw id): the draw id seeds the example's augmentation
            batch = [(i, self.drawn * self.global_batch + j) for j, i in enumerate(batch)]
        self.drawn += 1
        return batch[lo : lo + self.batch_size]

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(len(self)):
            yield self.next_batch()

    def state_before(self, k: int) -> dict:
        """The state to restore so that the next batch drawn is the k-th (0-based) of the run."""
        if k == self.drawn:
            return self._state()
        if k not in self._history:
            raise RuntimeError(f"sampler state before batch {k} is not kept (drawn {self.drawn})")
        return self._history[k]

    def state_dict(self, k: int | None = None) -> dict:
        k = self.drawn if k is None else k
        state = self.state_before(k)
        return {"rng": state["rng"], "perm": list(state["perm"]), "pos": state["pos"], "drawn": state["drawn"],
                "unlocked_at": {i: self._unlocked_at[i] for i in range(k, self.drawn) if i in self._unlocked_at}}

    def load_state_dict(self, state: dict) -> None:
        rng = state["rng"]
        self.rng.setstate((rng[0], tuple(rng[1]), rng[2]))  # a checkpoint may turn tuples into lists
        self.perm, self.pos, self.drawn = list(state["perm"]), int(state["pos"]), int(state["drawn"])
        self._replay = {int(i): int(u) for i, u in (state.get("unlocked_at") or {}).items()}
        self._history.clear()
        self._unlocked_at.clear()


class CurriculumBatchSampler(TrainBatchSampler):
    """The training sampler with a curriculum (kept for its name; see TrainBatchSampler)."""

    def __init__(self, difficulties: Sequence[int], curriculum: Curriculum, batch_size: int, seed: int) -> None:
        super().__init__(difficulties, batch_size, seed, curriculum=curriculum)


class ShardSampler(Sampler[int]):
    """Indices rank, rank + N, rank + 2N, ... of a split of n examples: every example is evaluated by
    exactly one process (no padding, unlike DistributedSampler, so reduced metrics count each once)."""

    def __init__(self, n: int, rank: int = 0, num_replicas: int = 1) -> None:
        self.n, self.rank, self.num_replicas = n, rank, num_replicas

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.num_replicas))


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
        curriculum: Curriculum | None = None,
        layout: str = "suffix",
        augment: Task | None = None,
    ) -> None:
        super().__init__()
        self.curriculum = curriculum
        self.tokenizer = tokenizer
        self.train_set = EncodedExamples(train, tokenizer, "train", layout, augment=augment, seed=seed)
        self.val_set = EncodedExamples(val, tokenizer, "val", layout)
        self.test_set = EncodedExamples(test, tokenizer, "test", layout)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        difficulties = [ex.difficulty for ex in self.train_set.examples]
        self.train_sampler = TrainBatchSampler(difficulties, batch_size, seed, curriculum=curriculum)
        self.train_sampler.tag_draws = self.train_set.augment is not None

    def _distributed(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def train_dataloader(self) -> DataLoader:
        self.train_sampler.set_distributed(*self._distributed())
        # a generator of its own: the loader's base-seed draw must not consume torch's global RNG
        # (it happens at each epoch start, at other steps in a resumed run)
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.train_set, batch_sampler=self.train_sampler, collate_fn=self.train_set.collate,
                          generator=generator)

    def val_dataloader(self) -> DataLoader:
        rank, world = self._distributed()  # each process validates its shard; LitLM gathers the results
        return DataLoader(self.val_set, batch_size=self.eval_batch_size, collate_fn=self.val_set.collate,
                          sampler=ShardSampler(len(self.val_set), rank, world))

    def full_val_dataloader(self) -> DataLoader:
        """The whole validation split in one process (the final record's validation accuracy)."""
        return DataLoader(self.val_set, batch_size=self.eval_batch_size, collate_fn=self.val_set.collate)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=self.eval_batch_size, collate_fn=self.test_set.collate)

    def train_sample_dataloader(self, levels: Sequence[int] | None = None, factor: int = 5) -> DataLoader | None:
        """A fixed, seeded sample of training examples: `factor` times as many of each level as
        validation holds (fewer where the level has fewer), only of `levels` (None: every validated
        level), never augmented (the base examples). The final record's accuracy on it, read beside
        validation's, shows how much of what the model learned is memorised. A sampled example need not
        have been drawn in training (a time-limited run may see part of a large file). None when no
        trained level is validated."""
        per_difficulty: dict[int, int] = {}
        for ex in self.val_set.examples:
            per_difficulty[ex.difficulty] = per_difficulty.get(ex.difficulty, 0) + factor
        by_difficulty: dict[int, list[int]] = {}
        for i, ex in enumerate(self.train_set.examples):
            if levels is None or ex.difficulty in levels:
                by_difficulty.setdefault(ex.difficulty, []).append(i)
        rng = random.Random(f"{self.seed}-train-sample")
        chosen = []
        for d in sorted(by_difficulty):
            pool = by_difficulty[d]
            chosen += sorted(rng.sample(pool, min(len(pool), per_difficulty.get(d, 0))))
        if not chosen:
            return None
        sample = EncodedExamples([self.train_set.examples[i] for i in chosen], self.tokenizer, "train",
                                 self.train_set.layout)
        return DataLoader(sample, batch_size=self.eval_batch_size, collate_fn=sample.collate)
