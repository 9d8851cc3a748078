"""F3 NFE over training: does a regulariser or a flow-matching recipe keep the adaptively trained
ODE model (dopri5 1e-3) cheap to solve, and what do the adjoint method (seminorm vs default norm)
and direct back-propagation cost per step?

    python experiments/f3_nfe_over_training.py --root outputs/reproduce/smoke --out experiments/figures

Reads study "regularisers" (`python -m odelm.train -m experiment=regularisers`): the `train` rows of
each run's metrics.csv (NFE of the logged step's forward solve and backward pass; wall_time is
cumulative training time, validation excluded) and the final test record of metrics.json.
Panels: NFE forward, NFE backward and cumulative training time vs step; one line per arm
(mean, band ±1 std over seeds; adjoint arms dashed; the legend gives the final test accuracy).
CSV f3_nfe_over_training.csv, two kinds of row (column `split`):
  split=train  one per (arm, step): nfe_forward, nfe_backward, wall_time and seconds_per_step
               (Δwall_time/Δstep since the previous logged step) as _mean/_std, n = seeds;
  split=test   one per arm (step empty): train_steps, test_accuracy, test_accuracy_trained (mean over
               the trained difficulties), test_nfe_forward, train_seconds as _mean/_std, n.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from figlib import (NoData, aggregate, label, load_runs, mean_accuracy, read_csv, save, split_difficulties,
                    standard_args)

STUDY = "regularisers"
PANELS = [("nfe_forward", "forward solve", "NFE forward per step"),
          ("nfe_backward", "backward pass", "NFE backward per step"),
          ("wall_time", "training time", "cumulative training time (s)")]


def main(argv: list[str] | None = None) -> list[Path]:
    args = standard_args(__doc__.split("\n\n")[0], argv)
    runs = [r for r in load_runs(args.root, STUDY) if Path(r["job_dir"], "metrics.csv").exists()]
    if not runs:
        raise NoData(f"no successful runs of study {STUDY!r} under {args.root}; make them with "
                     f"`python experiments/reproduce.py --out {args.root} --studies {STUDY} --stages train`")
    steps = []
    for run in runs:
        last_step, last_wall = 0.0, 0.0
        for row in read_csv(Path(run["job_dir"], "metrics.csv")):
            if row["split"] != "train":
                continue
            wall, step = row["wall_time"], row["step"]
            known = wall is not None and last_wall is not None and step > last_step
            rate = (wall - last_wall) / (step - last_step) if known else None
            steps.append({**row, "arm": run["arm"], "seconds_per_step": rate})
            last_step, last_wall = step, wall
    curves = aggregate(steps, ["arm", "step"], ["nfe_forward", "nfe_backward", "wall_time", "seconds_per_step"])
    tests = [{"arm": r["arm"], "train_steps": r.get("train_steps"), "test_accuracy": r.get("accuracy"),
              "test_accuracy_trained": mean_accuracy(r["accuracy_by_difficulty"], split_difficulties(r)[0], ""),
              "test_nfe_forward": r.get("nfe_forward"), "train_seconds": r.get("train_seconds")} for r in runs]
    finals = aggregate(tests, ["arm"], [k for k in tests[0] if k != "arm"])
    accuracy = {f["arm"]: f["test_accuracy_mean"] for f in finals}

    fig, axes = plt.subplots(1, len(PANELS), figsize=(5.2 * len(PANELS), 4.2))
    for i, arm in enumerate(dict.fromkeys(r["arm"] for r in runs)):
        rows = sorted((r for r in curves if r["arm"] == arm), key=lambda r: r["step"])
        style = {"color": f"C{i}", "linestyle": "--" if arm.startswith("adjoint") else "-"}
        for ax, (value, _, _) in zip(axes, PANELS):
            x = [r["step"] for r in rows]
            mean, std = [r[f"{value}_mean"] for r in rows], [r[f"{value}_std"] for r in rows]
            ax.plot(x, mean, label=f"{label(arm)} (test acc {accuracy[arm]:.2f})", **style)
            ax.fill_between(x, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                            color=style["color"], alpha=0.15, linewidth=0)
    for ax, (_, title, ylabel) in zip(axes, PANELS):
        ax.set(xlabel="training step", ylabel=ylabel, title=title)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=9, frameon=False)
    n = max(f["n"] for f in finals)
    fig.suptitle(f"F3: cost of training the ODE model (dopri5) per recipe; mean ± std over ≤ {n} seeds")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    rows = [{"split": "train", **r} for r in curves] + [{"split": "test", **f} for f in finals]
    return save(fig, rows, args.out, "f3_nfe_over_training")


if __name__ == "__main__":
    main()
