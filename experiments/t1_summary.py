"""T1 summary table: parameters, FLOPs per token, accuracy, mean NFE and training wall time per model,
mean ± std over seeds, and how many seeds reached the target accuracy (if the study set one),
for the studies that train models to compare (core: pointer_chase; mano_iso: Mano).

    python experiments/t1_summary.py --root outputs/reproduce/smoke --out experiments/figures

Writes t1_summary.csv (numbers) and t1_summary.md (the table as printed). Accuracy is split into
the trained difficulties and the harder ones; NFE and FLOPs are per test example / token at the
model's own trained setting (the ODE models' trained solver).
"""
from __future__ import annotations

from pathlib import Path

from figlib import NoData, aggregate, label, load_runs, split_difficulties, standard_args, write_csv

STUDIES = ("core", "mano_iso")
VALUES = ["params", "flops_per_token", "accuracy", "acc_trained", "acc_harder", "nfe_forward", "train_seconds",
          "train_steps", "reached"]


def run_row(record: dict) -> dict:
    trained, harder = split_difficulties(record)
    by = record["accuracy_by_difficulty"]
    mean = lambda keys: sum(by[k] for k in keys) / len(keys) if keys else None  # noqa: E731
    return {"study": record["study"], "arm": record["arm"], "seed": record["seed"],
            "params": record["params"], "flops_per_token": record.get("flops_per_token"),
            "accuracy": record["accuracy"], "acc_trained": mean(trained), "acc_harder": mean(harder),
            "nfe_forward": record["nfe_forward"], "train_seconds": record["train_seconds"],
            "train_steps": record["train_steps"],
            # 1 / 0: validation reached the run's target accuracy (or its budget ended first); NaN: no target
            "reached": (float("nan") if record.get("target_accuracy") is None
                        else float(record.get("target_reached_at_step") is not None))}


def fmt(mean: float, std: float, digits: int) -> str:
    if mean != mean:  # NaN: no value
        return "-"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std else f"{mean:.{digits}f}"


def reached(row: dict) -> str:
    """How many seeds reached the target accuracy before their budget ended ("-" without a target)."""
    share = row["reached_mean"]
    return "-" if share != share else f"{round(share * row['n'])}/{row['n']}"


def markdown(rows: list[dict]) -> str:
    lines = ["| study | model | params | MFLOPs/token | acc (trained) | acc (harder) | acc (all) | NFE | train s | steps | reached target | n |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['study']} | {label(r['arm'])} | {r['params_mean']:,.0f} | {r['flops_per_token_mean'] / 1e6:.2f} | "
            f"{fmt(r['acc_trained_mean'], r['acc_trained_std'], 3)} | {fmt(r['acc_harder_mean'], r['acc_harder_std'], 3)} | "
            f"{fmt(r['accuracy_mean'], r['accuracy_std'], 3)} | {fmt(r['nfe_forward_mean'], r['nfe_forward_std'], 1)} | "
            f"{fmt(r['train_seconds_mean'], r['train_seconds_std'], 0)} | {r['train_steps_mean']:.0f} | {reached(r)} | {r['n']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Path]:
    args = standard_args(__doc__.split("\n\n")[0], argv)
    rows = [run_row(r) for study in STUDIES for r in load_runs(args.root, study)]
    if not rows:
        raise NoData(f"no finished runs of studies {STUDIES} under {args.root}: "
                     f"run python experiments/reproduce.py --stages train --out {args.root}")
    table = aggregate(rows, ["study", "arm"], VALUES)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "t1_summary.csv", table)
    text = markdown(table)
    (out / "t1_summary.md").write_text(text + "\n")
    print(text)
    return [out / "t1_summary.csv", out / "t1_summary.md"]


if __name__ == "__main__":
    main()
