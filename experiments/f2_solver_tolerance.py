"""F2 solver-tolerance ablation: how much do the solver method and its rtol/atol (adaptive) or step
size (fixed grid) change accuracy, NFE forward, NFE backward and wall time of the trained ODE models?
The claim tested: a trained field is robust to the solver, so a cheap solver loses little accuracy.

    python experiments/f2_solver_tolerance.py --root outputs/reproduce/smoke --out experiments/figures

One row of four panels per ODE arm. Adaptive methods (eval plan "tolerance": dopri5, bosh3,
adaptive_heun; solid lines) against rtol = atol on the bottom axis; fixed-grid methods (plan
"fixed_grid": euler, rk4; dashed lines) against the step size on the top axis. Both axes run from
coarse (left) to fine (right). NFE backward and train-step seconds come from one forward + backward
of the answer loss on the first test batch (`probe_backward=true`); the wall time is the test
pass alone (`eval_seconds`; the CSV also holds train_step_seconds).
Stars: the setting the arm was trained at. Mean ± 1 std over seeds.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import FixedLocator, NullLocator

import figlib

NAME = "f2_solver_tolerance"
PLANS = {"tolerance": ("adaptive", "rtol=atol", "rtol"), "fixed_grid": ("fixed", "step_size", "step_size")}
METHODS = {"dopri5": "C0", "bosh3": "C1", "adaptive_heun": "C2", "euler": "C3", "rk4": "C4"}
PANELS = [("accuracy", "accuracy (all difficulties)", "linear"), ("nfe_forward", "NFE forward per example", "log"),
          ("nfe_backward", "NFE backward, 1 train step (VJPs)", "log"),
          ("eval_seconds", "wall time of the test pass (s, 1 thread)", "log")]
XLABELS = {"adaptive": "rtol = atol  (adaptive methods, solid; bottom axis)",
           "fixed": "step size h  (fixed-grid methods, dashed; top axis)"}
VALUES = ["accuracy", "nfe_forward", "nfe_backward", "eval_seconds", "train_step_seconds"]


def points(root: str) -> list[dict]:
    """Aggregated (arm, method, setting) points of both plans, mean ± std over seeds."""
    rows, missing = [], []
    for plan, (kind, knob, solver_key) in PLANS.items():
        evals = figlib.load_evals(root, plan)
        missing += [] if evals else [plan]
        for e in evals:
            method = figlib.eval_solver(e).get("method")
            train_solver = e["train"].get("solver") or {}
            at = train_solver.get(solver_key) if train_solver.get("method") == method else None
            for row in figlib.read_csv(Path(e["eval_dir"], "sweep.csv")):
                value = row["value"]
                trained = isinstance(value, float) and isinstance(at, (int, float)) and math.isclose(value, at)
                rows.append({"arm": e["arm"], "kind": kind, "method": method, "knob": knob, "value": value,
                             "trained": trained, "seed": e["seed"], **{v: row.get(v) for v in VALUES}})
    if missing:
        raise figlib.no_evals("F2", missing, root)
    return figlib.aggregate(rows, ["arm", "kind", "method", "knob", "value", "trained"], VALUES)


def main(argv: list[str] | None = None) -> list[Path]:
    args = figlib.standard_args(__doc__.split("\n\n")[0], argv)
    agg = points(args.root)
    arms = list(dict.fromkeys(r["arm"] for r in agg))
    fig, axes = plt.subplots(len(arms), len(PANELS), figsize=(18, 4.2 * len(arms)), squeeze=False)
    legend: dict[str, object] = {}
    for arm, row_axes in zip(arms, axes):
        for ax, (y, ylabel, scale) in zip(row_axes, PANELS):
            for kind, axis, style in (("adaptive", ax, "-"), ("fixed", ax.twiny(), "--")):
                settings = [r["value"] for r in agg if r["kind"] == kind]
                for method in dict.fromkeys(r["method"] for r in agg if r["kind"] == kind):
                    line = [r for r in agg if r["arm"] == arm and r["kind"] == kind and r["method"] == method]
                    if line:
                        figlib.errorline(axis, line, "value", y, color=METHODS.get(method), linestyle=style)
                        legend[f"{method} ({'adaptive: rtol=atol' if kind == 'adaptive' else 'fixed grid: step'})"] = \
                            axis.containers[-1]
                    for r in (r for r in line if r["trained"]):
                        axis.plot(r["value"], r[f"{y}_mean"], marker="*", markersize=16, markerfacecolor="none",
                                  markeredgecolor=METHODS.get(method), linestyle="none")
                axis.set_xscale("log")
                axis.set_xlim(max(settings) * 1.3, min(settings) / 1.3)  # coarse left, fine right
                axis.xaxis.set_major_locator(FixedLocator(sorted(set(settings))))
                axis.xaxis.set_minor_locator(NullLocator())
                axis.xaxis.set_major_formatter(lambda v, _: f"{v:g}")
                axis.set_xlabel(XLABELS[kind], fontsize=9)
                axis.tick_params(axis="x", labelsize=8)
            ax.set_yscale(scale)
            if scale == "log":
                ax.yaxis.set_major_formatter(lambda v, _: f"{v:g}")
                ax.yaxis.set_minor_formatter(lambda v, _: f"{v:g}" if f"{v:e}"[0] in "25" else "")
            ax.set_title(f"{figlib.label(arm)}\n{ylabel}", fontsize=10)
            ax.grid(alpha=0.3)
        row_axes[0].set_ylim(-0.03, 1.03)
    legend["trained setting"] = plt.Line2D([], [], marker="*", markersize=12, markerfacecolor="none",
                                           markeredgecolor="k", linestyle="none")
    fig.legend(list(legend.values()), list(legend), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=6,
               fontsize=9, frameon=False)
    fig.suptitle("F2: solver method × rtol/atol or step size, finer to the right (mean ± 1 std over seeds)")
    fig.tight_layout()
    return figlib.save(fig, agg, args.out, NAME)


if __name__ == "__main__":
    main()
