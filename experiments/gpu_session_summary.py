"""Summarise a GPU session of experiments/gpu_session.sh from the files it returned (no GPU needed):
training-step times, the paper-scale 9x9 Sudoku runs and their test-time-compute sweeps, the d_model 512
runs, and the F10 study (its figure and CSV are drawn into --figures).

    python experiments/gpu_session_summary.py --dir experiments/results/gpu_session --figures experiments/figures
    python experiments/gpu_session_summary.py --session 2 --dir experiments/results/gpu_session2

`--session 2` reads experiments/gpu_session2.sh's files instead: the d_model 512 runs on pointer chasing
(looped, ODE grid, flow recipe), their depth sweeps, dopri5 solves and convergence stops (with the
per-example NFE histogram), and the F10 runs that finished training (no eval plan finished there, so
no figure is drawn: the committed F10 figure stays the first session's).

`--session 3` reads experiments/gpu_sudoku9.sh's files: the two 9x9 Sudoku runs (looped, ODE grid) that
had the GPU to themselves, with their learning curves (validation exact solve and loss) and their
test-time-compute sweeps on test (loops; horizon under Euler; dopri5).

Reads gpu_flow.json, runs.tgz (run directories of steps 2 and 3) and f10_eval.tgz (the F10 study's run
directories and eval plans); writes summary.json and summary.md into --dir. Every number is read from
those files; nothing is chosen among settings (the sweeps are reported whole, on test, read once).
"""
from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

LEVEL_KEYS = ("accuracy", "constraint_satisfied", "cell_accuracy", "violations")


def unpack(archive: Path, dest: Path) -> Path:
    """Extract a returned archive into `dest` (created); returns `dest`."""
    dest.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def run_summary(run: dict) -> dict:
    out = {k: run.get(k) for k in ("status", "params", "train_steps", "train_seconds", "val_accuracy")}
    for key in LEVEL_KEYS:
        if key in run:
            out[key] = run[key]
            out[f"{key}_by_difficulty"] = run.get(f"{key}_by_difficulty")
    out["nfe_forward"] = run.get("nfe_forward")
    return out


def sweep_rows(rec: dict) -> list[dict]:
    """One row per setting: value, nfe and the metrics by difficulty (records of odelm.eval)."""
    records = rec["sweep"]["records"] if "sweep" in rec else [{"value": None, **rec}]
    rows = []
    for r in records:
        row = {"value": r.get("value"), "nfe_forward": r.get("nfe_forward"), "depth": r.get("depth"),
               "n_examples": r.get("n_examples"), "device": r.get("device")}
        for key in LEVEL_KEYS:
            if key in r:
                row[key] = r[key]
                row[f"{key}_by_difficulty"] = r.get(f"{key}_by_difficulty")
        rows.append(row)
    return rows


def f10_table(csv_path: Path) -> list[dict]:
    import csv

    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    keep = ("grid", "arm", "series", "value", "nfe_forward_mean", "constraint_satisfied_mean",
            "constraint_satisfied_std", "accuracy_mean", "accuracy_std", "n")
    out = []
    for r in rows:
        hardest = {"4x4": "12", "6x6": "24"}.get(r["grid"])
        row = {k: r[k] for k in keep}
        if hardest:
            row["hardest"] = int(hardest)
            row["constraint_satisfied_hardest_mean"] = r.get(f"constraint_satisfied_d{hardest}_mean")
            row["accuracy_hardest_mean"] = r.get(f"accuracy_d{hardest}_mean")
        out.append(row)
    return out


def fmt(x, digits=3) -> str:
    return "–" if x in (None, "", "nan") else f"{float(x):.{digits}f}"


def markdown(summary: dict) -> str:
    lines = ["# GPU session summary", "", f"Device: {summary['device']}; torch {summary['torch']}.", ""]
    lines += ["## Training step, d_model 512, batch 64 (alone on the GPU)", "",
              "| arm | ms/step (median) | mean | × looped | NFE forward (median) |", "|---|---|---|---|---|"]
    for name, r in summary["step_times"].items():
        lines.append(f"| {name} | {r['step_ms_median']} | {r['step_ms_mean']} | {r['step_vs_looped']} | "
                     f"{r['nfe_forward_median']} |")
    lines += ["", "## 9x9 Sudoku (hard generator), test, trained 3.5 minutes beside the other runs", "",
              "| arm | params | steps | exact 52/54/56 | constraint satisfied | cell accuracy | violations |",
              "|---|---|---|---|---|---|---|"]
    for arm, r in summary["sudoku9"]["runs"].items():
        by = r.get("accuracy_by_difficulty") or {}
        lines.append(f"| {arm} | {r['params']} | {r['train_steps']} | "
                     f"{' / '.join(fmt(by.get(k)) for k in ('52', '54', '56'))} | {fmt(r.get('constraint_satisfied'))} | "
                     f"{fmt(r.get('cell_accuracy'))} | {fmt(r.get('violations'), 1)} |")
    for name, rows in summary["sudoku9"]["evals"].items():
        lines += ["", f"`{name}`: " + "; ".join(
            f"{'as set' if row['value'] is None else row['value']}: exact {fmt(row.get('accuracy'))}, cs {fmt(row.get('constraint_satisfied'))}, "
            f"cell {fmt(row.get('cell_accuracy'))}, NFE {fmt(row.get('nfe_forward'), 1)}" for row in rows)]
    lines += ["", "## d_model 512 on the default task (1.2 minutes beside the other runs)", ""]
    for name, r in summary["d512"]["runs"].items():
        lines.append(f"- {name}: {r['train_steps']} steps, test accuracy {fmt(r.get('accuracy'))}")
    for name, rows in summary["d512"]["evals"].items():
        lines.append(f"- `{name}`: " + "; ".join(
            f"{row['value']}: acc {fmt(row.get('accuracy'))}, NFE {fmt(row.get('nfe_forward'), 1)}" for row in rows))
    missing = summary["d512"]["missing_evals"] + summary["sudoku9"]["missing_evals"]
    if missing:
        lines.append(f"- not finished within the session's cap: {', '.join(missing)}")
    lines += ["", "## F10 (4x4 / 6x6 Sudoku, 3 seeds, 1000 steps): trained setting and each sweep", "",
              "| grid | arm | series | setting | NFE | constraint satisfied | exact | hardest level: cs / exact |",
              "|---|---|---|---|---|---|---|---|"]
    for r in summary["f10"]["table"]:
        lines.append(f"| {r['grid']} | {r['arm']} | {r['series']} | {r['value'] or 'trained'} | "
                     f"{fmt(r['nfe_forward_mean'], 1)} | {fmt(r['constraint_satisfied_mean'])} ± "
                     f"{fmt(r['constraint_satisfied_std'])} | {fmt(r['accuracy_mean'])} | "
                     f"{fmt(r.get('constraint_satisfied_hardest_mean'))} / {fmt(r.get('accuracy_hardest_mean'))} |")
    return "\n".join(lines) + "\n"


D512_ARMS_2 = {"looped": "looped T=4", "grid": "ODE default (Euler grid 0.5 on [0, 4])",
               "flow": "ODE random discretisation + progressive + path independence"}
D512_EVALS_2 = ("looped_depth", "looped_converged", "grid_depth", "grid_dopri5", "grid_converged",
                "flow_depth", "flow_dopri5", "flow_converged")


def f10_trained(root: Path) -> list[dict]:
    """The F10 runs that finished training: constraint satisfaction / exact solve on test, mean and std
    over seeds, per grid and arm, overall and on the hardest level."""
    import statistics

    groups: dict[tuple[str, str], list[dict]] = {}
    for path in sorted(root.glob("constraint/*/metrics.json")):
        rec = json.loads(path.read_text())
        if rec.get("status") != "ok":
            continue
        n = int(rec["task"]["params"]["box_rows"]) * int(rec["task"]["params"]["box_cols"])
        groups.setdefault((f"{n}x{n}", rec["arm"]), []).append(rec)
    rows = []
    for (grid, arm), recs in sorted(groups.items()):
        hardest = max(recs[0]["accuracy_by_difficulty"], key=int)
        row = {"grid": grid, "arm": arm, "seeds": sorted(r["seed"] for r in recs), "hardest": int(hardest),
               "train_seconds_median": statistics.median(r["train_seconds"] for r in recs)}
        for key, values in (("constraint_satisfied", [r["constraint_satisfied"] for r in recs]),
                            ("accuracy", [r["accuracy"] for r in recs]),
                            ("constraint_satisfied_hardest", [r["constraint_satisfied_by_difficulty"][hardest] for r in recs])):
            row[f"{key}_mean"] = round(statistics.mean(values), 4)
            row[f"{key}_std"] = round(statistics.stdev(values), 4) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def histogram_text(row: dict) -> str:
    counts: dict[str, int] = {}
    for per_level in (row.get("nfe_histogram_by_difficulty") or {}).values():
        for nfe, c in per_level.items():
            counts[nfe] = counts.get(nfe, 0) + c
    return ", ".join(f"{c} examples at NFE {nfe}" for nfe, c in sorted(counts.items(), key=lambda kv: int(kv[0])))


def session2(folder: Path) -> dict:
    summary: dict = {"session": 2, "d512": {"runs": {}, "evals": {}, "missing_evals": []}}
    with tempfile.TemporaryDirectory() as tmp:
        runs = unpack(folder / "runs.tgz", Path(tmp, "runs"))
        node = summary["d512"]
        for arm in D512_ARMS_2:
            rec = read_json(runs / f"d512_{arm}" / "metrics.json")
            if rec is not None:
                node["runs"][arm] = {**run_summary(rec), "recipe": D512_ARMS_2[arm],
                                     "target_reached_at_step": rec.get("target_reached_at_step")}
        for name in D512_EVALS_2:
            rec = read_json(runs / f"eval_d512_{name}" / "metrics.json")
            if rec is None:
                node["missing_evals"].append(name)
                continue
            rows = sweep_rows(rec)
            for row, r in zip(rows, rec["sweep"]["records"]):
                if "nfe_histogram_by_difficulty" in r:
                    row["nfe_histogram_by_difficulty"] = r["nfe_histogram_by_difficulty"]
                    row["exit_max_depth"] = r["exit"].get("max_depth", r["exit"].get("max_t_end"))
            node["evals"][name] = rows
        device = {row.get("device") for rows in node["evals"].values() for row in rows}
        summary["eval_device"] = sorted(d for d in device if d)
        f10 = unpack(folder / "f10_eval.tgz", Path(tmp, "f10"))
        summary["f10"] = {"trained": f10_trained(f10 / "f10"),
                          "eval_plans_finished": sorted({p.parent.parent.name for p in (f10 / "f10" / "eval").glob("*/*/metrics.json")})}
    (folder / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (folder / "summary.md").write_text(markdown2(summary))
    return summary


def markdown2(summary: dict) -> str:
    lines = ["# Second GPU session summary (experiments/gpu_session2.sh, one H200)", "",
             "## d_model 512 on pointer chasing, each run alone on the GPU, test split", "",
             "| arm | steps | train s | val accuracy | test accuracy | test by hops 1..6 |", "|---|---|---|---|---|---|"]
    for arm, r in summary["d512"]["runs"].items():
        by = r.get("accuracy_by_difficulty") or {}
        lines.append(f"| {r['recipe']} | {r['train_steps']} | {fmt(r['train_seconds'], 0)} | {fmt(r['val_accuracy'])} | "
                     f"{fmt(r.get('accuracy'))} | {' / '.join(fmt(v, 2) for v in by.values())} |")
    lines.append("")
    for name, rows in summary["d512"]["evals"].items():
        parts = []
        for row in rows:
            text = f"{row['value']}: acc {fmt(row.get('accuracy'))}, NFE {fmt(row.get('nfe_forward'), 1)}"
            if row.get("exit_max_depth") is not None:  # a convergence stop: where each example stopped
                text += f" ({histogram_text(row)}; most depth {row['exit_max_depth']})"
            parts.append(text)
        lines.append(f"- `{name}`: " + "; ".join(parts))
    if summary["d512"]["missing_evals"]:
        lines.append(f"- not finished: {', '.join(summary['d512']['missing_evals'])}")
    lines += ["", "## F10 runs that finished training (no eval plan finished within the cap)", "",
              "| grid | arm | seeds | constraint satisfied | exact | hardest level cs | train s (median) |",
              "|---|---|---|---|---|---|---|"]
    for r in summary["f10"]["trained"]:
        lines.append(f"| {r['grid']} | {r['arm']} | {r['seeds']} | {fmt(r['constraint_satisfied_mean'])} ± "
                     f"{fmt(r['constraint_satisfied_std'])} | {fmt(r['accuracy_mean'])} | "
                     f"{fmt(r['constraint_satisfied_hardest_mean'])} (level {r['hardest']}) | {fmt(r['train_seconds_median'], 0)} |")
    return "\n".join(lines) + "\n"


SUDOKU9_ARMS_3 = {"looped": "looped T = 8", "ode_grid": "ODE, Euler grid 0.5 on [0, 4] + kinetic"}
SUDOKU9_EVALS_3 = ("looped_loops", "ode_t_end", "ode_dopri5")


def validation_curve(metrics_csv: Path) -> list[dict]:
    """(step, validation exact solve, validation loss, wall seconds) at each validation of a run."""
    import csv

    with metrics_csv.open() as f:
        return [{"step": int(r["step"]), "val_accuracy": float(r["accuracy"]), "val_loss": float(r["loss"]),
                 "wall_time": float(r["wall_time"])} for r in csv.DictReader(f) if r["split"] == "val"]


def session3(folder: Path) -> dict:
    log = (folder / "session.log").read_text() if (folder / "session.log").is_file() else ""
    device = next((line.split("start: ", 1)[1].strip() for line in log.splitlines() if "start: " in line), None)
    summary: dict = {"session": 3, "device": device, "runs": {}, "evals": {}, "missing_runs": [], "missing_evals": []}
    with tempfile.TemporaryDirectory() as tmp:
        runs = unpack(folder / "runs.tgz", Path(tmp, "runs"))
        for arm, recipe in SUDOKU9_ARMS_3.items():
            rec = read_json(runs / f"sudoku9_{arm}" / "metrics.json")
            if rec is None:
                summary["missing_runs"].append(arm)
                continue
            summary["runs"][arm] = {**run_summary(rec), "recipe": recipe,
                                    "train_sample_accuracy": rec.get("train_sample_accuracy"),
                                    # wall clock: validations and the job beside it included
                                    "wall_ms_per_step": round(1000 * rec["train_seconds"] / rec["train_steps"], 1),
                                    "curve": validation_curve(runs / f"sudoku9_{arm}" / "metrics.csv")}
        for name in SUDOKU9_EVALS_3:
            rec = read_json(runs / f"eval_{name}" / "metrics.json")
            if rec is None:
                summary["missing_evals"].append(name)
            else:
                summary["evals"][name] = sweep_rows(rec)
    (folder / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (folder / "summary.md").write_text(markdown3(summary))
    return summary


def markdown3(summary: dict) -> str:
    lines = [f"# 9x9 Sudoku with the GPU to two runs (experiments/gpu_sudoku9.sh; {summary['device']})", "",
             "## Trained side by side, same step budget (a wall-clock cap guards the device time: compare the steps); test at the trained depth", "",
             "| arm | params | steps | wall ms/step | exact 52/54/56 | constraint satisfied | cell accuracy | violations | train sample exact |",
             "|---|---|---|---|---|---|---|---|---|"]
    for arm, r in summary["runs"].items():
        by = r.get("accuracy_by_difficulty") or {}
        lines.append(f"| {r['recipe']} | {r['params']} | {r['train_steps']} | {r['wall_ms_per_step']} | "
                     f"{' / '.join(fmt(by.get(k)) for k in ('52', '54', '56'))} | {fmt(r.get('constraint_satisfied'))} | "
                     f"{fmt(r.get('cell_accuracy'))} | {fmt(r.get('violations'), 1)} | {fmt(r.get('train_sample_accuracy'))} |")
    lines += ["", "## Test-time compute on test (every setting reported; nothing chosen)", "",
              "| sweep | setting | field evaluations | exact | exact 52/54/56 | cell accuracy | violations |",
              "|---|---|---|---|---|---|---|"]
    for name, rows in summary["evals"].items():
        for row in rows:
            by = row.get("accuracy_by_difficulty") or {}
            lines.append(f"| {name} | {row['value']} | {fmt(row.get('nfe_forward'), 1)} | {fmt(row.get('accuracy'))} | "
                         f"{' / '.join(fmt(by.get(k)) for k in ('52', '54', '56'))} | {fmt(row.get('cell_accuracy'))} | "
                         f"{fmt(row.get('violations'), 2)} |")
    if summary["missing_runs"] or summary["missing_evals"]:
        lines.append(f"\nnot finished: {', '.join(summary['missing_runs'] + summary['missing_evals'])}")
    lines += ["", "## Validation while training (exact solve at the trained depth, loss)", ""]
    for arm, r in summary["runs"].items():
        lines.append(f"- {arm}: " + "; ".join(f"{c['step']}: {fmt(c['val_accuracy'])} ({fmt(c['val_loss'])})" for c in r["curve"]))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="experiments/results/gpu_session")
    parser.add_argument("--figures", default="experiments/figures")
    parser.add_argument("--session", type=int, choices=(1, 2, 3), default=1)
    args = parser.parse_args(argv)
    folder = Path(args.dir)
    if args.session == 2:
        return session2(folder)
    if args.session == 3:
        return session3(folder)
    flow = read_json(folder / "gpu_flow.json")
    summary: dict = {"device": flow["device"], "torch": flow["torch"], "arithmetic": flow["arithmetic"],
                     "step_times": flow["arms"]}
    with tempfile.TemporaryDirectory() as tmp:
        runs = unpack(folder / "runs.tgz", Path(tmp, "runs"))
        for group, arms, evals in (
                ("sudoku9", ("looped", "ode_grid", "transformer8"),
                 ("looped_loops", "looped_converged", "ode_t_end", "ode_dopri5", "ode_converged")),
                ("d512", ("looped", "flow"),
                 ("looped_depth", "looped_converged", "flow_depth", "flow_dopri5", "flow_converged",
                  "flow_converged_dopri5"))):
            node = {"runs": {}, "evals": {}, "missing_evals": []}
            for arm in arms:
                rec = read_json(runs / f"{group}_{arm}" / "metrics.json")
                if rec is not None:
                    node["runs"][arm] = run_summary(rec)
            for name in evals:  # on the GPU, else the script's retry on the CPU
                rec = (read_json(runs / f"eval_{group}_{name}" / "metrics.json")
                       or read_json(runs / f"eval_{group}_{name}_cpu" / "metrics.json"))
                if rec is None:
                    node["missing_evals"].append(f"{group}_{name}")
                else:
                    node["evals"][name] = sweep_rows(rec)
            summary[group] = node
        f10 = unpack(folder / "f10_eval.tgz", Path(tmp, "f10"))
        import f10_constraint_compute

        f10_constraint_compute.main(["--root", str(f10 / "f10"), "--out", args.figures])
        summary["f10"] = {"table": f10_table(Path(args.figures) / "f10_constraint_compute.csv"),
                          "eval_plans": sorted(p.name for p in (f10 / "f10" / "eval").iterdir())}
    (folder / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (folder / "summary.md").write_text(markdown(summary))
    return summary


if __name__ == "__main__":
    main()
