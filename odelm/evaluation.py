"""Exact-match evaluation, shared by training (val/test) and `odelm.eval`.

Accuracy is exact match of the whole answer (and its EOS) under teacher forcing: every supervised
position's argmax equals its target. For a causal model this equals greedy decoding's exact match
(tested). NFE is reported per example: under torchdiffeq every example of a batch is charged the
batch's NFE, since the batch shares one step size.

Besides exact match: `cell_accuracy`, the share of supervised positions predicted right (cells of a
per-position task; answer tokens and EOS of a suffix task). With an `AnswerScorer`, every model answer
is also scored by the task's own checker (`Task.score`, which accepts any valid answer, not only the
reference): `constraint_satisfied` (share of outputs that keep every given and break no constraint),
`violations` (mean per output), `valid_shortest_path` (mazes), `rg_score` (reasoning-gym), each also
per difficulty. The scored answer of a per-position task is the argmax at every position; of a suffix
task, the greedy decoding of the prompt (teacher-forced argmax under an exit strategy, which decodes
no tokens: equal to greedy where the whole answer is right).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, fields
from typing import Any, Iterable

import torch
import torch.nn.functional as F

from .data import IGNORE, Batch
from .tasks import CharTokenizer, Example, Task


def exact_match(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, L, V), (B, L) → (B,) bool: every supervised position predicted right."""
    ok = (logits.argmax(-1) == targets) | (targets == IGNORE)
    return ok.all(dim=1)


class AnswerScorer:
    """Decodes each example's answer from the model's output and scores it with `task.score`.

    examples: the evaluated split, indexed by `Batch.index`; layout: the task's layout."""

    def __init__(self, task: Task, tokenizer: CharTokenizer, examples: list[Example], layout: str) -> None:
        self.task, self.tokenizer, self.examples, self.layout = task, tokenizer, list(examples), layout

    def _text(self, ids: list[int]) -> str:
        """Ids → characters, one per id ("?" for a special id, so that positions stay aligned)."""
        chars = self.tokenizer.chars
        n = CharTokenizer.N_SPECIAL
        return "".join(chars[i - n] if n <= i < n + len(chars) else "?" for i in ids)

    def answers(self, model: torch.nn.Module | None, batch: Batch, logits: torch.Tensor) -> list[str]:
        """The predicted answer text of each row of `batch`."""
        predicted = logits.argmax(-1)  # (B, L)
        mask = batch.targets != IGNORE
        if self.layout == "per_position":
            return [self._text(predicted[r][mask[r]].tolist()) for r in range(len(batch))]
        if model is None:  # teacher-forced argmax up to the first predicted EOS
            out = []
            for r in range(len(batch)):
                ids = predicted[r][mask[r]].tolist()
                out.append(self._text(ids[: ids.index(CharTokenizer.EOS)] if CharTokenizer.EOS in ids else ids))
            return out
        return self._greedy(model, batch)

    def _greedy(self, model: torch.nn.Module, batch: Batch) -> list[str]:
        """Greedy decoding of each row's [BOS] prompt [SEP], rows grouped by prompt length."""
        mask = batch.targets != IGNORE
        starts = mask.float().argmax(1).tolist()  # position of [SEP] = the first supervised position
        lengths = mask.sum(1).tolist()
        out = [""] * len(batch)
        for start in sorted(set(starts)):
            rows = [r for r in range(len(batch)) if starts[r] == start]
            max_new = max(lengths[r] for r in rows)
            generated = model.generate(batch.tokens[rows, : start + 1], max_new, CharTokenizer.EOS)
            for row, ids in zip(rows, generated[:, start + 1:].tolist()):
                ids = ids[: ids.index(CharTokenizer.EOS)] if CharTokenizer.EOS in ids else ids
                out[row] = self._text(ids)
        return out

    def __call__(self, model: torch.nn.Module | None, batch: Batch, logits: torch.Tensor) -> list[dict[str, float]]:
        return [self.task.score(self.examples[int(i)], text)
                for i, text in zip(batch.index.tolist(), self.answers(model, batch, logits))]


def answer_scorer(task: Task | None, tokenizer: CharTokenizer, examples: list[Example], layout: str) -> AnswerScorer | None:
    """An AnswerScorer for tasks that score answers (override `Task.score`); None for the others, whose
    evaluation then decodes nothing beyond the teacher-forced pass."""
    if task is None or type(task).score is Task.score:
        return None
    return AnswerScorer(task, tokenizer, examples, layout)


@dataclass
class EvalAccumulator:
    """Collects per-example results batch by batch."""

    correct: list[bool] = field(default_factory=list)
    difficulty: list[int] = field(default_factory=list)
    nfe: list[float] = field(default_factory=list)
    depth: list[float] = field(default_factory=list)  # depth reached per example (exit depth / τ)
    loss_sum: float = 0.0
    tokens: int = 0
    cells_right: list[int] = field(default_factory=list)  # supervised positions predicted right, per example
    cells: list[int] = field(default_factory=list)  # supervised positions, per example
    scores: list[dict[str, float]] = field(default_factory=list)  # AnswerScorer results, per example

    @classmethod
    def merge(cls, parts: Iterable["EvalAccumulator"]) -> "EvalAccumulator":
        """One accumulator holding every part's examples (e.g. the validation shards of DDP processes)."""
        merged = cls()
        for part in parts:
            for f in fields(cls):
                setattr(merged, f.name, getattr(merged, f.name) + getattr(part, f.name))
        return merged

    def add(
        self, batch: Batch, logits: torch.Tensor, nfe_forward: float | torch.Tensor,
        depth: float | torch.Tensor | None = None, scores: list[dict[str, float]] | None = None,
    ) -> None:
        """nfe_forward / depth: one number for the batch, or (B,) per-example values (adaptive exits);
        scores: the task's answer metrics per example (AnswerScorer), if any."""
        self.correct += exact_match(logits, batch.targets).tolist()
        supervised = batch.targets != IGNORE
        self.cells_right += ((logits.argmax(-1) == batch.targets) & supervised).sum(1).tolist()
        self.cells += supervised.sum(1).tolist()
        if scores is not None:
            self.scores += scores
        self.difficulty += batch.difficulty.tolist()
        per_example = lambda v: [float(x) for x in v.tolist()] if torch.is_tensor(v) else [float(v)] * len(batch)  # noqa: E731
        self.nfe += per_example(nfe_forward)
        self.depth += per_example(depth if depth is not None else float("nan"))
        mask = batch.targets != IGNORE
        self.loss_sum += F.cross_entropy(logits[mask], batch.targets[mask], reduction="sum").item()
        self.tokens += int(mask.sum())

    def summary(self) -> dict:
        n = len(self.correct)
        if n == 0:
            raise ValueError("evaluated no examples")
        by_difficulty: dict[int, list[bool]] = defaultdict(list)
        nfe_by_difficulty: dict[int, list[float]] = defaultdict(list)
        for ok, d, nfe in zip(self.correct, self.difficulty, self.nfe):
            by_difficulty[d].append(ok)
            nfe_by_difficulty[d].append(nfe)
        return {
            "accuracy": sum(self.correct) / n,
            "accuracy_by_difficulty": {str(d): sum(v) / len(v) for d, v in sorted(by_difficulty.items())},
            "n_by_difficulty": {str(d): len(v) for d, v in sorted(by_difficulty.items())},
            "nfe_forward": sum(self.nfe) / n,
            "nfe_forward_by_difficulty": {str(d): sum(v) / len(v) for d, v in sorted(nfe_by_difficulty.items())},
            "loss": self.loss_sum / max(self.tokens, 1),
            "n_examples": n,
            **self.answer_summary(),
            **self.compute_summary(),
        }

    def answer_summary(self) -> dict:
        """cell_accuracy, and the mean of each AnswerScorer metric, overall and per difficulty;
        `answer_metrics` lists the scorer's metric names."""
        levels = sorted(set(self.difficulty))
        rows = lambda d: [i for i, dd in enumerate(self.difficulty) if dd == d]  # noqa: E731
        cells = lambda idx: sum(self.cells_right[i] for i in idx) / max(sum(self.cells[i] for i in idx), 1)  # noqa: E731
        out: dict = {
            "cell_accuracy": cells(range(len(self.cells))),
            "cell_accuracy_by_difficulty": {str(d): cells(rows(d)) for d in levels},
        }
        if len(self.scores) != len(self.correct):
            out["answer_metrics"] = []
            return out
        names = sorted({k for score in self.scores for k in score})
        for name in names:
            mean = lambda idx: _mean([self.scores[i].get(name, float("nan")) for i in idx])  # noqa: E731
            out[name] = mean(range(len(self.scores)))
            out[f"{name}_by_difficulty"] = {str(d): mean(rows(d)) for d in levels}
        out["answer_metrics"] = names
        return out

    def compute_summary(self) -> dict:
        """Per-example compute: mean depth, histograms of NFE and depth per difficulty, the raw lists."""
        levels = sorted(set(self.difficulty))
        pick = lambda values, d: [v for v, dd in zip(values, self.difficulty) if dd == d]  # noqa: E731
        has_depth = any(v == v for v in self.depth)  # NaN where the integrator reported none
        out = {
            "depth": sum(self.depth) / len(self.depth) if has_depth else None,
            "depth_by_difficulty": {str(d): _mean(pick(self.depth, d)) for d in levels} if has_depth else None,
            "nfe_histogram_by_difficulty": {str(d): histogram(pick(self.nfe, d)) for d in levels},
            "depth_histogram_by_difficulty": (
                {str(d): histogram(pick(self.depth, d)) for d in levels} if has_depth else None
            ),
            "per_example": {"difficulty": list(self.difficulty), "correct": list(self.correct), "nfe": list(self.nfe),
                            "depth": list(self.depth) if has_depth else None},
        }
        return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def histogram(values: list[float], bins: int = 10) -> dict:
    """Counts of integer values ({value: count}) when all are whole numbers spanning <= 64 values;
    otherwise `bins` equal-width bins: {"edges": [...], "counts": [...]}."""
    if all(float(v).is_integer() for v in values) and max(values) - min(values) <= 64:
        counts: dict[str, int] = {}
        for v in sorted(values):
            counts[str(int(v))] = counts.get(str(int(v)), 0) + 1
        return counts
    lo, hi = min(values), max(values)
    width = (hi - lo) / bins or 1.0
    edges = [lo + i * width for i in range(bins + 1)]
    counts_list = [0] * bins
    for v in values:
        counts_list[min(int((v - lo) / width), bins - 1)] += 1
    return {"edges": [round(x, 6) for x in edges], "counts": counts_list}


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, batches: Iterable[Batch], device: torch.device | str | None = None, exit_strategy: Any = None,
    scorer: AnswerScorer | None = None,
) -> dict:
    """Teacher-forced exact match, loss and mean NFE of `model` over `batches`. With `exit_strategy` (an
    odelm.exits.AdaptiveDepth) each example stops at its own depth; NFE and depth are per example.
    With `scorer`, each answer is also scored by the task's checker (constraint metrics). `device`:
    where the batches go (None: the model's own device)."""
    if device is None:
        device = next(model.parameters()).device
    model.eval()
    acc = EvalAccumulator()
    for batch in batches:
        batch = batch.to(device)
        if exit_strategy is not None:
            res = exit_strategy(model, batch.tokens, batch.targets != IGNORE)  # read out at the supervised positions
            scores = scorer(None, batch, res.logits) if scorer is not None else None
            acc.add(batch, res.logits, res.nfe, res.depth, scores)
            continue
        out = model(batch.tokens)
        scores = scorer(model, batch, out.logits) if scorer is not None else None
        acc.add(batch, out.logits, out.depth.nfe_forward, out.depth.depth, scores)
    return acc.summary()
