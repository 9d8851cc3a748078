"""F7 depth generalisation: does accuracy hold up on difficulties beyond the trained range, and does
more test-time compute (more loops for the looped models, a longer horizon t_end for the ODE
models) extend that range, for the looped models and for the ODE models alike?

    python experiments/f7_depth_generalisation.py --root outputs/reproduce/smoke --out experiments/figures

One panel per arm: accuracy per test difficulty (grey: the trained difficulties), one line per
compute level: loops 2, 4, 8 (eval plan "loops") or t_end 2, 4, 8 (plan "horizon", dopri5 1e-3).
The legend gives each level's mean NFE forward. Mean ± 1 std over seeds.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt

import figlib

NAME = "f7_depth_generalisation"
PLANS = {"loops": "loops", "horizon": "t_end"}  # eval plan -> the compute knob it sweeps
LEVELS = (2.0, 4.0, 8.0)
ARMS = ("looped", "looped_ouro", "ode", "ode_grid")


def points(root: str) -> tuple[list[dict], list[int]]:
    """Aggregated (arm, knob, value, difficulty) accuracies and NFE, and the trained difficulties."""
    rows, missing, trained_range = [], [], set()
    for plan, knob in PLANS.items():
        evals = figlib.load_evals(root, plan)
        missing += [] if evals else [plan]
        for e in evals:
            sweep = figlib.read_csv(Path(e["eval_dir"], "sweep.csv"))
            levels = [k.removeprefix("accuracy_d") for k in sweep[0] if k.startswith("accuracy_d")] if sweep else []
            # a sweep's record promotes no setting: its difficulties are the sweep rows' columns
            trained_d, _ = figlib.split_difficulties({"task": e["train"]["task"],
                                                      "accuracy_by_difficulty": dict.fromkeys(levels)})
            trained_range.update(int(d) for d in trained_d)
            at = (e["train"].get("solver") or {}).get(knob)
            for row in sweep:
                if not any(row["value"] == level for level in LEVELS):
                    continue
                for d in levels:
                    rows.append({"arm": e["arm"], "knob": knob, "value": row["value"], "difficulty": int(d),
                                 "in_trained_range": d in trained_d, "seed": e["seed"],
                                 "trained_compute": at is not None and math.isclose(row["value"], at),
                                 "accuracy": row.get(f"accuracy_d{d}"), "nfe": row.get(f"nfe_d{d}")})
    if missing:
        raise figlib.no_evals("F7", missing, root)
    keys = ["arm", "knob", "value", "trained_compute", "difficulty", "in_trained_range"]
    return figlib.aggregate(rows, keys, ["accuracy", "nfe"]), sorted(trained_range)


def main(argv: list[str] | None = None) -> list[Path]:
    args = figlib.standard_args(__doc__.split("\n\n")[0], argv)
    agg, trained_range = points(args.root)
    arms = [a for a in ARMS if any(r["arm"] == a for r in agg)]
    fig, axes = plt.subplots(1, len(arms), figsize=(4.3 * len(arms), 4.6), sharey=True, squeeze=False)
    colors = dict(zip(LEVELS, plt.cm.viridis([0.0, 0.45, 0.8])))
    for ax, arm in zip(axes[0], arms):
        if trained_range:
            ax.axvspan(min(trained_range) - 0.5, max(trained_range) + 0.5, color="0.9", zorder=0)
        for i, level in enumerate(LEVELS):
            line = [r for r in agg if r["arm"] == arm and r["value"] == level]
            if not line:
                continue
            dodged = [{**r, "x": r["difficulty"] + 0.06 * (i - 1)} for r in line]  # keep error bars apart
            nfe = figlib.mean_std(r["nfe_mean"] for r in line)[0]
            trained = " (trained)" if line[0]["trained_compute"] else ""
            figlib.errorline(ax, dodged, "x", "accuracy", color=colors[level], linewidth=2.2 if trained else 1.4,
                             label=f"{line[0]['knob']} = {level:g}{trained}, ≈{nfe:.3g} NFE")
        difficulties = sorted({r["difficulty"] for r in agg})
        ax.set(title=figlib.label(arm), xticks=difficulties, xlabel="test difficulty (grey: trained range)",
               ylim=(-0.03, 1.03))
        ax.grid(alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.17), fontsize=8, frameon=False)
    axes[0][0].set_ylabel("accuracy at that difficulty")
    fig.suptitle("F7: accuracy per difficulty beyond the trained range, by test-time compute (mean ± 1 std over seeds)")
    fig.tight_layout()
    return figlib.save(fig, agg, args.out, NAME)


if __name__ == "__main__":
    main()
