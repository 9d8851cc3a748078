"""Pointer chase: generated examples check, corruptions fail, hand-computed cases, the claimed reads."""
import random

import pytest

from odelm.tasks import Example, PointerChase, TaskError, build_task, generate


def walk(prompt):
    """Independent of the task: (letter, reads) by following the table from the start slot."""
    table, start = prompt.split(":")
    slot, reads = int(start), 1
    while table[slot].isdigit():
        slot, reads = int(table[slot]), reads + 1
        assert reads <= len(table), "cycle"
    return table[slot], reads


def test_hand_computed():
    task = PointerChase()
    assert task.check(Example("4a1jb0c2dc:7", "a", 3))
    assert task.reads("4a1jb0c2dc:7") == 3
    assert not task.check(Example("4a1jb0c2dc:7", "c", 3))
    assert task.check(Example("4a1jb0c2dc:1", "a", 1))
    assert task.check(Example("4a1jb0c2dc:0", "b", 2))  # 0 -> 4 -> "b"


def test_cycles_never_check():
    task = PointerChase(n_slots=3, n_letters=2)
    for answer in "ab":
        assert not task.check(Example("10a:0", answer, 2))  # 0 -> 1 -> 0 -> ...
        assert not task.check(Example("0ab:0", answer, 1))  # a slot pointing at itself
    assert task.reads("10a:0") is None


@pytest.mark.parametrize("n_slots, n_letters", [(10, 10), (4, 2), (10, 26)])
def test_generated_examples_read_exactly_difficulty_slots(n_slots, n_letters):
    task = PointerChase(n_slots=n_slots, n_letters=n_letters)
    rng = random.Random(0)
    levels = range(1, min(7, n_slots) + 1)
    for ex in generate(task, levels, 300, seed=3):
        assert walk(ex.prompt) == (ex.answer, ex.difficulty)
        assert task.check(ex)
        wrong = rng.choice([c for c in task.alphabet() if c != ex.answer])
        assert not task.check(Example(ex.prompt, wrong, ex.difficulty))
        assert set(ex.prompt + ex.answer) <= set(task.alphabet())
        assert len(ex.prompt) == n_slots + 2


def test_distractors_are_varied():
    """Not every non-chain slot is a letter: distractor pointers exist (a model must follow the right chain)."""
    task = PointerChase()
    pointers = [sum(c.isdigit() for c in ex.prompt.split(":")[0]) for ex in generate(task, [1], 200, seed=0)]
    assert max(pointers) >= 4 and min(pointers) <= 3


@pytest.mark.parametrize("bad", ["4a1jb0c2dc", "4a1jb0c2d:7", "4a1jb0c2dc:x", "4a1jb0c2dZ:7"])
def test_malformed_prompts_fail_clearly(bad):
    with pytest.raises(TaskError, match="pointer_chase"):
        PointerChase().check(Example(bad, "a", 1))


def test_bad_settings_and_difficulty():
    with pytest.raises(TaskError, match="n_slots"):
        build_task("pointer_chase", n_slots=11)
    with pytest.raises(TaskError, match="n_letters"):
        PointerChase(n_letters=1)
    with pytest.raises(TaskError, match="exceeds n_slots"):
        PointerChase(n_slots=4).sample(random.Random(0), 5)
