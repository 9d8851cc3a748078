"""User-style JSONL tasks for the recipe-robustness benchmark (experiments/robustness.py).

Each task is a function `sample(rng, level) -> (prompt, answer)`; `write_task` draws disjoint
train / validation / test files from it (test prompts first, then validation prompts that are not
in test, then training prompts that are in neither), each line {"prompt", "answer", "difficulty"}.
Two tasks come from reasoning-gym's generators (scored there by its own `score_answer`); they are
skipped with a message when the optional extra is not installed.

Tasks (level = difficulty 1..3, "multi" = multi-token answer):
  pointer_chase   read the x-th symbol of a digit string, then the symbol at that index, ... (level hops)
  perm_compose    compose level+1 permutations of "abcde" (multi)
  count_char      how many times a letter occurs in a string of 6/10/14 letters
  reverse         reverse a digit string of 3/5/7 digits (multi)
  sort_letters    sort 3/5/7 letters (multi)
  mod_chain       left-to-right chain of level+1 operations mod 10 (+, -, *)
  rg_chain_sum    reasoning-gym chain_sum, level+1 terms of 1-2 digits (answer may be negative or 2-3 digits)
  rg_spell_backward  reasoning-gym spell_backward, English words of 3-4 / 5-6 / 7-8 letters (multi)
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Callable

LEVELS = (1, 2, 3)


def pointer_chase(rng: random.Random, level: int) -> tuple[str, str]:
    s = [rng.randrange(8) for _ in range(8)]
    x = rng.randrange(8)
    prompt = "".join(map(str, s)) + ":" + str(x) + ":" + str(level)
    for _ in range(level):
        x = s[x]
    return prompt, str(x)


def perm_compose(rng: random.Random, level: int) -> tuple[str, str]:
    letters = "abcde"
    perms = []
    for _ in range(level + 1):
        p = list(letters)
        rng.shuffle(p)
        perms.append("".join(p))
    # apply left to right: result[i] = p_k[... p_1[i]]
    state = list(range(5))
    for p in perms:
        state = [letters.index(p[i]) for i in state]
    return ".".join(perms), "".join(letters[i] for i in state)


def count_char(rng: random.Random, level: int) -> tuple[str, str]:
    n = 2 + 4 * level
    s = "".join(rng.choice("abcd") for _ in range(n))
    c = rng.choice("abcd")
    return s + "?" + c, str(s.count(c))


def reverse(rng: random.Random, level: int) -> tuple[str, str]:
    s = "".join(rng.choice("0123456789") for _ in range(1 + 2 * level))
    return s, s[::-1]


def sort_letters(rng: random.Random, level: int) -> tuple[str, str]:
    s = "".join(rng.choice("abcdefghij") for _ in range(1 + 2 * level))
    return s, "".join(sorted(s))


def mod_chain(rng: random.Random, level: int) -> tuple[str, str]:
    value = rng.randrange(10)
    prompt = str(value)
    for _ in range(level + 1):
        op, b = rng.choice("+-*"), rng.randrange(10)
        value = {"+": value + b, "-": value - b, "*": value * b}[op] % 10
        prompt += op + str(b)
    return prompt, str(value)


TASKS: dict[str, Callable[[random.Random, int], tuple[str, str]]] = {
    "pointer_chase": pointer_chase,
    "perm_compose": perm_compose,
    "count_char": count_char,
    "reverse": reverse,
    "sort_letters": sort_letters,
    "mod_chain": mod_chain,
}
RG_TASKS = ("rg_chain_sum", "rg_spell_backward")


def _rg_pool(name: str, level: int, size: int, seed: int) -> list[dict]:
    """`size` reasoning-gym entries of one level (its own generator settings per level)."""
    import reasoning_gym

    if name == "rg_chain_sum":
        ds = reasoning_gym.create_dataset("chain_sum", seed=seed, size=size, min_terms=level + 1,
                                          max_terms=level + 1, min_digits=1, max_digits=2)
    else:
        lo, hi = {1: (3, 4), 2: (5, 6), 3: (7, 8)}[level]
        ds = reasoning_gym.create_dataset("spell_backward", seed=seed, size=size, min_word_len=lo, max_word_len=hi)
    return [dict(entry) for entry in ds]


def rg_prompt(name: str, entry: dict) -> str:
    """The task's own input without reasoning-gym's fixed English instruction (the model sees only
    the part that varies): the expression of chain_sum, the word of spell_backward."""
    meta = entry["metadata"]
    return meta["expression"].replace(" ", "") if name == "rg_chain_sum" else meta["word"]


def write_task(name: str, out: Path, n_train: int, n_val: int, n_test: int, seed: int = 0) -> dict:
    """Writes out/<name>/{train,val,test}.jsonl (n_val / n_test distinct prompts per level, n_train
    examples in all); no test prompt is in validation or training, no validation prompt in training.
    Returns the split sizes."""
    if name not in TASKS and name not in RG_TASKS:
        raise ValueError(f"unknown robustness task {name!r}; choose one of {sorted(TASKS) + list(RG_TASKS)}")
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {"test": n_test, "val": n_val, "train": n_train // len(LEVELS)}
    splits: dict[str, list[dict]] = {split: [] for split in sizes}
    for level in LEVELS:
        held: set[str] = set()  # test and validation prompts of this level
        for k, split in enumerate(sizes):
            if name in RG_TASKS:  # seeds far apart per level and split: reasoning-gym's item i uses seed + i
                pool = iter(_rg_pool(name, level, 3 * sizes[split] + 100, seed + 10_000_000 * (3 * level + k)))
                draw = lambda: (lambda e: (rg_prompt(name, e), e["answer"]))(next(pool))  # noqa: E731
            else:
                rng = random.Random(f"{seed}-{name}-{split}-{level}")
                draw = lambda: TASKS[name](rng, level)  # noqa: E731
            chosen: list[dict] = []
            while len(chosen) < sizes[split]:
                try:
                    prompt, answer = draw()
                except StopIteration:
                    raise RuntimeError(f"{name} level {level}: too few new {split} prompts") from None
                if prompt in held:
                    continue
                if split != "train":
                    held.add(prompt)
                chosen.append({"prompt": prompt, "answer": answer, "difficulty": level})
            splits[split] += chosen
    for split, rows in splits.items():
        with open(folder / f"{split}.jsonl", "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    return {split: len(rows) for split, rows in splits.items()}
