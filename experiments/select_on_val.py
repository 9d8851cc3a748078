"""Choose among trained runs on validation, then read test once for the chosen one.

    OMP_NUM_THREADS=1 python experiments/select_on_val.py \
        --checkpoint seed0=outputs/.../final.ckpt --checkpoint seed1=... --checkpoint seed2=... \
        --val-difficulties 48,64 --n-val 200 --out experiments/results/select_on_val_NAME.json \
        solver=dopri5 solver.rtol=1e-3 solver.atol=1e-3 solver.t_end=48

Seeds of one recipe differ more than recipes do on long inputs (prefix parity: one seed in three
carries 16 trained bits to 64). Training several seeds and keeping the one that extrapolates best is
a legitimate recipe only if the choice is made on validation: every checkpoint is evaluated on the
validation split (`odelm.eval split=val`) at `--val-difficulties` (levels beyond training are allowed;
validation prompts are drawn apart from test), under the evaluation overrides given, which are fixed
before anything is seen. The checkpoint with the highest validation accuracy (at `--level`, else over
all validation levels; ties: the first given) is then evaluated on test, under the same overrides; the
others' test splits are not read here.

The test-time compute is chosen the same way: `--setting NAME=OVERRIDES` (repeat; OVERRIDES is one or
more evaluation overrides separated by spaces) makes every (checkpoint, setting) pair a candidate,
named CHECKPOINT@SETTING. A model whose iteration has not finished at its trained depth (9×9 Sudoku:
0.004 solved at the trained depth, 0.46 at four times it) is then read on test at the depth that
validation prefers, not at one picked by looking at test:

    OMP_NUM_THREADS=1 python experiments/select_on_val.py --checkpoint ode=RUN/checkpoints/final.ckpt \
        --setting x1=solver.t_end=4 --setting x2=solver.t_end=8 --setting x4=solver.t_end=16 \
        --val-difficulties 8,12,16,20,24 --n-val 100 --out experiments/results/select_depth_NAME.json

(On a trained level `--n-val` must be the run's own validation count, 100 by default, so that the
redrawn validation split holds no training prompt; `odelm.eval split=val` refuses another count there.)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from odelm import eval as odelm_eval
from odelm.runs import command_line

CONF = str(Path(__file__).resolve().parents[1] / "conf")
OWN_KEYS = ("split", "task.val_difficulties", "data.n_val_per_difficulty")  # set by the script, not by overrides


def evaluate(ckpt: str, overrides: list[str], run_dir: Path) -> dict:
    given = [f"ckpt={ckpt}", *overrides]
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return odelm_eval.run(compose("eval", overrides=given), run_dir=run_dir, overrides=given)


def summary(record: dict) -> dict:
    keys = ("split", "accuracy", "accuracy_by_difficulty", "nfe_forward", "nfe_forward_by_difficulty", "n_examples",
            "eval_seconds")
    return {k: record[k] for k in keys if k in record}


def score(record: dict, level: int | None) -> float:
    if level is None:
        return record["accuracy"]
    by_level = record["accuracy_by_difficulty"]
    if str(level) not in by_level:
        raise SystemExit(f"--level {level} is not a validation level (have {sorted(by_level)})")
    return by_level[str(level)]


def run_record(ckpt: str) -> dict | None:
    """The final record (metrics.json) of the training run that wrote `ckpt`, if it is that run's."""
    path = Path(ckpt).resolve().parent.parent / "metrics.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if record.get("checkpoint") is None or Path(record["checkpoint"]).resolve() != Path(ckpt).resolve():
        return None
    return summary(record)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", action="append", required=True, metavar="NAME=PATH",
                        help="a candidate (repeat); NAME labels it in the result")
    parser.add_argument("--val-difficulties", required=True, help="validation levels, e.g. 48,64")
    parser.add_argument("--n-val", type=int, default=200, help="validation examples per level")
    parser.add_argument("--level", type=int, default=None, help="choose on this validation level alone")
    parser.add_argument("--runs", default="outputs/select_on_val", help="evaluation run directories")
    parser.add_argument("--out", required=True, help="result JSON")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=OVERRIDES",
                        help="a test-time setting (repeat): evaluation overrides separated by spaces (shell "
                             "quoting allowed); every checkpoint is a candidate under every setting, and a "
                             "setting's overrides are applied after the shared ones (a setting wins)")
    parser.add_argument("overrides", nargs="*", help="evaluation overrides shared by validation and test")
    args = parser.parse_args(argv)
    checkpoints = []
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep or not name or not Path(path).is_file():
            raise SystemExit(f"--checkpoint must be NAME=PATH to a checkpoint file, got {item!r}")
        checkpoints.append((name, path))
    if len({name for name, _ in checkpoints}) != len(checkpoints):
        raise SystemExit(f"--checkpoint names must be distinct, got {[n for n, _ in checkpoints]}")
    settings = {}
    for item in args.setting:
        name, sep, text = item.partition("=")
        overrides = shlex.split(text)
        if (not sep or not name or "@" in name or "." in name or not overrides or name in settings
                or not all("=" in o or o.startswith("~") for o in overrides)):
            raise SystemExit(f"--setting must be NAME=OVERRIDES with a distinct NAME (no '@' or '.') and one or "
                             f"more overrides KEY=VALUE, got {item!r}")
        settings[name] = overrides
    owned = [o for o in [*args.overrides, *(o for v in settings.values() for o in v)]
             if o.split("=", 1)[0].lstrip("+~") in OWN_KEYS]
    if owned:
        raise SystemExit(f"{owned}: the script sets {', '.join(OWN_KEYS)} itself (--val-difficulties, --n-val)")
    # candidates: (name, checkpoint path, overrides); a setting's overrides come after the shared ones
    if settings:
        candidates = [(f"{c}@{s}", path, [*args.overrides, *ov]) for c, path in checkpoints for s, ov in settings.items()]
    else:
        candidates = [(c, path, list(args.overrides)) for c, path in checkpoints]
    levels = [int(x) for x in args.val_difficulties.split(",")]
    val_split = ["split=val", f"task.val_difficulties=[{','.join(map(str, levels))}]",
                 f"data.n_val_per_difficulty={args.n_val}"]
    runs = Path(args.runs)
    start, load_before = time.time(), os.getloadavg()
    validation = {}
    for name, path, overrides in candidates:
        validation[name] = summary(evaluate(path, [*val_split, *overrides], runs / name / "val"))
        print(name, json.dumps(validation[name]["accuracy_by_difficulty"]), flush=True)
    best = max(candidates, key=lambda c: (score(validation[c[0]], args.level), -candidates.index(c)))
    chosen, chosen_path, chosen_overrides = best
    test = summary(evaluate(chosen_path, ["split=test", *chosen_overrides], runs / chosen / "test"))
    result = {
        "command": command_line("experiments/select_on_val.py", argv or sys.argv[1:]),
        "criterion": f"validation accuracy at {args.level}" if args.level is not None else
                     f"validation accuracy over {levels}",
        "eval_overrides": args.overrides,
        "settings": settings,
        "candidates": {name: path for name, path, _ in candidates},
        "chosen_overrides": chosen_overrides,
        # the chosen checkpoint's own run record (its final test at the trained setting, written by
        # training): context for the chosen setting's test; the other checkpoints' tests stay unread
        "run_test_record_of_chosen": run_record(chosen_path),
        "validation": validation,
        "chosen": chosen,
        "test_of_chosen": test,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                    "load_average_before": load_before, "load_average_after": os.getloadavg()},
        "total_seconds": round(time.time() - start, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("chosen:", chosen, "test:", json.dumps(test["accuracy_by_difficulty"]))
    return result


if __name__ == "__main__":
    main()
