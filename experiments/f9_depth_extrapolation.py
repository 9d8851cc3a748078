"""F9 depth extrapolation: does a longer horizon leave the trained answers unchanged (no
overthinking) and lift the harder, untrained difficulties, and where does the convergence stop land?

    python experiments/f9_depth_extrapolation.py --root outputs/reproduce/smoke --out experiments/figures

Reads eval plans of experiments/reproduce.py on the "flow" study: "flow_horizon" (t_end = x1, x2, x4
the trained horizon, on the training grid euler 1 and by dopri5 1e-3) and "flow_converged" (dopri5,
stop once ‖F‖/‖h‖ < ε, per example, up to x4). One panel for the trained difficulties (mean), one
per harder difficulty: accuracy against the horizon as a multiple of the trained one; solid lines
dopri5, dashed euler 1, stars the convergence stop at its mean depth (ε = 1e-3). Mean ± 1 std over seeds.
CSV f9_depth_extrapolation.csv: one row per (arm, solver, multiple or "converged ε", group):
accuracy, nfe, depth as _mean/_std, n.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

import figlib

NAME = "f9_depth_extrapolation"
STUDY = "flow"
MULTIPLES = (1.0, 2.0, 4.0)
STAR_THRESHOLD = 1e-3


def trained_horizon(train: dict) -> float:
    """The depth a run was trained to: an ODE's t_end, a loop's count."""
    solver = train.get("solver") or {}
    return float(solver.get("t_end") or solver.get("loops") or 4.0)


def _groups(e: dict, row: dict) -> dict[str, float | None]:
    trained, beyond = figlib.split_difficulties(e)
    out = {"trained": figlib.mean_accuracy(row, trained)}
    out.update({f"d{d}": row.get(f"accuracy_d{d}") for d in beyond})
    return out


def points(root: str) -> list[dict]:
    rows = []
    horizon = figlib.load_evals(root, "flow_horizon", study=STUDY)
    converged = figlib.load_evals(root, "flow_converged", study=STUDY)
    if not horizon:
        raise figlib.NoData(f"F9: no successful evaluations of plan 'flow_horizon' under {root}/eval (or no flow "
                            f"study under {root}/{STUDY}); make them with: python experiments/reproduce.py --out "
                            f"{root} --stages train,eval --studies flow")
    for e in horizon:
        T = trained_horizon(e["train"])
        method = figlib.eval_solver(e).get("method")
        for row in figlib.read_csv(Path(e["eval_dir"], "sweep.csv")):
            multiple = row["value"] / T
            if not any(abs(multiple - m) < 1e-6 for m in MULTIPLES):
                continue
            for group, acc in _groups(e, row).items():
                rows.append({"arm": e["arm"], "solver": method, "setting": f"x{multiple:g}", "multiple": multiple,
                             "group": group, "seed": e["seed"], "accuracy": acc, "nfe": row["nfe_forward"],
                             "depth": row.get("depth")})
    for e in converged:
        T = trained_horizon(e["train"])
        for row in figlib.read_csv(Path(e["eval_dir"], "sweep.csv")):
            for group, acc in _groups(e, row).items():
                depth = row.get("depth")
                rows.append({"arm": e["arm"], "solver": "converged", "setting": f"converged {row['value']:g}",
                             "multiple": depth / T if depth is not None else None, "group": group, "seed": e["seed"],
                             "accuracy": acc, "nfe": row["nfe_forward"], "depth": depth})
    return figlib.aggregate(rows, ["arm", "solver", "setting", "group"], ["multiple", "accuracy", "nfe", "depth"])


def main(argv: list[str] | None = None) -> list[Path]:
    args = figlib.standard_args(__doc__.split("\n\n")[0], argv)
    table = points(args.root)
    groups = list(dict.fromkeys(r["group"] for r in table))
    arms = list(dict.fromkeys(r["arm"] for r in table))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.6 * len(groups), 4.6), sharey=True, squeeze=False)
    for ax, group in zip(axes[0], groups):
        for i, arm in enumerate(arms):
            colour = f"C{i % 10}"
            for solver, linestyle in (("dopri5", "-"), ("euler", "--")):
                line = sorted((r for r in table if (r["arm"], r["solver"], r["group"]) == (arm, solver, group)),
                              key=lambda r: r["multiple_mean"])
                if line:
                    figlib.errorline(ax, line, "multiple", "accuracy", color=colour, linestyle=linestyle,
                                     label=f"{figlib.label(arm)}" if solver == "dopri5" else None)
            stars = [r for r in table if (r["arm"], r["solver"], r["group"]) == (arm, "converged", group)
                     and r["setting"] == f"converged {STAR_THRESHOLD:g}" and r["multiple_mean"] == r["multiple_mean"]]
            for r in stars:
                ax.plot(r["multiple_mean"], r["accuracy_mean"], marker="*", markersize=12, color=colour,
                        linestyle="none")
        ax.set_xscale("log", base=2)
        ax.set_xticks(MULTIPLES, [f"x{m:g}" for m in MULTIPLES])
        ax.set(xlabel="horizon / trained horizon", title="trained difficulties" if group == "trained" else
               f"difficulty {group[1:]} (untrained)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"F9: depth extrapolation (solid dopri5 1e-3, dashed euler 1, ★ convergence stop ε={STAR_THRESHOLD:g}); "
                 f"mean ± std over ≤ {max(r['n'] for r in table)} seeds")
    fig.tight_layout()
    return figlib.save(fig, table, args.out, NAME)


if __name__ == "__main__":
    main()
