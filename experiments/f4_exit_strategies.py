"""F4 exit strategies (Ouro Fig. 5 analogue): does stopping each example early (state change, KL
between successive read-outs, Ouro's Q-exit gate) keep the accuracy of the static depth at less
compute, for the looped family and for the ODE family (event-stopped dopri5 solves)?

    python experiments/f4_exit_strategies.py --root outputs/reproduce/smoke --out experiments/figures

Reads eval plans of experiments/reproduce.py on the "core" checkpoints:
  looped family  static = "loops" (model.loops <= the trained T=4), state_change =
                 "exit_loop_state_change", kl = "exit_loop_kl", q_exit = "exit_loop_q" (looped_ouro only),
                 converged = "exit_loop_converged"; x = mean depth (loops).
  ODE family     static = "exit_ode_static" (exit=static exit.mode=per_example, dopri5 to depths 1-4),
                 state_change = "exit_ode_state_change", kl = "exit_ode_kl", converged =
                 "exit_ode_converged"; x = mean NFE per example (the exit depth tau is in the CSV).
The ODE strategies are compared on equal terms: every one is solved per example on the same test
examples (each difficulty seeded on its own, so the smaller smoke set is a subset of the full one),
no NFE counts padding, and an exit check reuses the derivative the solver already computed where it
can (the convergence stop always; state_change and kl pay for the event's bisection only).
y = test accuracy over every difficulty; colour = strategy, line style = arm; mean ± std over seeds.
CSV f4_exit_strategies.csv: one row per (family, arm, strategy, setting): sweep key and value,
accuracy, accuracy_trained (mean over the trained difficulties), depth, nfe_forward as _mean/_std, n.
Below paper scale every per-example ODE plan uses the same 20 (smoke) or 50 (cpu) test examples per
difficulty (reproduce.PER_EXAMPLE_N_TEST).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from figlib import (NoData, aggregate, errorline, label, load_evals, mean_accuracy, read_csv, save,
                    split_difficulties, standard_args)

MAX_STATIC_LOOPS = 4  # the trained depth: more loops than trained is F1's question, not an exit's
FAMILIES = {  # family: ({strategy: eval plan}, x column, x label)
    "looped": ({"static": "loops", "state_change": "exit_loop_state_change", "kl": "exit_loop_kl",
                "q_exit": "exit_loop_q", "converged": "exit_loop_converged"}, "depth", "mean depth (loop steps)"),
    "ODE": ({"static": "exit_ode_static", "state_change": "exit_ode_state_change", "kl": "exit_ode_kl",
             "converged": "exit_ode_converged"}, "nfe_forward", "mean NFE per example"),
}
COLOURS = {"static": "black", "state_change": "C0", "kl": "C1", "q_exit": "C2", "converged": "C3"}
LINESTYLES = ["-", "--", ":", "-."]


def main(argv: list[str] | None = None) -> list[Path]:
    args = standard_args(__doc__.split("\n\n")[0], argv)
    rows = []
    for family, (plans, _, _) in FAMILIES.items():
        for strategy, plan in plans.items():
            for record in load_evals(args.root, plan):
                trained = split_difficulties(record)[0]
                for row in read_csv(Path(record["eval_dir"], "sweep.csv")):
                    if plan == "loops" and (row["value"] or 0) > MAX_STATIC_LOOPS:
                        continue
                    rows.append({**row, "family": family, "arm": record["arm"], "strategy": strategy,
                                 "setting": row["value"], "accuracy_trained": mean_accuracy(row, trained)})
    if not rows:
        plans = [p for family in FAMILIES.values() for p in family[0].values()]
        raise NoData(f"no evaluations of plans {plans} under {args.root}/eval; make them with "
                     f"`python experiments/reproduce.py --out {args.root} --studies core --stages train,eval`")
    table = aggregate(rows, ["family", "arm", "strategy", "key", "setting"],
                      ["accuracy", "accuracy_trained", "depth", "nfe_forward"])

    fig, axes = plt.subplots(1, len(FAMILIES), figsize=(6.2 * len(FAMILIES), 4.6))
    for ax, (family, (plans, x, xlabel)) in zip(axes, FAMILIES.items()):
        arms = list(dict.fromkeys(r["arm"] for r in table if r["family"] == family))
        for arm, linestyle in zip(arms, LINESTYLES):
            for strategy in plans:
                curve = sorted((r for r in table if (r["family"], r["arm"], r["strategy"]) == (family, arm, strategy)),
                               key=lambda r: r[f"{x}_mean"])
                if curve:
                    errorline(ax, curve, x, "accuracy", color=COLOURS[strategy], linestyle=linestyle,
                              label=f"{label(arm)}: {strategy}")
        ax.set(xlabel=xlabel, ylabel="test accuracy (all difficulties)", title=f"{family} family")
        ax.grid(alpha=0.3)
        if not arms:
            ax.text(0.5, 0.5, f"no evaluations of plans {list(plans.values())}", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8)
            continue
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False,
                  handlelength=3)
    fig.suptitle(f"F4: accuracy vs compute per exit strategy; mean ± std over ≤ {max(r['n'] for r in table)} seeds")
    fig.tight_layout()
    return save(fig, table, args.out, "f4_exit_strategies")


if __name__ == "__main__":
    main()
