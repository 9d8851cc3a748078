"""Flow sanity benchmark (CPU, 1 thread per job): is a recipe's field a flow where the looped
model's is not? Trains each arm of the "flow" study for the same wall-clock budget (in parallel, one
process per arm), then evaluates every checkpoint as an ODE under euler step 1 / rk4 step 0.5 /
dopri5 1e-3, each at the trained horizon (x1) and at x4, and with the convergence stop.

    python experiments/bench_flow.py --arms looped,random_solver --minutes 3.5 --out experiments/results/bench_flow

Accuracy on the trained difficulties ("in distribution") and on the harder ones, mean NFE per
example. Writes <out>/bench_flow.json and <out>/bench_flow.md (with the command); run directories
under --runs. A single seed and a few minutes: a sanity check, not the study (experiments/reproduce.py
--studies flow runs 3 seeds and draws F8 / F9).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from figlib import mean_accuracy  # noqa: E402
from odelm.runs import write_json  # noqa: E402

def settings(horizon: float, n_converged: int) -> dict[str, list[str]]:
    """Eval settings, name → overrides (every arm solved as an ODE over the trained horizon T, then 2T
    and 4T): the six solvers of F8 at x1, euler 1, euler 0.5 (the default training grid: "integrate longer" on it)
    and dopri5 1e-3 at x2 and x4, and the convergence stop
    (dopri5 1e-3, per example, up to 4T, on `n_converged` examples per difficulty)."""
    t = float(horizon)

    def solve(method: str, t_end: float, step: float | None = None, tol: float | None = None) -> list[str]:
        extra = [f"solver.step_size={step}"] if step is not None else [f"solver.rtol={tol}", f"solver.atol={tol}"]
        return [f"solver={method}", *extra, f"solver.t_end={t_end:g}"]

    return {
        "euler 1 x1": solve("euler", t, step=1.0),
        "euler 0.5 x1": solve("euler", t, step=0.5),
        "rk4 0.5 x1": solve("rk4", t, step=0.5),
        "dopri5 1e-2 x1": solve("dopri5", t, tol=1e-2),
        "dopri5 1e-3 x1": solve("dopri5", t, tol=1e-3),
        "dopri5 1e-5 x1": solve("dopri5", t, tol=1e-5),
        "euler 1 x2": solve("euler", 2 * t, step=1.0),
        "euler 0.5 x2": solve("euler", 2 * t, step=0.5),
        "dopri5 1e-3 x2": solve("dopri5", 2 * t, tol=1e-3),
        "euler 1 x4": solve("euler", 4 * t, step=1.0),
        "euler 0.5 x4": solve("euler", 4 * t, step=0.5),
        "dopri5 1e-3 x4": solve("dopri5", 4 * t, tol=1e-3),
        "converged 1e-3 (dopri5, <= x4)": [*solve("dopri5", t, tol=1e-3), "exit=converged", "exit.threshold=1e-3",
                                           f"exit.max_t_end={4 * t:g}", f"task.n_test_per_difficulty={n_converged}"],
    }


def train_all(arms: list[str], minutes: float, runs: Path, seed: int, extra: list[str],
              horizon: float) -> dict[str, dict]:
    procs = {}
    for arm in arms:
        run_dir = runs / arm
        # the trained horizon: T loops for the looped arm, τ ∈ [0, T] for the ODE arms
        depth = [f"model.loops={int(horizon)}"] if arm == "looped" else [f"solver.t_end={horizon:g}"]
        cmd = [sys.executable, "-m", "odelm.train", "experiment=flow", f"arm=flow/{arm}", f"seed={seed}",
               f"trainer.max_time_minutes={minutes}", f"hydra.run.dir={run_dir}", *depth, *extra]
        print("$", " ".join(cmd), flush=True)
        procs[arm] = subprocess.Popen(cmd, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True)
    records = {}
    for arm, proc in procs.items():
        _, err = proc.communicate()
        path = runs / arm / "metrics.json"
        if proc.returncode or not path.exists():
            raise RuntimeError(f"training arm {arm} failed:\n{err[-3000:]}")
        records[arm] = json.loads(path.read_text())
    return records


def evaluate(ckpt: str, out_dir: Path, n_test: int, horizon: float = 4.0, n_converged: int = 20,
             eval_overrides: list[str] = (), split: str = "test") -> dict[str, dict]:
    from hydra import compose, initialize_config_dir

    from odelm import eval as odelm_eval

    results = {}
    for name, overrides in settings(horizon, n_converged).items():
        given = [f"ckpt={ckpt}", "model.integrator=ode", f"split={split}", f"task.n_test_per_difficulty={n_test}",
                 *eval_overrides, *overrides]
        with initialize_config_dir(config_dir=str(HERE.parent / "conf"), version_base="1.3"):
            cfg = compose(config_name="eval", overrides=given)
        start = time.perf_counter()
        try:
            rec = odelm_eval.run(cfg, run_dir=out_dir / name.replace(" ", "_"), overrides=given)
        except Exception as err:  # a solve that fails (e.g. a step budget) is a result, recorded as such
            results[name] = {"error": f"{type(err).__name__}: {err}"}
            continue
        results[name] = {**summary(rec), "eval_seconds": round(time.perf_counter() - start, 1)}
        print(f"  {name}: {fmt(results[name]['accuracy_trained'])} in distribution, NFE {rec['nfe_forward']:.1f}",
              flush=True)
    return results


def summary(rec: dict) -> dict:
    """One evaluation's row: accuracy on the trained difficulties that the test split holds (their unweighted
    mean; None when it holds none, e.g. a test split of longer inputs only) and per harder difficulty. A run
    trained on every level of its JSONL file (train_difficulties null) counts every evaluated level as trained."""
    by = rec["accuracy_by_difficulty"]
    given = rec["task"].get("train_difficulties")  # None: a JSONL run trained on every level of its file
    trained = [int(d) for d in given] if given is not None else [int(d) for d in by]
    return {
        "accuracy_trained": mean_accuracy(by, [str(d) for d in trained], prefix=""),
        "accuracy_beyond": {d: a for d, a in by.items() if int(d) > max(trained)},
        **({"constraint_satisfied": rec["constraint_satisfied"]} if "constraint_satisfied" in rec else {}),
        "accuracy_by_difficulty": by, "nfe_forward": rec["nfe_forward"], "depth": rec.get("depth"),
        "n_examples": rec["n_examples"],
    }


def fmt(accuracy: float | None) -> str:
    return "n/a" if accuracy is None else f"{accuracy:.3f}"


SIX_SOLVERS = ("euler 1 x1", "euler 0.5 x1", "rk4 0.5 x1", "dopri5 1e-2 x1", "dopri5 1e-3 x1", "dopri5 1e-5 x1")


def solver_spread(evals: dict[str, dict]) -> float | None:
    """Max minus min in-distribution accuracy over the six solver settings at the trained horizon (the
    solver-independence target is <= 0.01); None when one of them failed or holds no trained level."""
    accs = [evals.get(name, {}).get("accuracy_trained") for name in SIX_SOLVERS]
    return None if any(a is None for a in accs) else round(max(accs) - min(accs), 4)


def markdown(report: dict) -> str:
    split = report.get("split", "test")
    sized = ("the validation split" if split == "val" else
             f"{report.get('n_converged', 20)} test examples per difficulty, the other rows on --n-test")
    lines = [f"# Flow sanity benchmark\n", f"Command: `{report['command']}`\n",
             f"Machine: {report['machine']}\n",
             f"Split: {split}. Accuracy on the trained difficulties (beyond: per harder difficulty) and mean NFE per "
             "example (batched solves: the batch's NFE; the convergence stop: per example, on "
             f"{sized}). One seed, equal wall-clock budget per arm. Spread: max - min in-distribution accuracy over "
             "the six solver settings at the trained horizon.\n",
             "| arm | train steps | train s | setting | in distribution | beyond | NFE |", "|---|---|---|---|---|---|---|"]
    for arm, r in report["arms"].items():
        for name, e in r["eval"].items():
            if "error" in e:
                lines.append(f"| {arm} | {r['train_steps']} | {r['train_seconds']:.0f} | {name} | {e['error'][:60]} | | |")
                continue
            beyond = " / ".join(f"{a:.3f}" for a in e["accuracy_beyond"].values())
            lines.append(f"| {arm} | {r['train_steps']} | {r['train_seconds']:.0f} | {name} | "
                         f"{fmt(e['accuracy_trained'])} | {beyond} | {e['nfe_forward']:.1f} |")
    spreads = {arm: solver_spread(r["eval"]) for arm, r in report["arms"].items()}
    lines += ["", "| arm | solver spread |", "|---|---|", *(f"| {arm} | {fmt(v)} |" for arm, v in spreads.items())]
    return "\n".join(lines) + "\n"


def rewrite(out: Path) -> None:
    """Re-renders <out>/bench_flow.md from <out>/bench_flow.json."""
    (out / "bench_flow.md").write_text(markdown(json.loads((out / "bench_flow.json").read_text())))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arms", default="looped,random_solver")
    parser.add_argument("--minutes", type=float, default=3.5, help="training wall-clock budget per arm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-test", type=int, default=100, help="test examples per difficulty")
    parser.add_argument("--runs", default="outputs/bench_flow")
    parser.add_argument("--out", default="experiments/results/bench_flow")
    parser.add_argument("--horizon", type=float, default=4.0,
                        help="trained depth T: loops of the looped arm, t_end of the ODE arms (evaluated at T, 2T, 4T)")
    parser.add_argument("--n-converged", type=int, default=20, help="test examples per difficulty of the convergence stop")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=CKPT",
                        help="also evaluate an already trained checkpoint (its run's metrics.json gives steps and time)")
    parser.add_argument("--eval-override", action="append", default=[], metavar="KEY=VALUE",
                        help="an override for every evaluation (e.g. task.test_difficulties=[16,32,64]), before the setting's own")
    parser.add_argument("--split", default="test", choices=["test", "val"],
                        help="evaluate on test (the record) or on validation (to choose a recipe or setting on; "
                             "every row, the convergence stop included, then runs on the whole validation split)")
    parser.add_argument("train_overrides", nargs="*", help="extra overrides for every training job")
    args = parser.parse_args(argv)
    arms = [a for a in args.arms.split(",") if a]
    runs, out = Path(args.runs), Path(args.out)
    given = {}
    for item in args.checkpoint:
        name, _, ckpt = item.partition("=")
        metrics = Path(ckpt).parents[1] / "metrics.json"
        if not ckpt or not Path(ckpt).is_file() or not metrics.is_file():
            raise SystemExit(f"--checkpoint {item!r}: give NAME=PATH of a checkpoint whose run holds metrics.json")
        given[name] = json.loads(metrics.read_text())
    out.mkdir(parents=True, exist_ok=True)
    trained = {**given, **train_all(arms, args.minutes, runs, args.seed, args.train_overrides, args.horizon)}
    # shell-quoted, so that the record's command can be pasted back ("--arms ''", "[16,32]")
    report = {"command": "python " + shlex.join([f"experiments/{Path(__file__).name}", *(argv or sys.argv[1:])]),
              "machine": f"{platform.machine()} CPU shared with other jobs, OMP_NUM_THREADS="
                         f"{os.environ['OMP_NUM_THREADS']} per job, arms trained in parallel",
              "n_converged": args.n_converged, "horizon": args.horizon, "split": args.split, "arms": {}}
    for arm, rec in trained.items():
        print(f"== {arm}: {rec['train_steps']} steps in {rec['train_seconds']:.0f} s", flush=True)
        report["arms"][arm] = {"train_steps": rec["train_steps"], "train_seconds": rec["train_seconds"],
                               "objective": rec["objective"], "solver": rec.get("solver"), "val_accuracy": rec.get("val_accuracy"),
                               "checkpoint": rec["checkpoint"],
                               "eval": evaluate(rec["checkpoint"], runs / arm / "eval", args.n_test, args.horizon,
                                                args.n_converged, args.eval_override, args.split)}
        report["arms"][arm]["solver_spread"] = solver_spread(report["arms"][arm]["eval"])
    write_json(out / "bench_flow.json", report)
    (out / "bench_flow.md").write_text(markdown(report))
    return report


if __name__ == "__main__":
    main()
