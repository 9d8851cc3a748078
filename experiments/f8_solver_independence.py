"""F8 solver independence: is the trained field a flow, i.e. does it give the same answers under any
solver? In-distribution accuracy of each arm of the "flow" study under six solver settings: euler
step 1 (the looped model's grid), euler 0.5, rk4 0.5, dopri5 at rtol = atol = 1e-2, 1e-3, 1e-5.

    python experiments/f8_solver_independence.py --root outputs/reproduce/smoke --out experiments/figures

Reads eval plans "flow_fixed_grid" (euler / rk4 x step size) and "flow_tolerance" (dopri5 x
tolerance) of experiments/reproduce.py; every arm is solved as an ODE (model.integrator=ode).
Left: accuracy on the trained difficulties per setting, one line per arm (legend: the spread, max −
min over the six settings, of the seed means; the target is <= 0.01). Right: mean NFE per example
(batched solves) per setting. Mean ± 1 std over seeds.
CSV f8_solver_independence.csv: one row per (arm, setting): accuracy_trained, accuracy_beyond (mean
over the difficulties above the trained range), nfe_forward as _mean/_std, n; and one row per arm with
setting "spread" (accuracy_trained_mean = max − min of the six settings' means).
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt

import figlib

NAME = "f8_solver_independence"
STUDY = "flow"
PLANS = ("flow_fixed_grid", "flow_tolerance")
SETTINGS = ("euler 1", "euler 0.5", "rk4 0.5", "dopri5 1e-2", "dopri5 1e-3", "dopri5 1e-5")


def setting_name(method: str, value: float) -> str:
    """'euler 0.5' (a fixed grid's step) or 'dopri5 1e-3' (an adaptive method's tolerance)."""
    if method in ("euler", "rk4", "midpoint"):
        return f"{method} {value:g}"
    return f"{method} 1e{round(math.log10(value)):d}"


def points(root: str) -> list[dict]:
    rows, missing = [], []
    for plan in PLANS:
        evals = figlib.load_evals(root, plan, study=STUDY)
        missing += [] if evals else [plan]
        for e in evals:
            trained, beyond = figlib.split_difficulties(e)
            method = figlib.eval_solver(e).get("method")
            for row in figlib.read_csv(Path(e["eval_dir"], "sweep.csv")):
                name = setting_name(method, row["value"])
                if name not in SETTINGS:
                    continue
                rows.append({"arm": e["arm"], "setting": name, "seed": e["seed"],
                             "accuracy_trained": figlib.mean_accuracy(row, trained),
                             "accuracy_beyond": figlib.mean_accuracy(row, beyond), "nfe_forward": row["nfe_forward"]})
    if missing:
        raise figlib.NoData(f"F8: no successful evaluations of plan(s) {missing} under {root}/eval (or no flow study "
                            f"under {root}/{STUDY}); make them with: python experiments/reproduce.py --out {root} "
                            "--stages train,eval --studies flow")
    rows.sort(key=lambda r: SETTINGS.index(r["setting"]))
    return figlib.aggregate(rows, ["arm", "setting"], ["accuracy_trained", "accuracy_beyond", "nfe_forward"])


def spread(table: list[dict], arm: str) -> float:
    values = [r["accuracy_trained_mean"] for r in table if r["arm"] == arm and r["setting"] in SETTINGS
              and r["accuracy_trained_mean"] == r["accuracy_trained_mean"]]
    return max(values) - min(values) if values else float("nan")


def main(argv: list[str] | None = None) -> list[Path]:
    args = figlib.standard_args(__doc__.split("\n\n")[0], argv)
    table = points(args.root)
    arms = list(dict.fromkeys(r["arm"] for r in table))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    x = {s: i for i, s in enumerate(SETTINGS)}
    for i, arm in enumerate(arms):
        line = [dict(r, x=x[r["setting"]]) for r in table if r["arm"] == arm]
        style = dict(color=f"C{i % 10}", linestyle="-" if i < 10 else "--")
        figlib.errorline(left, line, "x", "accuracy_trained",
                         label=f"{figlib.label(arm)} (spread {spread(table, arm):.3f})", **style)
        figlib.errorline(right, line, "x", "nfe_forward", **style)
    for ax, ylabel in ((left, "accuracy, trained difficulties"), (right, "mean NFE per example")):
        ax.set_xticks(range(len(SETTINGS)), SETTINGS, rotation=30)
        ax.set(ylabel=ylabel, xlabel="solver setting")
        ax.grid(alpha=0.3)
    right.set_yscale("log")
    left.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"F8: solver independence; mean ± std over ≤ {max(r['n'] for r in table)} seeds")
    fig.tight_layout()
    rows = table + [{"arm": arm, "setting": "spread", "accuracy_trained_mean": spread(table, arm)} for arm in arms]
    return figlib.save(fig, rows, args.out, NAME)


if __name__ == "__main__":
    main()
