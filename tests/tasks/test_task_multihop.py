"""Multihop: generated examples check, corrupted answers fail, hand-computed cases, claimed hops."""
import random

import pytest

from odelm.tasks import Example, Multihop, TaskError, generate


def chase(prompt):
    """Independent of the task: (digit, hops) by following the bindings from the query."""
    head, query = prompt.split(";")
    bindings = dict(b.split("=") for b in head.split(","))
    current, hops = query.rstrip("?"), 0
    while not current.isdigit():
        current, hops = bindings[current], hops + 1
        assert hops <= len(bindings), "cycle"
    return current, hops, bindings


def test_generated_examples_pass_and_corruptions_fail():
    task = Multihop()
    rng = random.Random(1)
    for ex in generate(task, range(1, 7), 500, seed=0):
        assert task.check(ex), ex
        wrong = str((int(ex.answer) + rng.randrange(1, 10)) % 10)
        assert not task.check(Example(ex.prompt, wrong, ex.difficulty)), ex
        for bad in ("", ex.answer * 2, " " + ex.answer):
            assert not task.check(Example(ex.prompt, bad, ex.difficulty)), (ex, bad)


def test_hand_computed():
    task = Multihop()
    assert task.check(Example("c=b,a=4,b=a,d=7;c?", "4", 3))
    assert not task.check(Example("c=b,a=4,b=a,d=7;c?", "7", 3))
    assert task.resolve("c=b,a=4,b=a,d=7;c?") == ("4", 3)
    assert task.resolve("c=b,a=4,b=a,d=7;d?") == ("7", 1)
    assert task.check(Example("x=0,y=x;y?", "0", 2))


def test_cycles_and_unbound_variables_fail():
    task = Multihop()
    for answer in "0123456789":
        assert not task.check(Example("a=b,b=a;a?", answer, 2))
        assert not task.check(Example("a=a;a?", answer, 1))
        assert not task.check(Example("a=b,c=1;a?", answer, 1))
        assert not task.check(Example("a=1;z?", answer, 1))


@pytest.mark.parametrize("n_vars, n_values", [(8, 10), (2, 2), (26, 3)])
def test_hops_and_structure(n_vars, n_values):
    task = Multihop(n_vars=n_vars, n_values=n_values)
    difficulties = range(1, min(7, n_vars))
    for ex in generate(task, difficulties, 200, seed=4):
        answer, hops, bindings = chase(ex.prompt)
        assert (answer, hops) == (ex.answer, ex.difficulty)
        assert len(bindings) == n_vars == ex.prompt.count("=")
        assert all(v.isalpha() and len(v) == 1 and v.islower() for v in bindings)
        for var in bindings:  # every distractor also resolves to a digit, without cycles
            assert chase(f"{ex.prompt.split(';')[0]};{var}?")[0] in "0123456789"[:n_values]
        assert set(ex.prompt + ex.answer) <= set(task.alphabet())


def test_difficulty_bounds():
    task = Multihop(n_vars=4)
    assert task.check(task.sample(random.Random(0), 3))
    with pytest.raises(TaskError, match=r"difficulty \(hops\) 4 exceeds n_vars - 1 = 3"):
        task.sample(random.Random(0), 4)
    with pytest.raises(TaskError, match="difficulty.*0"):
        task.sample(random.Random(0), 0)


@pytest.mark.parametrize("kwargs, name", [({"n_vars": 1}, "n_vars"), ({"n_vars": 27}, "n_vars"),
                                          ({"n_values": 1}, "n_values"), ({"n_values": 11}, "n_values"),
                                          ({"n_vars": 8.0}, "n_vars")])
def test_bad_settings(kwargs, name):
    with pytest.raises(TaskError, match=name):
        Multihop(**kwargs)


@pytest.mark.parametrize("prompt", ["a=1", "a=1;a", "a=1;A?", "a=1,;a?", "a=12;a?", "a:1;a?", "A=1;a?", "a=1,a=2;a?",
                                    "a=1;a?;"])
def test_malformed_prompt_raises(prompt):
    with pytest.raises(TaskError, match="multihop"):
        Multihop().check(Example(prompt, "1", 1))


def test_value_outside_n_values_is_malformed():
    with pytest.raises(TaskError, match="multihop"):
        Multihop(n_values=3).check(Example("a=5;a?", "5", 1))
