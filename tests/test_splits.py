"""Disjoint splits: no test prompt in training or validation for any built-in task, per-difficulty
test streams (a smaller test set is a prefix of a larger one), a level that cannot supply its
distinct prompts fails before training, and JSONL inputs are de-duplicated with the counts reported."""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from odelm import build as build_module
from odelm import train
from odelm.build import ConfigError, build_curriculum, build_data
from odelm.tasks import TASKS, Example, Maze, ModularChain, Task, TaskError, generate_distinct
from odelm.tasks.maze import _distances

from conftest import SMALL, SMALL_RUN, compose_config

GENERATED = sorted(name for name in TASKS if name != "jsonl")
# Three small difficulty levels each task accepts (mazes start at 2 rooms per side and have only a few
# dozen 5x5 mazes; prefix parity's difficulty is the number of bits), and a fourth where the task has one.
LEVELS = {"maze": [3, 4, 5, 6], "prefix_parity": [5, 6, 7, 8], "reasoning_gym": [1, 2, 3]}


def small(name: str) -> list[str]:
    """SMALL, with training on the first two and testing on the first three of the task's LEVELS."""
    levels = LEVELS.get(name, [1, 2, 3, 4])
    return [*SMALL, f"task.train_difficulties={levels[:2]}", f"task.test_difficulties={levels[:3]}"]


def prompts(examples) -> set[str]:
    return {ex.prompt if isinstance(ex, Example) else ex[0] for ex in examples}


def assert_disjoint(data, distinct: bool = True) -> None:
    test, val = prompts(data.test), prompts(data.val)
    assert test and val and data.train
    assert not test & val, "a validation prompt is a test prompt"
    leaked = [ex.prompt for ex in data.train if ex.prompt in test or ex.prompt in val]
    assert not leaked, f"{len(leaked)} training examples have a test/validation prompt, e.g. {leaked[:3]}"
    for split in (data.test, data.val) if distinct else ():  # generated held-out prompts are distinct
        assert len(prompts(split)) == len(split)


@pytest.mark.parametrize("sizes", ["default", "small"])
@pytest.mark.parametrize("name", GENERATED)
def test_no_test_prompt_occurs_in_training_or_validation(name: str, sizes: str) -> None:
    """Every built-in task, at its conf default and at small sizes. A default that cannot supply its
    distinct prompts is refused before training (ConfigError), never trained on overlapping splits."""
    cfg = compose_config("train", [f"task={name}", *(small(name) if sizes == "small" else [])])
    try:
        data = build_data(cfg, seed=0)
    except ConfigError as err:
        assert sizes == "default" and "cannot supply" in str(err), err
        return
    assert_disjoint(data)
    t = cfg.task
    assert len(data.test) == t.n_test_per_difficulty * len(set(t.test_difficulties))
    assert len(data.val) == cfg.data.n_val_per_difficulty * len(set(t.train_difficulties))
    assert len(data.train) == t.n_train


@pytest.mark.parametrize("name", GENERATED)
def test_small_levels_nearly_exhausted_stay_disjoint(name: str) -> None:
    """Small task parameters, where held-out prompts are a large share of a level (and training draws
    repeat): still no overlap, for several training seeds."""
    params = {"modular_chain": ["task.params.modulus=5"], "mano": ["task.params.modulus=5"],
              "multihop": ["task.params.n_vars=3", "task.params.n_values=2"]}.get(name, [])
    levels = LEVELS.get(name, [1, 2, 3, 4])[:2]  # prefix parity 5 / 6 bits: 32 / 64 prompts in all
    cfg = compose_config("train", [f"task={name}", *SMALL, *params, "task.n_test_per_difficulty=20",
                                   f"task.train_difficulties={levels}", f"task.test_difficulties={levels}"])
    for seed in (0, 1, 2):
        assert_disjoint(build_data(cfg, seed=seed))


@pytest.mark.parametrize("name", GENERATED)
def test_a_smaller_test_set_is_a_prefix_of_a_larger_one(name: str) -> None:
    levels = LEVELS.get(name, [1, 2, 3, 4])
    reordered = [levels[2], levels[0], levels[1], *levels[3:]]  # more levels, listed in another order
    base = [f"task={name}", *small(name)]
    small_test = build_data(compose_config("train", [*base, "task.n_test_per_difficulty=5"]), 0).test
    large = build_data(compose_config("train", [*base, "task.n_test_per_difficulty=20",
                                                f"task.test_difficulties={reordered}"]), 1).test
    for d in levels[:3]:
        assert [ex for ex in small_test if ex.difficulty == d] == [ex for ex in large if ex.difficulty == d][:5]
    # the test set does not depend on the training seed; validation neither
    other = build_data(compose_config("train", [*base, "task.n_test_per_difficulty=5"]), 7)
    assert other.test == small_test


def test_an_exhausted_level_fails_before_training_naming_task_level_and_counts(tmp_path: Path) -> None:
    """modular_chain mod 7 has 7 * 21 = 147 one-operation prompts."""
    base = ["task=modular_chain", "task.params.modulus=7", *SMALL_RUN]
    cases = [
        (["task.n_test_per_difficulty=200"],
         r"task modular_chain: the test split \(task.n_test_per_difficulty=200\).*difficulty 1 cannot supply 200 "
         r"distinct prompts \(it has 147 distinct prompts\)"),
        (["task.n_test_per_difficulty=100", "data.n_val_per_difficulty=60"],
         r"validation split \(data.n_val_per_difficulty=60.*difficulty 1 cannot supply 60 distinct prompts "
         r"\(it has 147 distinct prompts, 100 of them held out\)"),
        (["task.n_test_per_difficulty=100", "data.n_val_per_difficulty=47"],
         r"task modular_chain: the training split.*difficulty 1.*held out for test/validation"),
    ]
    for overrides, match in cases:
        cfg = compose_config("train", base + overrides)
        with pytest.raises(ConfigError, match=match):
            train.run(cfg, run_dir=tmp_path / "run")
        assert not (tmp_path / "run" / "metrics.csv").exists()


class ThreePrompts(Task):
    """A task with 3 prompts per level and no closed-form count: exhaustion is found by bounded draws."""

    name = "three"

    def sample(self, rng: random.Random, difficulty: int) -> Example:
        return Example(str(rng.randrange(3)), "a", difficulty)

    def check(self, example: Example) -> bool:
        return True

    def alphabet(self) -> str:
        return "012a"


def test_exhaustion_without_a_count_is_found_by_bounded_draws() -> None:
    assert len(generate_distinct(ThreePrompts(), 1, 3, seed=0)) == 3
    with pytest.raises(TaskError, match=r"difficulty 1 cannot supply 4 distinct prompts \(3 distinct prompts found"):
        generate_distinct(ThreePrompts(), 1, 4, seed=0, max_draws=500)
    with pytest.raises(TaskError, match=r"cannot supply 2 distinct prompts \(1 distinct prompts not held out"):
        generate_distinct(ThreePrompts(), 1, 2, seed=0, exclude={"0", "1"}, max_draws=500)


def test_prompt_counts_are_exact() -> None:
    task = ModularChain(modulus=3)
    rng = random.Random(0)
    for d in (1, 2):
        assert len({task.sample(rng, d).prompt for _ in range(20_000)}) == task.n_prompts(d)
    assert len(generate_distinct(task, 1, 27, seed=0)) == 27  # every prompt of the level, found


# --- JSONL ------------------------------------------------------------------------------------

def rows(items) -> str:
    return "".join(json.dumps({"prompt": p, "answer": a, "difficulty": d}) + "\n" for p, a, d in items)


def chain(a: int, b: int, op: str = "+") -> tuple[str, str]:
    return f"{a}{op}{b}", str(eval(f"{a}{op}{b}"))


def jsonl(tmp_path: Path, train_items, test_items, val_items=None, *extra: str):
    paths = {}
    for split, items in (("train", train_items), ("test", test_items), ("val", val_items)):
        if items is not None:
            paths[split] = tmp_path / f"{split}.jsonl"
            paths[split].write_text(rows(items))
    overrides = [*SMALL_RUN, "task=jsonl", *(f"task.{k}={v}" for k, v in paths.items()), *extra]
    return compose_config("train", overrides)


TRAIN = [(*chain(a, b), 1 + (a + b) % 2) for a in range(10) for b in range(10)]  # 100 prompts, levels 1-2


def test_jsonl_drops_training_and_validation_prompts_found_in_test(tmp_path: Path) -> None:
    test = [TRAIN[0], TRAIN[1], TRAIN[1], (*chain(3, 4, "-"), 1), (*chain(4, 3, "-"), 2)]  # 2 shared, 1 repeated
    val = [TRAIN[1], (*chain(9, 1, "-"), 1), (*chain(9, 2, "-"), 2), TRAIN[5]]  # 1 in test, 1 in training
    duplicate = TRAIN[:1] * 3  # three more copies of a test prompt in training
    data = build_data(jsonl(tmp_path, TRAIN + duplicate, test, val), seed=0)
    assert data.report == {"split_overlap_dropped": {"train": 2 + 3 + 1, "val": 1}, "test_duplicate_prompts": 1}
    assert len(data.test) == 5  # duplicates within test are kept (and reported)
    assert prompts(data.val) == {"9-1", "9-2", TRAIN[5][0]}  # validation comes from task.val, never from test
    assert len(data.train) == len(TRAIN) - 2 - 1
    assert_disjoint(data, distinct=False)


def test_jsonl_validation_without_a_file_is_held_back_from_training(tmp_path: Path) -> None:
    test = [(*chain(3, 4, "-"), 1), (*chain(4, 3, "-"), 2), TRAIN[7]]
    cfg = jsonl(tmp_path, TRAIN, test)  # SMALL_RUN: 4 validation examples per difficulty
    data = build_data(cfg, seed=0)
    assert sorted(ex.difficulty for ex in data.val) == [1] * 4 + [2] * 4
    assert not prompts(data.val) & prompts(test) and prompts(data.val) <= prompts(TRAIN)
    assert len(data.train) == len(TRAIN) - 1 - 8  # the test prompt and the held-back slice
    assert data.report["split_overlap_dropped"] == {"train": 9, "val": 0}
    assert_disjoint(data, distinct=False)
    assert build_data(cfg, seed=5).val == data.val  # the same slice for every training seed
    # evaluation rebuilds the same validation split without training
    assert build_data(cfg, seed=0, train=False, val=True).val == data.val
    tiny = jsonl(tmp_path, TRAIN[:6], test, None, "data.n_val_per_difficulty=3")
    with pytest.raises(ConfigError, match=r"difficulty \d has 3 distinct prompts.*n_val_per_difficulty=3.*task.val"):
        build_data(tiny, seed=0)


def test_jsonl_everything_in_test_fails_naming_the_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="every training prompt occurs in the test file"):
        build_data(jsonl(tmp_path, TRAIN[:3], TRAIN[:3], TRAIN[3:4]), seed=0)


def test_curriculum_needs_every_trained_level_in_validation(tmp_path: Path) -> None:
    """A level missing from validation could never unlock the next: an error at build time."""
    val = [(*chain(9, 1, "-"), 1)]  # level 1 only
    cfg = jsonl(tmp_path, TRAIN, [(*chain(3, 4, "-"), 1)], val, "data.curriculum.enabled=true")
    data = build_data(cfg, seed=0)
    with pytest.raises(ConfigError, match=r"validation split has no examples of training difficulties \[2\]"):
        build_curriculum(cfg, data.train, data.val)


def test_jsonl_run_reports_dropped_counts_and_validation_accuracy(tmp_path: Path, caplog) -> None:
    test = [TRAIN[0], TRAIN[0], (*chain(3, 4, "-"), 1), (*chain(4, 3, "-"), 2)]
    cfg = jsonl(tmp_path, TRAIN, test, None, "trainer.max_steps=4", "trainer.val_check_interval=2")
    with caplog.at_level("INFO", logger="odelm.build"):
        record = train.run(cfg, run_dir=tmp_path / "run")
    assert record["split_overlap_dropped"] == {"train": 1 + 8, "val": 0} and record["test_duplicate_prompts"] == 1
    assert "dropped 9 training and 0 validation examples" in caplog.text
    assert set(record["val_accuracy_by_difficulty"]) == {"1", "2"} and 0 <= record["val_accuracy"] <= 1
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["n_val"] == 8 and saved["n_train"] == len(TRAIN) - 9 and "val_accuracy" in saved


def test_train_params_change_training_only_and_keep_the_splits_disjoint() -> None:
    """task.train_params draws the training split from another distribution (here every maze's goal in a
    room farthest from its start); validation and test are the very examples drawn without it, and no
    training prompt is one of theirs."""
    base = ["task=maze", "task.params.extra_openings=0", *small("maze")]
    plain = build_data(compose_config("train", base), seed=0)
    far = build_data(compose_config("train", [*base, "task.train_params={far_goal:1}"]), seed=0)
    assert [ex.prompt for ex in far.test] == [ex.prompt for ex in plain.test]
    assert [ex.prompt for ex in far.val] == [ex.prompt for ex in plain.val]
    assert_disjoint(far)
    task = Maze(extra_openings=0)
    assert all(goal_is_farthest(ex.prompt) for ex in far.train)
    assert not all(goal_is_farthest(ex.prompt) for ex in plain.train)
    assert all(task.check(ex) for ex in far.train)


def goal_is_farthest(prompt: str) -> bool:
    rows = prompt[:-1].split("|")
    n = len(rows)
    open_cells = {r * n + c for r in range(n) for c in range(n) if rows[r][c] != "#"}
    start = next(i for i in open_cells if rows[i // n][i % n] == "S")
    goal = next(i for i in open_cells if rows[i // n][i % n] == "G")
    dist = _distances(open_cells, start, n)
    rooms = [r * n + c for r in range(1, n, 2) for c in range(1, n, 2)]
    return dist[goal] == max(dist[room] for room in rooms)


@pytest.mark.parametrize("name, given, named", [
    ("maze", "task.train_params={far_goal:2}", "task.train_params={'far_goal': 2}: maze: far_goal must be a number in [0, 1], got 2"),
    ("maze", "task.train_params={no_such:1}", "task.train_params={'no_such': 1}"),
    ("maze", "task.train_params=3", "task.train_params must be a mapping"),
    ("pointer_chase", "task.train_params={n_letters:20}", "changes the task's alphabet (adds 'klmnopqrst')"),
])
def test_bad_train_params_fail_before_any_example_is_drawn(name: str, given: str, named: str, monkeypatch) -> None:
    def no_draws(*args, **kwargs):
        raise AssertionError("an example was drawn before task.train_params was checked")

    monkeypatch.setattr(build_module, "generate_distinct", no_draws)
    monkeypatch.setattr(build_module, "generate_excluding", no_draws)
    cfg = compose_config("train", [f"task={name}", *small(name), given])
    with pytest.raises(ConfigError, match=re.escape(named)):
        build_data(cfg, seed=0)


def test_train_params_are_refused_for_jsonl(tmp_path: Path) -> None:
    cfg = jsonl(tmp_path, TRAIN, TRAIN[:2], None, "task.train_params={far_goal:0.5}")
    with pytest.raises(ConfigError, match="is for generated tasks"):
        build_data(cfg, seed=0)


def test_validation_levels_can_lie_beyond_the_trained_ones() -> None:
    """task.val_difficulties: validation at other levels than training (to choose on extrapolation
    without reading test), still disjoint from test and training; learned positions are not picked
    when validation asks for longer inputs than were trained."""
    base = [*SMALL, "task=prefix_parity", "task.train_difficulties=[5,6]", "task.test_difficulties=[5,6]"]
    plain = build_data(compose_config("train", base), seed=0)
    assert sorted({ex.difficulty for ex in plain.val}) == [5, 6]  # default: the trained levels
    cfg = compose_config("train", [*base, "task.val_difficulties=[6,9]"])
    data = build_data(cfg, seed=0)
    assert sorted(ex.difficulty for ex in data.val) == [6] * 4 + [9] * 4
    assert_disjoint(data)
    assert [ex for ex in data.val if ex.difficulty == 6] == [ex for ex in plain.val if ex.difficulty == 6]
    from odelm.build import resolve_positions
    for config, built, expected in ((compose_config("train", base), plain, "learned"), (cfg, data, "none")):
        resolve_positions(config, built, built.tokenizer)
        assert config.model.pos_embedding == expected


def test_jsonl_validation_levels_are_selected_and_each_must_be_present(tmp_path: Path) -> None:
    test = [(*chain(3, 4, "-"), 1), (*chain(4, 3, "-"), 2)]
    held_back = build_data(jsonl(tmp_path, TRAIN, test, None, "task.val_difficulties=[2]"), seed=0)
    assert sorted(ex.difficulty for ex in held_back.val) == [2] * 4
    assert_disjoint(held_back, distinct=False)
    # a level only validated on (never trained) may give all its prompts to validation
    only_val = [(*chain(a, 1, "*"), 5) for a in range(4)]
    cfg = jsonl(tmp_path, TRAIN + only_val, test, None, "task.train_difficulties=[1,2]", "task.val_difficulties=[5]")
    assert prompts(build_data(cfg, seed=0).val) == prompts(only_val)
    val = [(*chain(9, 1, "-"), 1), (*chain(9, 2, "-"), 2)]
    with pytest.raises(ConfigError, match=r"validation \(.*val.jsonl\) has no examples of difficulty \[3\]"):
        build_data(jsonl(tmp_path, TRAIN, test, val, "task.val_difficulties=[1,3]"), seed=0)


def test_train_sample_is_base_training_examples_of_the_trained_levels(tmp_path: Path) -> None:
    """The final record's training-sample accuracy is read on a fixed, seeded sample of training
    examples: five times validation's count per level (all of a level that has fewer), only of the
    levels asked for, and the base examples even when training augments them."""
    from odelm.data import TaskDataModule

    class Reverse:  # an augmentation that changes every prompt
        augments = True

        def augment(self, ex: Example, rng) -> Example:
            return Example(ex.prompt[::-1], ex.answer, ex.difficulty)

    val = [(*chain(9, 1, "-"), 1), (*chain(9, 3, "-"), 1), (*chain(9, 2, "-"), 2)]  # 2 of level 1, 1 of level 2
    data = build_data(jsonl(tmp_path, TRAIN, [(*chain(3, 4, "-"), 1)], val), seed=0)
    module = lambda seed=0, augment=None: TaskDataModule(  # noqa: E731
        data.tokenizer, data.train, data.val, data.test, 4, 4, seed, augment=augment)
    sample = module(augment=Reverse()).train_sample_dataloader().dataset
    levels = [ex.difficulty for ex in sample.examples]
    assert levels.count(1) == 10 and levels.count(2) == 5
    assert all(ex in data.train for ex in sample.examples) and not prompts(sample.examples) & prompts(data.val)
    assert [sample[i][0] for i in range(len(sample))] == [data.tokenizer.encode_example(ex)[0] for ex in sample.examples]
    assert sample.examples == module().train_sample_dataloader().dataset.examples  # fixed for a seed
    assert sample.examples != module(seed=1).train_sample_dataloader().dataset.examples
    only_first = module().train_sample_dataloader(levels=[1]).dataset.examples
    assert {ex.difficulty for ex in only_first} == {1}
    everything = module().train_sample_dataloader(factor=100).dataset.examples  # more than a level holds
    assert sorted(everything, key=str) == sorted(data.train, key=str)
    # validation only at levels never trained: nothing to set beside it
    beyond = build_data(jsonl(tmp_path, TRAIN, [(*chain(3, 4, "-"), 1)], [(*chain(9, 1, "-"), 3)]), seed=0)
    assert TaskDataModule(beyond.tokenizer, beyond.train, beyond.val, beyond.test, 4, 4, 0).train_sample_dataloader() is None


def test_memorised_levels_need_the_gap_and_more_than_sampling_noise() -> None:
    record = {"train_sample_accuracy_by_difficulty": {"1": 1.0, "2": 0.55, "3": 0.3, "4": 0.9},
              "val_accuracy_by_difficulty": {"1": 0.85, "2": 0.5, "3": 0.5, "4": 0.8}}
    assert train.memorised_levels(record) == {"1": (1.0, 0.85), "4": (0.9, 0.8)}  # a gap of exactly 0.1 counts
    assert train.memorised_levels(record, gap=0.05) == {"1": (1.0, 0.85), "2": (0.55, 0.5), "4": (0.9, 0.8)}
    # the same accuracies on 10 validation examples per level: 0.1 is within sampling noise there
    small = {**record, "train_sample_n_by_difficulty": {d: 50 for d in "1234"}, "val_n_by_difficulty": {d: 10 for d in "1234"}}
    assert train.memorised_levels(small) == {}  # 0.15 and 0.1 against two standard errors of 0.23 and 0.27
    large = {**record, "train_sample_n_by_difficulty": {d: 500 for d in "1234"}, "val_n_by_difficulty": {d: 100 for d in "1234"}}
    assert train.memorised_levels(large) == {"1": (1.0, 0.85), "4": (0.9, 0.8)}
    assert train.memorised_levels({"train_sample_accuracy_by_difficulty": None, "val_accuracy_by_difficulty": {}}) == {}


def test_a_run_trained_on_answers_validation_contradicts_warns(tmp_path: Path, capsys) -> None:
    """Training answers that are all "1" and validation answers that are all "7" (a shift, the
    plainest case of training accuracy above validation's): the record shows both and the run warns."""
    train_items = [(f"{a}{b}", "1", 1) for a in range(10) for b in range(10)]
    val = [(f"{a}{b}x", "7", 1) for a in range(4) for b in range(2)]
    cfg = jsonl(tmp_path, train_items, [("99x", "7", 1)], val, "trainer.max_steps=60", "optim.lr=1e-2",
                "trainer.val_check_interval=30")
    record = train.run(cfg, run_dir=tmp_path / "run")
    assert record["train_sample_accuracy_by_difficulty"] == {"1": 1.0} and record["val_accuracy_by_difficulty"] == {"1": 0.0}
    assert record["train_sample_n_by_difficulty"] == {"1": 40} and record["val_n_by_difficulty"] == {"1": 8}
    assert "by 0.1 or more (level 1: 1.00 vs 0.00): the model may be memorising" in capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["train_sample_accuracy"] == 1.0
