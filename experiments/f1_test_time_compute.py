"""F1 accuracy vs compute at test time: does spending more field evaluations at test time buy
accuracy, and does the ODE view (longer horizon, tighter tolerance) spend them better than more
loops? The continuous version of Ouro's performance-vs-recurrent-steps curve.

    python experiments/f1_test_time_compute.py --root outputs/reproduce/smoke --out experiments/figures

Left: accuracy on the trained difficulties; right: on the harder ones. x: mean NFE forward per
example (one loop step = one field evaluation). Lines: the loop arms over loop counts (eval plan
"loops"), the ODE arms over horizons t_end (plan "horizon", dopri5 1e-3) and over dopri5 tolerances
(plan "tolerance", t_end as trained). Stars: the setting each arm was trained at. Mean ± 1 std over seeds.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt

import figlib

NAME = "f1_test_time_compute"
# family (= eval plan), the knob it sweeps, line style; the tolerance family keeps its dopri5 jobs only
FAMILIES = {"loops": ("loops", "-"), "horizon": ("t_end", "-"), "tolerance": ("rtol=atol", "--")}
COLORS = {"looped": "C0", "looped_ouro": "C1", "ode": "C2", "ode_grid": "C3"}


def trained_value(train: dict, knob: str) -> float | None:
    """The training run's own setting of `knob`; None where it was not trained that way
    (a tolerance of a fixed-grid model) or the record does not say."""
    solver = train.get("solver") or {}
    if knob == "rtol=atol":
        return solver.get("rtol") if solver.get("method") == "dopri5" else None
    return solver.get(knob)


def tick(value: float) -> str:
    return f"{value:.0e}".replace("e-0", "e-") if 0 < value < 0.1 else f"{value:g}"


def points(root: str) -> tuple[list[dict], list[str], list[str]]:
    """Aggregated (family, arm, knob, value) points (accuracy in / harder and NFE, mean ± std over
    seeds) and the trained and harder difficulty keys."""
    rows, missing, difficulties = [], [], ([], [])
    for family, (knob, _) in FAMILIES.items():
        evals = [e for e in figlib.load_evals(root, family)
                 if family != "tolerance" or figlib.eval_solver(e).get("method") == "dopri5"]
        missing += [] if evals else [family]
        for e in evals:
            trained_d, harder_d = difficulties = figlib.split_difficulties(e)
            at = trained_value(e["train"], knob)
            for row in figlib.read_csv(Path(e["eval_dir"], "sweep.csv")):
                value = row["value"]
                rows.append({"family": family, "arm": e["arm"], "knob": knob, "value": value, "seed": e["seed"],
                             "trained": isinstance(value, float) and at is not None and math.isclose(value, at),
                             "accuracy_in": figlib.mean_accuracy(row, trained_d),
                             "accuracy_harder": figlib.mean_accuracy(row, harder_d), "nfe": row.get("nfe_forward")})
    if missing:
        raise figlib.no_evals("F1", missing, root)
    keys, values = ["family", "arm", "knob", "value", "trained"], ["accuracy_in", "accuracy_harder", "nfe"]
    return figlib.aggregate(rows, keys, values), *difficulties


def main(argv: list[str] | None = None) -> list[Path]:
    args = figlib.standard_args(__doc__.split("\n\n")[0], argv)
    agg, trained_d, harder_d = points(args.root)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    panels = [("accuracy_in", f"in distribution (difficulties {', '.join(trained_d)})"),
              ("accuracy_harder", f"harder (difficulties {', '.join(harder_d)})")]
    for ax, (y, title) in zip(axes, panels):
        for family, (knob, style) in FAMILIES.items():
            for arm in dict.fromkeys(r["arm"] for r in agg if r["family"] == family):
                line = [r for r in agg if r["family"] == family and r["arm"] == arm]
                color = COLORS.get(arm)
                figlib.errorline(ax, line, "nfe", y, color=color, linestyle=style, label=f"{figlib.label(arm)}: {knob}")
                for r in line:
                    ax.annotate(tick(r["value"]), (r["nfe_mean"], r[f"{y}_mean"]), textcoords="offset points",
                                xytext=(3, 4), fontsize=6, color=color)
                    if r["trained"]:
                        ax.plot(r["nfe_mean"], r[f"{y}_mean"], marker="*", markersize=15, markerfacecolor="none",
                                markeredgecolor=color, linestyle="none")
        ax.set(xscale="log", title=title, xlabel="NFE forward per example (log; 1 loop = 1 NFE)", ylim=(-0.03, 1.03))
        ax.xaxis.set_major_formatter(lambda v, _: f"{v:g}")  # 20, not 2 x 10^1
        ax.xaxis.set_minor_formatter(lambda v, _: f"{v:g}" if f"{v:e}"[0] in "25" else "")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (mean over difficulties)")
    fig.suptitle("F1: accuracy vs test-time compute (labels: loops / t_end / rtol=atol; mean ± 1 std over seeds)")
    handles, labels = axes[0].get_legend_handles_labels()
    star = plt.Line2D([], [], marker="*", markersize=12, markerfacecolor="none", markeredgecolor="k", linestyle="none")
    fig.legend(handles + [star], labels + ["trained setting"], loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4,
               fontsize=8, frameon=False)
    fig.tight_layout()
    return figlib.save(fig, agg, args.out, NAME)


if __name__ == "__main__":
    main()
