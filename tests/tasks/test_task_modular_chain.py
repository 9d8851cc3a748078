"""ModularChain: generated examples check, corrupted answers fail, hand-computed cases, claimed difficulty."""
import random

import pytest

from odelm.tasks import Example, ModularChain, TaskError, generate


@pytest.mark.parametrize("modulus", [7, 23])
def test_generated_examples_pass_and_corruptions_fail(modulus):
    task = ModularChain(modulus)
    examples = generate(task, range(1, 7), 500, seed=0)
    rng = random.Random(1)
    for ex in examples:
        assert task.check(ex), ex
        wrong = str((int(ex.answer) + rng.randrange(1, modulus)) % modulus)
        assert not task.check(Example(ex.prompt, wrong, ex.difficulty)), ex
        for bad in ("", "0" + ex.answer, ex.answer + " ", str(int(ex.answer) + modulus)):
            assert not task.check(Example(ex.prompt, bad, ex.difficulty)), (ex, bad)


@pytest.mark.parametrize(
    "modulus, prompt, answer",
    [
        (7, "3+5*2", "2"),  # ((3+5)*2) % 7 = 16 % 7; precedence would give 13 % 7 = 6
        (7, "5-6", "6"),  # -1 mod 7
        (7, "6*6*6-0+1", "0"),  # (216 + 1) % 7 = 217 % 7
        (10, "9*9+9", "0"),  # (81 + 9) % 10, no spaces while modulus <= 10
        (23, "3 + 20 * 2", "0"),  # (23 * 2) % 23; precedence would give 43 % 23 = 20
        (23, "20 * 20 + 3", "12"),  # (400 + 3) % 23
        (23, "0 - 22", "1"),
    ],
)
def test_hand_computed(modulus, prompt, answer):
    task = ModularChain(modulus)
    assert task.check(Example(prompt, answer, 0))
    assert not task.check(Example(prompt, str((int(answer) + 1) % modulus), 0))


@pytest.mark.parametrize("modulus", [2, 7, 10, 11, 97])
def test_difficulty_counts_operations_and_format(modulus):
    task = ModularChain(modulus)
    for ex in generate(task, range(1, 7), 100, seed=3):
        tokens = ex.prompt.split(" ") if modulus > 10 else list(ex.prompt)
        assert len(tokens) == 2 * ex.difficulty + 1
        assert all(t in "+-*" for t in tokens[1::2])
        assert all(t.isdigit() and int(t) < modulus for t in tokens[0::2])
        assert 0 <= int(ex.answer) < modulus
        assert set(ex.prompt + ex.answer) <= set(task.alphabet())


def test_alphabet():
    assert ModularChain(7).alphabet() == "*+-0123456"
    assert ModularChain(23).alphabet() == " *+-0123456789"


@pytest.mark.parametrize("modulus", [1, 0, -3, True, 7.0, "7"])
def test_bad_modulus(modulus):
    with pytest.raises(TaskError, match="modulus"):
        ModularChain(modulus)


@pytest.mark.parametrize("difficulty", [0, -1, 1.5, True])
def test_bad_difficulty_named(difficulty):
    with pytest.raises(TaskError, match=f"difficulty.*{difficulty!r}"):
        ModularChain().sample(random.Random(0), difficulty)


@pytest.mark.parametrize("prompt", ["", "3+", "3++5", "3+7", "3 + 5", "03+5", "a+1", "3/5"])
def test_malformed_prompt_raises(prompt):
    with pytest.raises(TaskError, match="modular_chain"):
        ModularChain(7).check(Example(prompt, "1", 1))


@pytest.mark.parametrize("prompt", ["3+5", "3  + 5", "3 + 23", "3 + 05", " 3 + 5"])
def test_malformed_prompt_raises_spaced(prompt):
    with pytest.raises(TaskError, match="modular_chain"):
        ModularChain(23).check(Example(prompt, "8", 1))
