"""Recipe robustness: does the default training recipe learn tasks it was not tuned on?

For every task of experiments/robustness_tasks.py (user-style JSONL files, 3 difficulty levels,
disjoint train / validation / test prompts) this runs the README's default command

    python -m odelm.train task=jsonl task.train=TRAIN task.val=VAL task.test=TEST [model=...]

with a wall-clock budget (`--minutes`, default 10), stopping at `--target` validation accuracy
(default 0.95, exact match over the trained levels; validation is the VAL file). The test file is
read once, by the final evaluation after training. The table gives steps, minutes, validation
accuracy per level of the final model, and test accuracy per level.

    python experiments/robustness.py --models looped,transformer --jobs 2 --threads 1
    python experiments/robustness.py --tasks pointer_chase,reverse --models looped

Each run gets `--threads` torch threads; `--jobs` runs go side by side (2 × 1 thread fills the
2-core reference machine). Writes <out>/robustness.{json,md} and one run dir per (task, model);
a study already recorded in robustness.json is not re-run unless --force.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import robustness_tasks  # noqa: E402

from odelm.runs import curriculum_first_steps, val_curve  # noqa: E402

ROOT = HERE.parent
ALL_TASKS = list(robustness_tasks.TASKS) + list(robustness_tasks.RG_TASKS)


def make_data(tasks: list[str], data_dir: Path, n_train: int, n_val: int, n_test: int) -> list[str]:
    """Writes the JSONL files (deterministic); returns the tasks that could be made."""
    made = []
    for name in tasks:
        try:
            robustness_tasks.write_task(name, data_dir, n_train, n_val, n_test)
            made.append(name)
        except ImportError:
            print(f"[robustness] skipping {name}: needs the optional extra (pip install reasoning-gym)")
    return made


def run_one(task: str, model: str, data_dir: Path, out: Path, minutes: float, target: float, threads: int,
            extra: list[str]) -> dict:
    run_dir = out / "runs" / f"{task}_{model}"
    folder = data_dir / task
    cmd = [sys.executable, "-m", "odelm.train", "task=jsonl", f"task.train={folder / 'train.jsonl'}",
           f"task.val={folder / 'val.jsonl'}", f"task.test={folder / 'test.jsonl'}", f"model={model}",
           f"trainer.max_time_minutes={minutes}", f"target_accuracy={target}", "trainer.enable_progress_bar=false",
           f"hydra.run.dir={run_dir}", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "WANDB_MODE": "disabled"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    row: dict = {"task": task, "model": model, "command": " ".join(cmd[1:]), "wall_seconds": round(wall, 1)}
    metrics = run_dir / "metrics.json"
    if proc.returncode != 0 or not metrics.exists():
        row["status"] = "failed"
        row["error"] = (proc.stderr or proc.stdout)[-2000:]
        return row
    record = json.loads(metrics.read_text())
    row.update(
        status="ok",
        reached=record.get("target_reached_at_step") is not None,
        train_steps=record["train_steps"],
        train_minutes=round(record["train_seconds"] / 60, 2),
        val_accuracy=record["val_accuracy"],
        val_accuracy_by_difficulty=record["val_accuracy_by_difficulty"],
        test_accuracy=record["accuracy"],
        test_accuracy_by_difficulty=record["accuracy_by_difficulty"],
        val_curve=val_curve(run_dir),
        params=record["params"],
        curriculum_level=record.get("curriculum_level"),  # the newest level trained at the end
        curriculum_forced=record.get("curriculum_forced"),  # levels unlocked past by patience, not accuracy
        curriculum_first_step=curriculum_first_steps(run_dir),  # level -> first logged training step at it
        # accuracy on a sample of training examples of the trained levels; minus validation's: memorised
        train_sample_accuracy_by_difficulty=record.get("train_sample_accuracy_by_difficulty"),
    )
    return row


def _fmt_levels(by_level: dict | None) -> str:
    if not by_level:
        return "–"
    return " / ".join(f"{by_level[k]:.2f}" for k in sorted(by_level, key=int))


def write_table(rows: list[dict], out: Path, minutes: float, target: float) -> None:
    lines = [f"Budget {minutes} min per run, stop at validation accuracy {target}; accuracies per level 1 / 2 / 3.",
             "", "| task | model | reached | steps | minutes | val accuracy | test accuracy | training sample |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["task"], r["model"])):
        if r["status"] != "ok":
            lines.append(f"| {r['task']} | {r['model']} | failed | – | – | – | – | – |")
            continue
        lines.append(f"| {r['task']} | {r['model']} | {'yes' if r['reached'] else 'no'} | {r['train_steps']} | "
                     f"{r['train_minutes']} | {_fmt_levels(r['val_accuracy_by_difficulty'])} | "
                     f"{_fmt_levels(r['test_accuracy_by_difficulty'])} | "
                     f"{_fmt_levels(r.get('train_sample_accuracy_by_difficulty'))} |")
    (out / "robustness.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default=",".join(ALL_TASKS))
    p.add_argument("--models", default="looped,transformer")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--target", type=float, default=0.95)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n-train", type=int, default=20000)
    p.add_argument("--n-val", type=int, default=100, help="validation prompts per level")
    p.add_argument("--n-test", type=int, default=200, help="test prompts per level")
    p.add_argument("--out", type=Path, default=HERE / "results" / "robustness")
    p.add_argument("--data", type=Path, default=None, help="where the JSONL files go (default <out>/data)")
    p.add_argument("--force", action="store_true")
    p.add_argument("extra", nargs="*", help="extra overrides for every run, e.g. optim.lr=3e-4")
    args = p.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    unknown = [t for t in tasks if t not in ALL_TASKS]
    if unknown:
        p.error(f"unknown task(s) {unknown}; choose from {ALL_TASKS}")
    models = [m for m in args.models.split(",") if m]
    args.out.mkdir(parents=True, exist_ok=True)
    data_dir = args.data or args.out / "data"
    tasks = make_data(tasks, data_dir, args.n_train, args.n_val, args.n_test)
    record_path = args.out / "robustness.json"
    done = {}
    if record_path.exists() and not args.force:
        old = json.loads(record_path.read_text())
        for r in old["rows"]:  # rows of earlier invocations keep the settings they ran under
            r.setdefault("run_settings", old.get("settings"))
            done[(r["task"], r["model"])] = r
    todo = [(t, m) for t in tasks for m in models if (t, m) not in done or done[(t, m)]["status"] != "ok"]
    with cf.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run_one, t, m, data_dir, args.out, args.minutes, args.target, args.threads,
                               args.extra): (t, m) for t, m in todo}
        for future in cf.as_completed(futures):
            row = future.result()
            print(f"[robustness] {row['task']} {row['model']}: {row['status']} "
                  f"{row.get('val_accuracy_by_difficulty')} in {row.get('train_minutes')} min", flush=True)
            settings = {k: v for k, v in vars(args).items() if k not in ("out", "data")}
            settings["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                                text=True).stdout.strip()
            settings["load_average_at_end"] = os.getloadavg()
            row["run_settings"] = settings  # this invocation's (the top-level "settings" is the latest one)
            done[(row["task"], row["model"])] = row
            record_path.write_text(json.dumps({"settings": settings, "rows": list(done.values())}, indent=1,
                                              default=str))
            write_table(list(done.values()), args.out, args.minutes, args.target)


if __name__ == "__main__":
    main()
