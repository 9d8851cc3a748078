"""F5 logit lens: is the answer decodable from the intermediate state before the trained depth,
and does it settle (state approaching the final one, lower entropy) the same way along the loop
steps of a looped model as along the continuous depth tau of an ODE model?

    python experiments/f5_logit_lens.py --root outputs/reproduce/smoke --out experiments/figures

Reads lens.csv of eval plans "loops" (looped arms, depths 0..4) and "horizon" (ODE arms, depths
0, 0.5, 1, 2, 3, 4) of experiments/reproduce.py: the read-out head applied to the state at depth tau
of the trained solve (written once per eval job, whatever its sweep). Panels: test accuracy,
distance of the state to the final state, and entropy of the read-out vs tau; a line per arm
(solid looped, dashed ODE), mean ± std over seeds.
CSV f5_logit_lens.csv: one row per (family, arm, depth): accuracy, accuracy_trained (mean over the
trained difficulties), accuracy_harder (over the harder ones), distance_to_final, entropy as
_mean/_std, n = seeds.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from figlib import (NoData, aggregate, errorline, label, load_evals, mean_accuracy, read_csv, save,
                    split_difficulties, standard_args)

PLANS = {"loops": ("looped", "-"), "horizon": ("ODE", "--")}  # plan: (family, line style)
PANELS = [("accuracy", "decoded accuracy", "test accuracy (all difficulties)"),
          ("distance_to_final", "state vs final state", "relative distance ‖h(τ) − h(end)‖ / ‖h(end)‖"),
          ("entropy", "read-out entropy", "next-token entropy (nats)")]


def main(argv: list[str] | None = None) -> list[Path]:
    args = standard_args(__doc__.split("\n\n")[0], argv)
    rows = []
    for plan, (family, _) in PLANS.items():
        for record in load_evals(args.root, plan):
            lens = Path(record["eval_dir"], "lens.csv")
            trained, harder = split_difficulties(record)
            for row in read_csv(lens) if lens.exists() else []:
                rows.append({**row, "family": family, "arm": record["arm"],
                             "accuracy_trained": mean_accuracy(row, trained),
                             "accuracy_harder": mean_accuracy(row, harder)})
    if not rows:
        raise NoData(f"no lens.csv in eval plans {list(PLANS)} under {args.root}/eval; make them with "
                     f"`python experiments/reproduce.py --out {args.root} --studies core --stages train,eval`")
    table = aggregate(sorted(rows, key=lambda r: r["depth"]), ["family", "arm", "depth"],
                      ["accuracy", "accuracy_trained", "accuracy_harder", "distance_to_final", "entropy"])

    fig, axes = plt.subplots(1, len(PANELS), figsize=(5.2 * len(PANELS), 4.2))
    arms = list(dict.fromkeys((r["family"], r["arm"]) for r in table))
    for i, (family, arm) in enumerate(arms):
        curve = [r for r in table if (r["family"], r["arm"]) == (family, arm)]
        linestyle = next(style for fam, style in PLANS.values() if fam == family)
        for ax, (value, _, _) in zip(axes, PANELS):
            errorline(ax, curve, "depth", value, color=f"C{i}", linestyle=linestyle, label=label(arm))
    for ax, (_, title, ylabel) in zip(axes, PANELS):
        ax.set(xlabel="depth τ (loop steps / ODE time)", ylabel=ylabel, title=title)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(arms), fontsize=9, frameon=False, handlelength=3)
    fig.suptitle(f"F5: logit lens along depth; mean ± std over ≤ {max(r['n'] for r in table)} seeds")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return save(fig, table, args.out, "f5_logit_lens")


if __name__ == "__main__":
    main()
