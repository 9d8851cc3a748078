"""Mano: generated examples check, corrupted answers fail, hand-computed cases, claimed difficulty."""
import random

import pytest

from odelm.tasks import Example, Mano, TaskError, generate


def test_generated_examples_pass_and_corruptions_fail():
    task = Mano()
    rng = random.Random(1)
    for ex in generate(task, range(1, 7), 500, seed=0):
        assert task.check(ex), ex
        wrong = str((int(ex.answer) + rng.randrange(1, 23)) % 23)
        assert not task.check(Example(ex.prompt, wrong, ex.difficulty)), ex
        for bad in ("", "0" + ex.answer, " " + ex.answer, str(int(ex.answer) + 23)):
            assert not task.check(Example(ex.prompt, bad, ex.difficulty)), (ex, bad)


@pytest.mark.parametrize(
    "prompt, answer",
    [
        ("+ * 3 14 5", "1"),  # 3*14 + 5 = 47 = 2*23 + 1
        ("- 3 * 4 5", "6"),  # 3 - 20 = -17 = 6 mod 23
        ("* + 1 2 - 10 22", "10"),  # 3 * (10 - 22) = -36 = 10 mod 23
        ("- - 1 2 3", "19"),  # (1 - 2) - 3 = -4; prefix is not right-associative
        ("- 1 - 2 3", "2"),  # 1 - (2 - 3) = 2
        ("+ 22 1", "0"),
    ],
)
def test_hand_computed(prompt, answer):
    task = Mano()
    assert task.check(Example(prompt, answer, 0))
    assert not task.check(Example(prompt, str((int(answer) + 1) % 23), 0))


def test_other_modulus():
    task = Mano(modulus=5)
    assert task.check(Example("* 4 4", "1", 1))
    assert all(task.check(ex) for ex in generate(task, [1, 4, 8], 50, seed=2))


def test_difficulty_counts_operators_and_leaves():
    task = Mano()
    shapes = set()
    for ex in generate(task, range(1, 7), 300, seed=5):
        tokens = ex.prompt.split(" ")
        ops = [t for t in tokens if t in "+-*"]
        leaves = [t for t in tokens if t not in "+-*"]
        assert len(ops) == ex.difficulty and len(leaves) == ex.difficulty + 1
        assert all(t.isdigit() and int(t) < 23 for t in leaves)
        assert tokens[0] in "+-*" and tokens[-1].isdigit()
        assert set(ex.prompt + ex.answer) <= set(task.alphabet())
        shapes.add(tuple(t in "+-*" for t in tokens))
    assert len(shapes) > 20  # the tree shape varies, not only the labels


def test_deep_tree():
    task = Mano()
    ex = task.sample(random.Random(0), 3000)  # deeper than the recursion limit would allow a recursive builder
    assert task.check(ex)


@pytest.mark.parametrize("prompt", ["", "+ 1", "1 2", "+ 1 2 3", "+  1 2", "+ 1 23", "/ 1 2", "+ 01 2", "+ 1 2 "])
def test_malformed_prompt_raises(prompt):
    with pytest.raises(TaskError, match="mano"):
        Mano().check(Example(prompt, "3", 1))


@pytest.mark.parametrize("modulus", [1, True, "23"])
def test_bad_modulus(modulus):
    with pytest.raises(TaskError, match="modulus"):
        Mano(modulus)


def test_bad_difficulty_named():
    with pytest.raises(TaskError, match="difficulty.*0"):
        Mano().sample(random.Random(0), 0)
