"""Split overlap: for every built-in task at its conf default, and for a JSONL task, the fraction of
each test difficulty whose prompt is unseen in training and in validation (it should be 1.0).

    OMP_NUM_THREADS=1 python experiments/split_overlap.py --out experiments/results/split_overlap.json

For comparison, each generated task is also measured with the splits drawn as before disjoint splits
existed ("legacy": training from the run seed, test per difficulty from one stream of task.test_seed,
validation from task.test_seed + 1, nothing excluded). The JSONL case is built from files that share
prompts on purpose (modular_chain mod 23 chains written out with the legacy draws), to show the overlap being
dropped and counted. A default that cannot supply its distinct test prompts is refused before training;
the table records the refusal and its message. Extra Hydra overrides apply to every task, e.g.
`python experiments/split_overlap.py task.n_train=10000`.
Writes JSON and a Markdown table beside it (same stem, .md).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from odelm.build import ConfigError, build_data  # noqa: E402
from odelm.precision import configure_arithmetic  # noqa: E402
from odelm.tasks import TASKS, build_task, generate, save_jsonl  # noqa: E402


def unseen_by_difficulty(test, held) -> dict[str, float]:
    by: dict[int, list[bool]] = {}
    for ex in test:
        by.setdefault(ex.difficulty, []).append(ex.prompt not in held)
    return {str(d): sum(v) / len(v) for d, v in sorted(by.items())}


def legacy_splits(cfg):
    """The splits as drawn before they were made disjoint (odelm <= this change), for comparison."""
    t = cfg.task
    task = build_task(t.name, **OmegaConf.to_container(t.params, resolve=True))
    train = generate(task, list(t.train_difficulties), t.n_train, cfg.seed)
    test = generate(task, list(t.test_difficulties), t.n_test_per_difficulty, t.test_seed, per_difficulty=True)
    val = generate(task, list(t.train_difficulties), cfg.data.n_val_per_difficulty, t.test_seed + 1,
                   per_difficulty=True)
    return train, val, test


def measure(cfg, label: str, overrides: list[str], legacy: bool) -> dict:
    row: dict = {"task": label, "overrides": overrides}
    if legacy:
        train, val, test = legacy_splits(cfg)
        row["legacy_unseen_by_difficulty"] = unseen_by_difficulty(test, {ex.prompt for ex in train + val})
    try:
        data = build_data(cfg, cfg.seed)
    except ConfigError as err:
        return {**row, "status": "refused", "error": str(err)}
    held = {ex.prompt for ex in data.train + data.val}
    return {**row, "status": "ok", "n_train": len(data.train), "n_val": len(data.val), "n_test": len(data.test),
            "unseen_by_difficulty": unseen_by_difficulty(data.test, held),
            "val_unseen_in_train": sum(ex.prompt not in {e.prompt for e in data.train} for ex in data.val)
            / len(data.val),
            **data.report}



def markdown(rows: list[dict]) -> str:
    lines = ["| task | status | n_train / n_val / n_test | unseen test fraction per difficulty | "
             "legacy (before) | dropped (train / val) |", "|---|---|---|---|---|---|"]
    fmt = lambda by: " / ".join(f"{d}: {v:.3f}" for d, v in by.items()) if by else "-"  # noqa: E731
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['task']} | refused: {r['error']} | - | - | {fmt(r.get('legacy_unseen_by_difficulty'))}"
                         " | - |")
            continue
        dropped = r["split_overlap_dropped"]
        lines.append(f"| {r['task']} | ok | {r['n_train']} / {r['n_val']} / {r['n_test']} | "
                     f"{fmt(r['unseen_by_difficulty'])} | {fmt(r.get('legacy_unseen_by_difficulty'))} | "
                     f"{dropped['train']} / {dropped['val']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="experiments/results/split_overlap.json")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides applied to every task")
    args = parser.parse_args(argv)
    configure_arithmetic()
    rows = []
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for name in sorted(n for n in TASKS if n != "jsonl"):
            overrides = [f"task={name}", *args.overrides]
            rows.append(measure(compose("train", overrides=overrides), name, overrides, legacy=True))
            print(json.dumps(rows[-1]), flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            # JSONL files that overlap: modular_chain mod 23 chains of 1-3 operations, drawn the legacy way
            source = compose("train", overrides=["task=modular_chain", "task.params.modulus=23", "task.n_train=20000",
                                                 "task.n_test_per_difficulty=100", "task.test_difficulties=[1,2,3]"])
            train, _, test = legacy_splits(source)
            save_jsonl(Path(tmp, "train.jsonl"), train)
            save_jsonl(Path(tmp, "test.jsonl"), test)
            overrides = ["task=jsonl", f"task.train={tmp}/train.jsonl", f"task.test={tmp}/test.jsonl",
                         *args.overrides]
            row = measure(compose("train", overrides=overrides), "jsonl (modular_chain mod 23 files)",
                          ["task=jsonl", "(train: 20000 legacy draws of 1-3 ops; test: 100 per difficulty 1-3)"],
                          legacy=False)
            held_legacy = {ex.prompt for ex in train}
            row["legacy_unseen_by_difficulty"] = unseen_by_difficulty(test, held_legacy)
            rows.append(row)
            print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python experiments/split_overlap.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out.write_text(json.dumps({"command": command.strip(), "rows": rows}, indent=2) + "\n")
    text = markdown(rows)
    out.with_suffix(".md").write_text(f"`{command.strip()}`\n\n{text}\n")
    print(text)
    return rows


if __name__ == "__main__":
    main()
