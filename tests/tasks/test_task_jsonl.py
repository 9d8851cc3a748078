"""load_jsonl and JsonlTask: good data, and every error naming the path and line number."""
import json
import os
import re

import pytest

from odelm.tasks import Example, JsonlTask, TaskError, build_task, generate, load_jsonl


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_loads_with_defaults_blank_lines_and_extra_keys(tmp_path):
    path = write(
        tmp_path / "d.jsonl",
        '{"prompt": "1+1", "answer": "2", "difficulty": 1}\n\n   \n{"prompt": "", "answer": "x", "source": "me"}\n',
    )
    assert load_jsonl(path) == [Example("1+1", "2", 1), Example("", "x", 0)]
    assert load_jsonl(str(path)) == load_jsonl(path)


def test_bom_and_crlf(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"prompt": "a", "answer": "b"}\r\n{"prompt": "c", "answer": "d"}\r\n')
    assert load_jsonl(path) == [Example("a", "b", 0), Example("c", "d", 0)]


GOOD = '{"prompt": "p", "answer": "a"}\n'


@pytest.mark.parametrize(
    "line, match",
    [
        ('{"prompt": "p", "answer": "a"', "invalid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('"text"', "expected a JSON object, got str"),
        ('{"answer": "a"}', "missing required key 'prompt'"),
        ('{"prompt": "p"}', "missing required key 'answer'"),
        ('{"prompt": 5, "answer": "a"}', "key 'prompt' must be a string, got int 5"),
        ('{"prompt": "p", "answer": null}', "key 'answer' must be a string, got NoneType None"),
        ('{"prompt": "p", "answer": ""}', "key 'answer' is an empty string"),
        ('{"prompt": "p", "answer": "a", "difficulty": 1.0}', "key 'difficulty' must be an integer >= 0, got float"),
        ('{"prompt": "p", "answer": "a", "difficulty": true}', "got bool True"),
        ('{"prompt": "p", "answer": "a", "difficulty": "2"}', "got str '2'"),
        ('{"prompt": "p", "answer": "a", "difficulty": -1}', "got int -1"),
    ],
)
def test_line_errors_name_path_and_line(tmp_path, line, match):
    path = write(tmp_path / "bad.jsonl", GOOD + "\n" + line + "\n" + GOOD)
    with pytest.raises(TaskError, match=match) as info:
        load_jsonl(path)
    message = str(info.value)
    assert message.startswith(f"{path}:3: ") and "\n" not in message


def test_invalid_utf8_names_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(GOOD.encode() + b'{"prompt": "\xff", "answer": "a"}\n')
    with pytest.raises(TaskError, match=re.escape(f"{path}:2: not valid UTF-8")):
        load_jsonl(path)


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_file(tmp_path, text):
    path = write(tmp_path / "empty.jsonl", text)
    with pytest.raises(TaskError, match=re.escape(f"{path}: no examples")):
        load_jsonl(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(TaskError, match=re.escape(f"{tmp_path / 'nope.jsonl'}: JSONL file does not exist")):
        load_jsonl(tmp_path / "nope.jsonl")
    with pytest.raises(TaskError, match=re.escape(f"{tmp_path}: is a directory")):
        load_jsonl(tmp_path)
    with pytest.raises(TaskError, match="path must be a path"):
        load_jsonl(3)


def test_unreadable_file(tmp_path, monkeypatch):
    path = write(tmp_path / "locked.jsonl", GOOD)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("builtins.open", refuse)
    with pytest.raises(TaskError, match=re.escape(f"{path}: cannot read JSONL file (Permission denied)")):
        load_jsonl(path)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_by_mode(tmp_path):
    path = write(tmp_path / "locked.jsonl", GOOD)
    path.chmod(0)
    with pytest.raises(TaskError, match=re.escape(f"{path}: cannot read")):
        load_jsonl(path)


def test_home_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    write(tmp_path / "d.jsonl", GOOD)
    assert load_jsonl("~/d.jsonl") == [Example("p", "a", 0)]
    task = JsonlTask(train="~/d.jsonl", test="~/d.jsonl")
    assert task.train == str(tmp_path / "d.jsonl")


def make_task(tmp_path):
    rows = lambda pairs: "".join(json.dumps({"prompt": p, "answer": a, "difficulty": 2}) + "\n" for p, a in pairs)
    train = write(tmp_path / "train.jsonl", rows([("what is 1+1?", "2"), ("capital of France?", "Paris")]))
    test = write(tmp_path / "test.jsonl", rows([("2*3=", "6"), ("what is 1+1?", "two")]))
    return build_task("jsonl", train=str(train), test=str(test))


def test_task_examples_check_and_alphabet(tmp_path):
    task = make_task(tmp_path)
    assert [ex.answer for ex in task.train_examples] == ["2", "Paris"]
    assert [ex.prompt for ex in task.test_examples] == ["2*3=", "what is 1+1?"]
    assert task.check(Example("2*3=", "6", 0)) and not task.check(Example("2*3=", "7", 0))
    assert task.check(Example("what is 1+1?", "2", 0)) and task.check(Example("what is 1+1?", "two", 0))
    alphabet = task.alphabet()
    assert alphabet == "".join(sorted(set(alphabet)))
    assert set(alphabet) == set("what is 1+1?2capital of France?Paris2*3=6two")
    assert task.describe()["n_train"] == 2


def test_task_errors(tmp_path):
    task = make_task(tmp_path)
    with pytest.raises(TaskError, match="prompt 'unknown' is in neither"):
        task.check(Example("unknown", "1", 0))
    with pytest.raises(TaskError, match="not generative"):
        task.sample(None, 1)
    with pytest.raises(TaskError, match="not generative"):
        generate(task, [1], 1, 0)


def test_task_fails_at_construction_on_bad_test_file(tmp_path):
    train = write(tmp_path / "train.jsonl", GOOD)
    test = write(tmp_path / "test.jsonl", GOOD + '{"prompt": "p"}\n')
    with pytest.raises(TaskError, match=re.escape(f"{test}:2: missing required key 'answer'")):
        JsonlTask(train=str(train), test=str(test))
