"""The recipe-robustness benchmark's JSONL tasks: disjoint splits, and answers that an independent
re-computation confirms."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments"))
import robustness_tasks  # noqa: E402


def _check(task: str, prompt: str, answer: str) -> bool:
    """Each answer re-derived from the prompt alone, by other code than the generator's."""
    if task == "pointer_chase":
        s, x, hops = prompt.split(":")
        x = int(x)
        for _ in range(int(hops)):
            x = int(s[x])
        return answer == str(x)
    if task == "perm_compose":
        perms = prompt.split(".")
        out = []
        for start in "abcde":
            c = start
            for p in perms:  # the letter at the position of c's index in each permutation
                c = p["abcde".index(c)]
            out.append(c)
        return answer == "".join(out)
    if task == "count_char":
        text, char = prompt.split("?")
        return answer == str(sum(ch == char for ch in text))
    if task == "reverse":
        return answer == "".join(reversed(prompt))
    if task == "sort_letters":
        return sorted(answer) == sorted(prompt) and all(a <= b for a, b in zip(answer, answer[1:]))
    if task == "mod_chain":
        value = int(prompt[0])
        for op, digit in zip(prompt[1::2], prompt[2::2]):
            value = eval(f"{value}{op}{digit}") % 10
        return answer == str(value)
    raise AssertionError(task)


@pytest.mark.parametrize("task", sorted(robustness_tasks.TASKS))
def test_benchmark_tasks_have_disjoint_splits_and_correct_answers(task: str, tmp_path: Path) -> None:
    sizes = robustness_tasks.write_task(task, tmp_path, n_train=600, n_val=10, n_test=20)
    assert sizes == {"test": 60, "val": 30, "train": 600}
    rows = {split: [json.loads(line) for line in open(tmp_path / task / f"{split}.jsonl")] for split in sizes}
    test, val = {r["prompt"] for r in rows["test"]}, {r["prompt"] for r in rows["val"]}
    assert len(test) == 60 and len(val) == 30 and not test & val
    assert not {r["prompt"] for r in rows["train"]} & (test | val)
    assert all(_check(task, r["prompt"], r["answer"]) for split in rows.values() for r in split)
    assert {r["difficulty"] for r in rows["train"]} == set(robustness_tasks.LEVELS)


def test_a_robustness_run_is_the_default_command_and_records_its_curriculum(tmp_path: Path) -> None:
    """One benchmark run (a few steps): the default recipe's curriculum is on, and where it stood at the
    end (level, levels forced open by patience) is recorded in the row, beside the accuracies."""
    import robustness

    robustness_tasks.write_task("reverse", tmp_path / "data", n_train=300, n_val=5, n_test=5)
    row = robustness.run_one("reverse", "looped", tmp_path / "data", tmp_path, minutes=1.0, target=1.0, threads=1,
                             extra=["trainer.max_steps=6", "trainer.val_check_interval=2", "model.d_model=16",
                                    "model.n_heads=2", "data.curriculum.patience=1", "data.curriculum.min_delta=1",
                                    "trainer.log_every_n_steps=1"])
    assert row["status"] == "ok", row.get("error")
    assert "data.curriculum" not in row["command"].replace("data.curriculum.patience=1", "").replace(
        "data.curriculum.min_delta=1", "")  # the curriculum comes from the default, not from an override
    assert row["train_steps"] == 6 and row["curriculum_level"] == 3 and row["curriculum_forced"] == [1, 2]
    first = row["curriculum_first_step"]  # where each level began, from the run's training rows
    assert sorted(first) == [1, 2, 3] and first[1] < first[2] < first[3] <= 6
    sample = row["train_sample_accuracy_by_difficulty"]  # every level was unlocked (forced), so all trained
    assert set(sample) == {"1", "2", "3"} and all(0 <= v <= 1 for v in sample.values())
    robustness.write_table([row], tmp_path, minutes=1.0, target=1.0)
    line = (tmp_path / "robustness.md").read_text().splitlines()[-1]
    assert line.endswith(" / ".join(f"{sample[k]:.2f}" for k in "123") + " |")  # the training-sample column


def test_rows_of_earlier_invocations_keep_the_settings_they_ran_under(tmp_path: Path, monkeypatch) -> None:
    """robustness.json is appended to by later invocations (another model, another seed): each row keeps
    its own invocation's settings (overrides, threads, commit), whatever the latest invocation was."""
    import robustness

    monkeypatch.setattr(robustness, "make_data", lambda tasks, *a, **k: tasks)
    monkeypatch.setattr(robustness, "run_one", lambda task, model, *a, **k: {
        "task": task, "model": model, "status": "ok", "val_accuracy_by_difficulty": {}, "train_minutes": 0.0})
    monkeypatch.setattr(robustness, "write_table", lambda *a, **k: None)
    robustness.main(["--tasks", "reverse", "--models", "ode", "--threads", "2", "--out", str(tmp_path), "seed=2"])
    robustness.main(["--tasks", "reverse", "--models", "looped", "--threads", "1", "--out", str(tmp_path), "seed=5"])
    record = json.loads((tmp_path / "robustness.json").read_text())
    rows = {r["model"]: r["run_settings"] for r in record["rows"]}
    assert rows["ode"]["extra"] == ["seed=2"] and rows["ode"]["threads"] == 2
    assert rows["looped"]["extra"] == ["seed=5"] and rows["looped"]["threads"] == 1
    assert record["settings"]["extra"] == ["seed=5"]  # the latest invocation's
