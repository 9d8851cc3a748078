"""F10 constraint satisfaction vs test-time compute on Sudoku: does a model that iterates a latent state
(looped, ODE) keep buying constraint satisfaction with more field evaluations at test time, per
difficulty (number of blanks), where a plain transformer of equal parameters or equal FLOPs cannot?

    python experiments/f10_constraint_compute.py --root outputs/reproduce/smoke --out experiments/figures

Reads study "constraint" (`python -m odelm.train -m experiment=constraint`: 4×4 and 6×6 Sudoku, whole grid
at once, bidirectional attention) and its eval plans (experiments/reproduce.py): the looped model over loop
counts ("constraint_loops") and the convergence stop ("constraint_exit"), the ODE model over horizons
("constraint_horizon", its trained Euler grid) and dopri5 tolerances ("constraint_tolerance"). Transformers
(1 layer: the looped parameters; 8 layers: its FLOPs) are single points at their depth.
One row of panels per grid size: constraint satisfaction (every given kept, no row/column/box broken) over
all difficulties, and on the hardest difficulty with exact solve beside it (dashed); x = field
evaluations (NFE) per example, log scale; mean ± 1 std over seeds.
CSV f10_constraint_compute.csv: one row per grid, arm, series and setting: nfe, constraint_satisfied,
accuracy (exact solve), violations, cell_accuracy as _mean/_std, the per-difficulty
constraint_satisfied_d<k>_mean / accuracy_d<k>_mean, and n = seeds.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

import figlib

STUDY = "constraint"
NAME = "f10_constraint_compute"
# eval plan → (series label, line style)
SERIES = {"constraint_loops": ("loops", "-"), "constraint_exit": ("convergence stop", ":"),
          "constraint_horizon": ("horizon t_end", "-"), "constraint_tolerance": ("dopri5 rtol=atol", "--")}
COLORS = {"looped": "C0", "ode_grid": "C3", "transformer1": "0.55", "transformer8": "black"}
LABELS = {"looped": "looped (T=8)", "ode_grid": "ODE (Euler 0.5 on [0, 4] + kinetic)"}  # this study's arms
METRICS = ["nfe_forward", "constraint_satisfied", "accuracy", "violations", "cell_accuracy"]


def label(arm: str) -> str:
    return LABELS.get(arm, figlib.label(arm))


def grid_of(record: dict) -> str:
    params = (record.get("task") or {}).get("params") or {}
    n = int(params.get("box_rows", 0)) * int(params.get("box_cols", 0))
    return f"{n}x{n}" if n else "?"


def _point(grid: str, arm: str, series: str, value, seed, row: dict, levels: list[str]) -> dict:
    point = {"grid": grid, "arm": arm, "series": series, "value": value, "seed": seed,
             **{m: row.get(m) for m in METRICS}}
    for d in levels:
        point[f"constraint_satisfied_d{d}"] = row.get(f"constraint_satisfied_d{d}")
        point[f"accuracy_d{d}"] = row.get(f"accuracy_d{d}")
    return point


def _train_row(record: dict) -> dict:
    """A training record flattened like an eval sweep row."""
    row = {m: record.get(m) for m in METRICS}
    for name in ("constraint_satisfied", "accuracy"):
        row.update({f"{name}_d{d}": v for d, v in (record.get(f"{name}_by_difficulty") or {}).items()})
    return row


def points(root: str) -> tuple[list[dict], dict[str, list[str]]]:
    runs = figlib.load_runs(root, STUDY)
    if not runs:
        raise figlib.NoData(f"{NAME}: no successful runs of study {STUDY!r} under {root}; make them with "
                            f"`python experiments/reproduce.py --out {root} --studies {STUDY} --stages train,eval`")
    levels: dict[str, list[str]] = {}
    for r in runs:
        levels.setdefault(grid_of(r), sorted({*levels.get(grid_of(r), []), *r["accuracy_by_difficulty"]}, key=int))
    out = [_point(grid_of(r), r["arm"], "trained", None, r["seed"], _train_row(r), levels[grid_of(r)]) for r in runs]
    for plan in SERIES:
        for record in figlib.load_evals(root, plan, study=STUDY):
            grid = grid_of(record["train"])
            for row in (record.get("sweep") or {}).get("rows", []):
                out.append(_point(grid, record["arm"], plan, row["value"], record["seed"], row, levels[grid]))
    return out, levels


def main(argv: list[str] | None = None) -> list[Path]:
    args = figlib.standard_args(__doc__.split("\n\n")[0], argv)
    pts, levels = points(args.root)
    per_level = [f"{name}_d{d}" for d in sorted({d for ls in levels.values() for d in ls}, key=int)
                 for name in ("constraint_satisfied", "accuracy")]
    table = figlib.aggregate(pts, ["grid", "arm", "series", "value"], METRICS + per_level)
    grids = sorted(levels, key=lambda g: int(g.split("x")[0]) if g[0].isdigit() else 0)
    fig, axes = plt.subplots(len(grids), 2, figsize=(12, 4.2 * len(grids)), squeeze=False, sharex="row")
    for (ax_all, ax_hard), grid in zip(axes, grids):
        hardest = levels[grid][-1]
        rows = [r for r in table if r["grid"] == grid]
        for arm in dict.fromkeys(r["arm"] for r in rows):
            color = COLORS.get(arm, None)
            trained = [r for r in rows if r["arm"] == arm and r["series"] == "trained"]
            for plan, (what, style) in SERIES.items():
                line = sorted((r for r in rows if r["arm"] == arm and r["series"] == plan),
                              key=lambda r: r["nfe_forward_mean"])
                if not line:
                    continue
                name = f"{label(arm)}: {what}"
                figlib.errorline(ax_all, line, "nfe_forward", "constraint_satisfied", color=color, linestyle=style,
                                 label=name)
                figlib.errorline(ax_hard, line, "nfe_forward", f"constraint_satisfied_d{hardest}", color=color,
                                 linestyle=style, label=name)
                ax_hard.plot([r["nfe_forward_mean"] for r in line], [r[f"accuracy_d{hardest}_mean"] for r in line],
                             color=color, linestyle="--", alpha=0.5, linewidth=1)
            for r in trained:  # the setting trained at (transformers: their only setting)
                marker = "*" if arm in ("looped", "ode_grid") else "s"
                for ax, y in ((ax_all, "constraint_satisfied"), (ax_hard, f"constraint_satisfied_d{hardest}")):
                    ax.errorbar(r["nfe_forward_mean"], r[f"{y}_mean"], yerr=r[f"{y}_std"], marker=marker,
                                markersize=11 if marker == "*" else 8, color=color or "black", linestyle="none",
                                capsize=3, label=f"{label(arm)} (as trained)" if ax is ax_all else None)
        for ax, title in ((ax_all, f"{grid}: all difficulties"),
                          (ax_hard, f"{grid}: hardest ({hardest} blanks); dashed thin: exact solve")):
            ax.set_xscale("log", base=2)
            ax.set(xlabel="field evaluations per example (NFE; transformer: layers)", title=title, ylim=(-0.03, 1.03))
            ax.grid(alpha=0.3, which="both")
        ax_all.set_ylabel("constraint satisfaction")
        ax_all.legend(fontsize=7, loc="best")
    n = max(r["n"] for r in table)
    fig.suptitle(f"F10: Sudoku constraint satisfaction vs test-time compute; mean ± std over ≤ {n} seeds")
    fig.tight_layout()
    return figlib.save(fig, table, args.out, NAME)


if __name__ == "__main__":
    main()
