"""F6 Mano iso-parameter / iso-FLOP (Ouro Fig. 6 analogue): at matched parameters (one distinct
block) do the looped and ODE models beat the 1-layer transformer, and at matched FLOPs per token
(4 block evaluations) do they reach the 4-layer transformer?

    python experiments/f6_iso_param_flop.py --root outputs/reproduce/smoke --out experiments/figures

Reads the training records (metrics.json) of study "mano_iso" (`python -m odelm.train -m
experiment=mano_iso`): plain transformers of 1, 2, 4 layers, the looped model (T=4) and the ODE
model. Panels: test accuracy over every difficulty vs parameters, and vs FLOPs per token (both log x);
transformers are one line over their layer counts (each point labelled), looped and ODE one marker each;
mean ± std over seeds.
CSV f6_iso_param_flop.csv: one row per arm: family, n_layers, params, flops_per_token, nfe_forward,
accuracy, accuracy_trained (in distribution: mean over the trained difficulties), accuracy_harder
as _mean/_std, n = seeds.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from figlib import (NoData, aggregate, errorline, label, load_runs, mean_accuracy, save, split_difficulties,
                    standard_args)

STUDY = "mano_iso"
PANELS = [("params", "parameters"), ("flops_per_token", "FLOPs per token")]
MARKERS = ["s", "D", "^", "v"]  # looped, ODE, ...: one hollow marker per non-transformer arm


def main(argv: list[str] | None = None) -> list[Path]:
    args = standard_args(__doc__.split("\n\n")[0], argv)
    runs = load_runs(args.root, STUDY)
    if not runs:
        raise NoData(f"no successful runs of study {STUDY!r} under {args.root}; make them with "
                     f"`python experiments/reproduce.py --out {args.root} --studies {STUDY} --stages train`")
    rows = []
    for r in runs:
        trained, harder = split_difficulties(r)
        family = r["model"]["family"]
        rows.append({"arm": r["arm"], "family": family,
                     "n_layers": r["model"]["n_layers"] if family == "transformer" else None,
                     **{k: r.get(k) for k in ("params", "flops_per_token", "nfe_forward", "accuracy")},
                     "accuracy_trained": mean_accuracy(r["accuracy_by_difficulty"], trained, ""),
                     "accuracy_harder": mean_accuracy(r["accuracy_by_difficulty"], harder, "")})
    table = aggregate(sorted(rows, key=lambda r: (r["family"] != "transformer", r["n_layers"] or 0)),
                      ["arm", "family", "n_layers"],
                      ["params", "flops_per_token", "nfe_forward", "accuracy", "accuracy_trained", "accuracy_harder"])

    fig, axes = plt.subplots(1, len(PANELS), figsize=(6 * len(PANELS), 4.4), sharey=True)
    transformers = [r for r in table if r["family"] == "transformer"]
    others = [r for r in table if r["family"] != "transformer"]
    for ax, (x, xlabel) in zip(axes, PANELS):
        if transformers:
            errorline(ax, transformers, x, "accuracy", color="black", label="transformer (1…N layers)")
            for r in transformers:
                ax.annotate(f"{r['n_layers']}L", (r[f"{x}_mean"], r["accuracy_mean"]), xytext=(4, 5),
                            textcoords="offset points", fontsize=9)
        for i, r in enumerate(others):
            ax.errorbar(r[f"{x}_mean"], r["accuracy_mean"], yerr=r["accuracy_std"], capsize=3,
                        marker=MARKERS[i % len(MARKERS)], markersize=9, fillstyle="none", markeredgewidth=1.8,
                        linestyle="none", color=f"C{i}", label=label(r["arm"]))
        ax.set_xscale("log")
        ax.set(xlabel=f"{xlabel} (log scale)", title=f"accuracy vs {xlabel}")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("test accuracy (all difficulties)")
    axes[0].legend(fontsize=9, loc="best")
    fig.suptitle(f"F6: Mano, iso-parameter / iso-FLOP; mean ± std over ≤ {max(r['n'] for r in table)} seeds")
    fig.tight_layout()
    return save(fig, table, args.out, "f6_iso_param_flop")


if __name__ == "__main__":
    main()
