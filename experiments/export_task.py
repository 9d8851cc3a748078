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
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from odelm.build import build_data

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def write_jsonl(path: Path, examples) -> None:
    path.write_text("".join(json.dumps({"prompt": e.prompt, "answer": e.answer, "difficulty": e.difficulty}) + "\n"
                            for e in examples))


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
        write_jsonl(out / f"{split}.jsonl", getattr(data, split))
    record = {
        "command": " ".join(["python", "experiments/export_task.py", "--out", args.out, *args.overrides]),
        "task": OmegaConf.to_container(cfg.task, resolve=True),
        "seed": cfg.seed,
        "n_val_per_difficulty": cfg.data.n_val_per_difficulty,
        "counts": {split: len(getattr(data, split)) for split in ("train", "val", "test")},
        "generation_seconds": round(seconds, 1),
        "train_with": (f"task=jsonl task.train={out}/train.jsonl task.val={out}/val.jsonl "
                       f"task.test={out}/test.jsonl task.layout={data.layout} task.checker={cfg.task.name if data.task else 'null'}"
                       + "".join(f" +task.params.{k}={v}" for k, v in cfg.task.params.items())),
    }
    (out / "export.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["counts"]), f"{seconds:.1f} s ->", out, file=sys.stderr)
    return record


if __name__ == "__main__":
    main()
