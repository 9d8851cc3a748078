"""generate: determinism, counts, difficulty draws, and argument errors; the registry."""
import random

import pytest

from odelm.tasks import TASKS, Example, Mano, ModularChain, Multihop, Task, TaskError, build_task, generate

BUILTIN = [ModularChain, Mano, Multihop]


@pytest.mark.parametrize("cls", BUILTIN)
def test_deterministic_given_seed(cls):
    a = generate(cls(), [1, 2, 3], 50, seed=7)
    random.seed(123)  # global random state plays no part
    b = generate(cls(), [1, 2, 3], 50, seed=7)
    assert a == b and len(a) == 50 and all(isinstance(ex, Example) for ex in a)
    assert generate(cls(), [1, 2, 3], 50, seed=8) != a


def test_global_random_state_untouched():
    random.seed(0)
    state = random.getstate()
    generate(Mano(), [1, 5], 20, seed=1)
    generate(Multihop(), [1, 5], 20, seed=1, per_difficulty=True)
    assert random.getstate() == state


def test_uniform_difficulty_draw():
    examples = generate(ModularChain(), [2, 4, 6], 600, seed=0)
    counts = {d: sum(ex.difficulty == d for ex in examples) for d in (2, 4, 6)}
    assert sum(counts.values()) == 600
    assert all(150 <= c <= 250 for c in counts.values()), counts


def test_per_difficulty_counts_and_order():
    examples = generate(Multihop(), [3, 1, 2, 1], 10, seed=0, per_difficulty=True)
    assert [ex.difficulty for ex in examples] == [1] * 10 + [2] * 10 + [3] * 10
    # the examples of the lower difficulties do not depend on the higher ones asked for
    assert generate(Multihop(), [1, 2], 10, seed=0, per_difficulty=True) == examples[:20]


def test_zero_examples():
    assert generate(Mano(), [1], 0, seed=0) == []


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"difficulties": []}, "difficulties is empty"),
        ({"difficulties": [1, 0]}, "difficulty must be an integer >= 1, got 0"),
        ({"difficulties": [2.0]}, "got 2.0"),
        ({"difficulties": "12"}, "difficulties must be a sequence"),
        ({"difficulties": 3}, "difficulties must be a sequence"),
        ({"difficulties": [8]}, "difficulty \\(hops\\) 8"),
        ({"n": -1}, "n must be an integer >= 0, got -1"),
        ({"n": 2.5}, "got 2.5"),
        ({"seed": "0"}, "seed must be an integer, got '0'"),
    ],
)
def test_argument_errors(kwargs, match):
    args = {"task": Multihop(), "difficulties": [1], "n": 3, "seed": 0, **kwargs}
    with pytest.raises(TaskError, match=match):
        generate(**args)


def test_task_must_be_task():
    with pytest.raises(TaskError, match="Task instance"):
        generate("mano", [1], 1, 0)


def test_registry_and_build_task(tmp_path):
    assert set(TASKS) == {"modular_chain", "mano", "multihop", "pointer_chase", "jsonl", "sudoku", "maze",
                          "prefix_parity", "reasoning_gym"}
    assert all(issubclass(cls, Task) and TASKS[name].name == name for name, cls in TASKS.items())
    assert build_task("mano", modulus=11).describe() == {"name": "mano", "modulus": 11}
    assert repr(build_task("multihop", n_vars=5)) == "Multihop(n_vars=5, n_values=10)"
    with pytest.raises(TaskError, match="unknown task 'nope'; known tasks: jsonl, mano, maze, modular_chain, multihop, pointer_chase, "
                       "prefix_parity, reasoning_gym, sudoku"):
        build_task("nope")
    with pytest.raises(TaskError, match="task 'mano'.*'size'.*accepted arguments: modulus"):
        build_task("mano", size=3)
    with pytest.raises(TaskError, match="task 'jsonl'.*missing.*'test'"):
        build_task("jsonl", train=str(tmp_path / "a.jsonl"))


@pytest.mark.parametrize("cls", BUILTIN)
def test_alphabet_sorted_unique(cls):
    alphabet = cls().alphabet()
    assert alphabet == "".join(sorted(set(alphabet)))


def test_example_validates_types():
    with pytest.raises(TaskError, match="Example.answer must be a str, got int 3"):
        Example("p", 3, 1)
    with pytest.raises(TaskError, match="Example.difficulty must be an int, got bool True"):
        Example("p", "a", True)
