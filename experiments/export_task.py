"""Write a task's train / validation / test splits to JSONL, exactly as a training run would draw them,
so that an expensive generator runs once (here) and runs elsewhere train from the files
(`task=jsonl task.checker=<the task>`), or to inspect a task's data.

    python experiments/export_task.py task=sudoku9_hard --out data/sudoku9_hard [any train.yaml override]

The splits are those of `odelm.build.build_data` for the composed config and its `seed`: disjoint in
prompts (no test prompt in validation or training, no validation prompt in training). Writes
train.jsonl, val.jsonl, test.jsonl and export.json (the resolved task and data settings, the counts, and
the command that reproduces the files with the files' task config).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from odelm.build import build_data
from odelm.tasks import save_jsonl

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def hydra_value(value) -> str:
    """`value` in Hydra's override grammar: null, true/false, numbers, quoted strings, [..] lists and
    {key: ..} dicts (keys unquoted, as the grammar requires)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        for key in value:
            if not (isinstance(key, int) or (isinstance(key, str) and key.isidentifier())):
                raise SystemExit(f"export_task: task.params key {key!r} cannot be written as a Hydra override")
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    raise SystemExit(f"export_task: task.params value {value!r} cannot be written as a Hydra override")



def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for train.jsonl, val.jsonl, test.jsonl")
    parser.add_argument("overrides", nargs="*", help="train.yaml overrides, e.g. task=sudoku9_hard seed=0")
    args = parser.parse_args(argv)
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="train", overrides=args.overrides)
    if cfg.task.name == "jsonl":
        raise SystemExit("export_task: task=jsonl is already files; choose a generated task")
    start = time.perf_counter()
    data = build_data(cfg, seed=cfg.seed)
    seconds = time.perf_counter() - start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        save_jsonl(out / f"{split}.jsonl", getattr(data, split))
    train_with = ["task=jsonl", f"task.train={out}/train.jsonl", f"task.val={out}/val.jsonl",
                  f"task.test={out}/test.jsonl", f"task.layout={data.layout}", f"task.checker={cfg.task.name if data.task else 'null'}",
                  *(f"+task.params.{k}={hydra_value(v)}"
                    for k, v in OmegaConf.to_container(cfg.task.params, resolve=True).items())]
    record = {
        "command": " ".join(["python", "experiments/export_task.py", "--out", args.out,
                             *(shlex.quote(o) for o in args.overrides)]),
        "task": OmegaConf.to_container(cfg.task, resolve=True),
        "seed": cfg.seed,
        "n_val_per_difficulty": cfg.data.n_val_per_difficulty,
        "counts": {split: len(getattr(data, split)) for split in ("train", "val", "test")},
        "generation_seconds": round(seconds, 1),
        "train_with": train_with,  # the overrides that train from the files (one list item each)
        "train_with_shell": " ".join(shlex.quote(o) for o in train_with),
    }
    (out / "export.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["counts"]), f"{seconds:.1f} s ->", out, file=sys.stderr)
    return record


if __name__ == "__main__":
    main()
