"""Batches supervise exactly the answer and EOS; the curriculum unlocks levels only when learned."""
from __future__ import annotations

from collections import Counter

import pytest

from odelm.data import IGNORE, Curriculum, CurriculumBatchSampler, EncodedExamples, collate
from odelm.tasks import CharTokenizer, Example


def test_collate_supervises_answer_and_eos_only() -> None:
    tok = CharTokenizer("0123456789+")
    data = EncodedExamples([Example("1+2", "3", 1), Example("10+20", "30", 2)], tok, "t")
    batch = collate([data[0], data[1]])
    assert batch.tokens.shape == (2, 1 + 5 + 1 + 2)  # BOS prompt SEP answer (EOS is never an input)
    # row 0 ids: BOS 1 + 2 SEP 3 EOS; the target of position i is token i+1, supervised from SEP on
    row = batch.targets[0].tolist()
    assert row[:4] == [IGNORE] * 4 and row[4] == tok.encode("3")[0] and row[5] == tok.EOS
    assert row[6:] == [IGNORE] * (len(row) - 6)
    assert batch.tokens[0, 6:].eq(tok.PAD).all()
    answer_positions = (batch.targets[1] != IGNORE).nonzero().flatten().tolist()
    assert answer_positions == [6, 7, 8]  # "3", "0", EOS predicted from SEP, "3", "0"
    assert batch.difficulty.tolist() == [1, 2] and batch.index.tolist() == [0, 1]


def test_curriculum_unlocks_only_a_learned_level() -> None:
    c = Curriculum([3, 1, 2], threshold=0.9)
    assert c.level == 1
    assert not c.update({"1": 0.89, "2": 1.0})
    assert c.update({"1": 0.9}) and c.level == 2
    assert not c.update({"1": 1.0, "2": 0.5, "3": 1.0})
    assert c.update({"2": 0.95}) and c.level == 3
    assert not c.update({"3": 1.0}) and c.level == 3  # the last level stays
    restored = Curriculum([1, 2, 3])
    restored.load_state_dict(c.state_dict())
    assert restored.level == 3


def test_sampler_draws_only_unlocked_levels_and_follows_unlocks() -> None:
    difficulties = [1, 2, 3] * 100
    c = Curriculum([1, 2, 3], newest_share=0.5)
    sampler = CurriculumBatchSampler(difficulties, c, batch_size=50, seed=0)
    seen = Counter(difficulties[i] for batch in sampler for i in batch)
    assert set(seen) == {1}
    c.unlocked = 2
    seen = Counter(difficulties[i] for batch in sampler for i in batch)
    assert set(seen) == {1, 2} and seen[2] > seen[1]  # newest level: 50% + half of the uniform rest
    c.unlocked = 3  # all unlocked: uniform over levels
    seen = Counter(difficulties[i] for batch in sampler for i in batch)
    assert all(abs(n / sum(seen.values()) - 1 / 3) < 0.05 for n in seen.values())


def test_bad_curriculum_values() -> None:
    with pytest.raises(ValueError, match="threshold must be in \\(0, 1\\], got 1.5"):
        Curriculum([1, 2], threshold=1.5)
    with pytest.raises(ValueError, match="have no training examples"):
        CurriculumBatchSampler([1, 1], Curriculum([1, 2]), batch_size=2, seed=0)


def test_eval_accumulators_merge_every_field() -> None:
    """DDP validation merges the processes' accumulators: every per-example list and every sum."""
    from dataclasses import fields

    from odelm.evaluation import EvalAccumulator

    a = EvalAccumulator(correct=[True], difficulty=[1], nfe=[4.0], depth=[4.0], loss_sum=1.0, tokens=2,
                        cells_right=[3], cells=[4], scores=[{"constraint_satisfied": 1.0}])
    b = EvalAccumulator(correct=[False], difficulty=[2], nfe=[8.0], depth=[8.0], loss_sum=0.5, tokens=3,
                        cells_right=[1], cells=[4], scores=[{"constraint_satisfied": 0.0}])
    merged = EvalAccumulator.merge([a, b])
    for f in fields(EvalAccumulator):
        assert getattr(merged, f.name) == getattr(a, f.name) + getattr(b, f.name), f.name
    assert merged.summary()["cell_accuracy"] == 0.5


def test_augmented_training_draws_are_seeded_by_their_draw_and_restored_on_resume() -> None:
    """Sudoku augmentation draws a variant per training draw from (seed, draw id), which the sampler's
    state restores: an interrupted and resumed run sees the same augmented batches."""
    import random

    from odelm.data import TrainBatchSampler
    from odelm.tasks.sudoku import Sudoku

    task = Sudoku(2, 2)
    rng = random.Random(0)
    examples = [task.sample(rng, 6) for _ in range(12)]
    tokenizer = CharTokenizer(task.alphabet())
    dataset = EncodedExamples(examples, tokenizer, "train", "per_position", augment=task, seed=3)
    assert dataset[(0, 5)] == dataset[(0, 5)]
    assert len({tuple(dataset[(0, d)][0]) for d in range(20)}) > 1  # different draws, different variants
    sampler = TrainBatchSampler([ex.difficulty for ex in examples], batch_size=4, seed=1)
    sampler.tag_draws = True
    first = [sampler.next_batch() for _ in range(3)]
    assert all(isinstance(key, tuple) for batch in first for key in batch)
    state = sampler.state_dict(1)
    resumed = TrainBatchSampler([ex.difficulty for ex in examples], batch_size=4, seed=1)
    resumed.tag_draws = True
    resumed.load_state_dict(state)
    again = [resumed.next_batch() for _ in range(2)]
    assert again == first[1:]
    assert [dataset[k] for k in again[0]] == [dataset[k] for k in first[1]]


def test_curriculum_patience_unlocks_a_level_it_cannot_learn_and_resumes() -> None:
    """Without patience a level below the threshold holds the curriculum forever; with patience k it
    is unlocked past once k validations in a row bring no progress (recorded as forced), and the
    count survives a checkpoint."""
    stuck = {"1": 0.2, "2": 0.2, "3": 0.2}
    waiting = Curriculum([1, 2, 3], threshold=0.9)
    assert not any(waiting.update(stuck) for _ in range(50)) and waiting.level == 1
    patient = Curriculum([1, 2, 3], threshold=0.9, patience=3)
    # the first reading is progress over nothing; then 3 validations without progress
    assert [patient.update(stuck) for _ in range(4)] == [False, False, False, True] and patient.level == 2
    assert patient.update({"1": 1.0, "2": 0.95, "3": 0.0}) and patient.level == 3  # learned: at once
    assert patient.forced == [1]
    mid = Curriculum([1, 2, 3], patience=3)
    mid.update(stuck)
    mid.update(stuck)
    restored = Curriculum([1, 2, 3], patience=3)
    restored.load_state_dict(mid.state_dict())
    assert [restored.update(stuck) for _ in range(2)] == [False, True]  # 1 + 2 validations = patience
    with pytest.raises(ValueError, match="patience must be an integer >= 1 or null, got 0"):
        Curriculum([1, 2], patience=0)
    with pytest.raises(ValueError, match="min_delta must be in .* got 0"):
        Curriculum([1, 2], patience=2, min_delta=0)


def test_curriculum_patience_waits_while_the_level_improves_and_is_bounded() -> None:
    """A level that keeps improving by min_delta is not pushed on (the slow learner of arithmetic
    chains), one that creeps up by less is; and no sequence of readings below the threshold can hold
    a level longer than patience * (1 + ceil(1 / min_delta)) validations."""
    climbing = Curriculum([1, 2], threshold=0.9, patience=2, min_delta=0.05)
    assert not any(climbing.update({"1": acc, "2": 0.0}) for acc in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8))
    assert climbing.level == 1 and climbing.forced == []
    creeping = Curriculum([1, 2], threshold=0.9, patience=2, min_delta=0.05)
    assert [creeping.update({"1": acc, "2": 0.0}) for acc in (0.10, 0.12, 0.14)] == [False, False, True]
    assert creeping.forced == [1]
    import math
    import random
    rng = random.Random(0)
    for _ in range(20):  # adversarial-ish: random readings, often just enough to reset the patience
        c = Curriculum([1, 2], threshold=0.9, patience=3, min_delta=0.1)
        bound = 3 * (1 + math.ceil(1 / 0.1))
        readings, acc = 0, 0.0
        while c.level == 1:
            acc = min(0.89, acc + rng.choice((0.0, 0.1, 0.1001, 0.3))) if rng.random() < 0.9 else rng.random() * 0.89
            c.update({"1": acc, "2": 0.0})
            readings += 1
            assert readings <= bound
