"""Adaptive depth at inference on a trained checkpoint: accuracy vs mean depth / NFE per exit strategy,
for both families (the looped checkpoint is also solved as an ODE, the field being shared), the
test-time compute knob on difficulties harder than trained, and per-token exit during generation.

    OMP_NUM_THREADS=1 python experiments/bench_exits.py --ckpt RUN/checkpoints/final.ckpt \
        --out experiments/results/bench_exits.json

Target check: an adaptive strategy reaches the static-depth accuracy (within 1 point) at <= 60% of
the static strategy's mean depth (loop) / mean NFE (ODE), on the whole test split (difficulties 1-5)
and on the trained difficulties (1-3). All ODE exits run per example (batch-invariant NFE).

Selection is made on validation only: every exit setting also runs on the checkpoint's validation
split (the trained difficulties, prompts disjoint from test), the "best adaptive" setting of each
target row and the criterion used for generation are chosen by their validation numbers, and the
test numbers of that one setting are what the target is judged on.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf, open_dict

from odelm.build import build_data
from odelm.data import EncodedExamples, collate
from odelm.eval import _Evaluation, load_checkpoint
from odelm.evaluation import evaluate
from odelm.exits import EXITS, AdaptiveDepth, generate_with_exit
from odelm.precision import configure_arithmetic

IN_DIST = ("1", "2", "3")


def config(stored: dict, **updates) -> "OmegaConf":
    cfg = OmegaConf.create(stored)
    for key, value in updates.items():
        OmegaConf.update(cfg, key.replace("__", "."), value, merge=False, force_add=True)
    return cfg


def with_current_defaults(stored: dict) -> dict:
    """The stored config over today's defaults of the same model group, so keys added since the
    checkpoint was trained get their defaults."""
    from hydra import compose, initialize_config_dir

    conf = str(Path(__file__).resolve().parents[1] / "conf")
    with initialize_config_dir(config_dir=conf, version_base="1.3"):
        base = compose(config_name="train", overrides=[f"model={stored['model']['name']}"])
        ode = compose(config_name="train", overrides=["model=ode"])
    merged = OmegaConf.merge(base, stored)
    if "solver" not in merged:  # a looped record has no solver; the bench also solves its field as an ODE
        with open_dict(merged):
            merged.solver = ode.solver
    return OmegaConf.to_container(merged, resolve=True)


def summarise(family: str, strategy: str, setting: str, rec: dict) -> dict:
    acc = rec["accuracy_by_difficulty"]
    n = rec["n_by_difficulty"]
    per = rec["per_example"]
    in_dist = [i for i, d in enumerate(per["difficulty"]) if str(d) in IN_DIST]
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {
        "family": family, "strategy": strategy, "setting": setting,
        "accuracy": rec["accuracy"],
        "accuracy_1_3": sum(acc[d] * n[d] for d in IN_DIST) / sum(n[d] for d in IN_DIST),
        "accuracy_by_difficulty": acc,
        "depth": rec["depth"], "nfe": rec["nfe_forward"],
        "depth_1_3": mean([per["depth"][i] for i in in_dist]), "nfe_1_3": mean([per["nfe"][i] for i in in_dist]),
        "depth_by_difficulty": rec["depth_by_difficulty"], "nfe_by_difficulty": rec["nfe_forward_by_difficulty"],
        "seconds": rec["seconds"],
    }


def run_eval(ev: _Evaluation, cfg, strategy: AdaptiveDepth | None) -> dict:
    model, _ = ev.model(cfg)
    start = time.perf_counter()
    rec = evaluate(model, ev.loader(cfg), exit_strategy=strategy)
    rec["seconds"] = round(time.perf_counter() - start, 2)
    return rec


def val_loader(ev: _Evaluation, cfg) -> torch.utils.data.DataLoader:
    """The checkpoint's validation split (trained difficulties, no test prompt); built once: the data
    does not depend on the solver or exit settings the bench varies."""
    data = build_data(cfg, cfg.seed, tokenizer=ev.tokenizer, train=False, val=True)
    val = EncodedExamples(data.val, ev.tokenizer, "val", data.layout)
    return torch.utils.data.DataLoader(val, batch_size=cfg.data.eval_batch_size, collate_fn=val.collate)


def val_accuracy(ev: _Evaluation, cfg, strategy: AdaptiveDepth | None,
                 loader: torch.utils.data.DataLoader) -> tuple[float, float]:
    """(accuracy, mean cost) on the validation `loader`: what every choice of this bench is made on.
    Cost: depth for the loop, NFE for the ODE."""
    model, _ = ev.model(cfg)
    rec = evaluate(model, loader, exit_strategy=strategy)
    cost = rec["depth"] if cfg.model.integrator == "loop" else rec["nfe_forward"]
    return rec["accuracy"], cost


def pick_on_val(rows: list[dict], family: str) -> dict:
    """The adaptive row of `family` chosen on validation alone: within 1 point of the static row's
    validation accuracy at the lowest validation cost; if none is, the best accuracy-minus-cost."""
    static = next(r for r in rows if r["family"] == family and r["strategy"] == "static" and r["setting"] == "default")

    def key(r: dict) -> tuple:
        ratio = r["val_cost"] / static["val_cost"]
        ok = r["val_accuracy"] >= static["val_accuracy"] - 0.01
        return (ok, -ratio if ok else r["val_accuracy"] - 2 * ratio)

    return max((r for r in rows if r["family"] == family and r["strategy"] != "static"), key=key)


def target_check(rows: list[dict], family: str, cost: str) -> list[dict]:
    """The setting chosen on validation (pick_on_val), judged on test: within 1 point of the static
    row at <= 60% of its cost, per split."""
    static = next(r for r in rows if r["family"] == family and r["strategy"] == "static" and r["setting"] == "default")
    r = pick_on_val(rows, family)
    out = []
    for suffix in ("", "_1_3"):
        acc_key, cost_key = "accuracy" + suffix, cost + suffix
        ratio = r[cost_key] / static[cost_key]
        ok = r[acc_key] >= static[acc_key] - 0.01 and ratio <= 0.6
        out.append({"family": family, "split": "1-5" if not suffix else "1-3", "static_accuracy": static[acc_key],
                    "static_cost": static[cost_key], "best": f"{r['strategy']} {r['setting']}", "chosen_on": "validation",
                    "accuracy": r[acc_key], "cost_ratio": ratio, "met": ok})
    return out


def generation(ev: _Evaluation, stored: dict, criterion_cfg: dict, limit: int) -> list[dict]:
    """Exact match of greedily generated answers: full depth vs per-token exit under each KV policy."""
    cfg = config(stored)
    model, _ = ev.model(cfg)
    data = ev.loader(cfg).dataset
    tok = ev.tokenizer
    strategy = AdaptiveDepth(EXITS[criterion_cfg["name"]](**{k: v for k, v in criterion_cfg.items() if k != "name"}))
    by_len: dict[int, list[int]] = {}
    for i, ex in enumerate(data.examples[:limit] if limit else data.examples):
        by_len.setdefault(len(ex.prompt), []).append(i)
    results = {name: {"correct": 0, "depth": [], "correct_1_3": 0, "n_1_3": 0} for name in ("generate", "full", "freeze")}
    n = 0
    for length, idx in by_len.items():
        exs = [data.examples[i] for i in idx]
        prompt = torch.tensor([[tok.BOS, *tok.encode(ex.prompt), tok.SEP] for ex in exs],
                              device=next(model.parameters()).device)
        outs = {"generate": (model.generate(prompt, 4, tok.EOS), None)}
        for kv in ("full", "freeze"):
            g = generate_with_exit(model, prompt, 4, tok.EOS, strategy.criterion, kv=kv)
            outs[kv] = (g.tokens, g.depth)
        for name, (tokens, depth) in outs.items():
            for row, ex in enumerate(exs):
                gen = tokens[row, prompt.shape[1]:].tolist()
                answer = tok.decode(gen[: gen.index(tok.EOS)]) if tok.EOS in gen else None
                ok = answer == ex.answer
                results[name]["correct"] += ok
                if ex.difficulty <= 3:
                    results[name]["correct_1_3"] += ok
                    results[name]["n_1_3"] += 1
                if depth is not None:
                    stop = gen.index(tok.EOS) + 1 if tok.EOS in gen else len(gen)
                    results[name]["depth"] += depth[row, :stop].tolist()
        n += len(exs)
    loops = cfg.model.loops
    return [
        {"policy": name, "accuracy": r["correct"] / n, "accuracy_1_3": r["correct_1_3"] / r["n_1_3"],
         "mean_token_depth": sum(r["depth"]) / len(r["depth"]) if r["depth"] else float(loops), "n": n}
        for name, r in results.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--out", default="experiments/results/bench_exits.json")
    parser.add_argument("--n-test", type=int, default=200, help="test examples per difficulty (1-5)")
    parser.add_argument("--rtol", type=float, default=1e-3)
    args = parser.parse_args()
    configure_arithmetic()  # the one arithmetic of every entry point (odelm/precision.py)
    torch.set_num_threads(1)
    checkpoint = load_checkpoint(args.ckpt)
    stored = with_current_defaults(checkpoint["odelm"]["config"])
    stored["task"]["n_test_per_difficulty"] = args.n_test
    stored.setdefault("data", {})["eval_batch_size"] = 250
    ev = _Evaluation(OmegaConf.create({"ckpt": args.ckpt}), checkpoint)
    loops = stored["model"]["loops"]
    has_gate = bool(stored["model"].get("exit_gate"))
    ode = {"model__integrator": "ode", "solver__method": "dopri5", "solver__rtol": args.rtol, "solver__atol": args.rtol,
           "solver__t_end": float(loops), "solver__step_size": None}
    strategies = [
        ("static", "default", {}),
        *[("state_change", f"eps={t:g}", {"threshold": t}) for t in (1.0, 0.6, 0.4, 0.2)],
        *[("kl", f"eps={t:g}", {"threshold": t}) for t in (1.0, 0.3, 1e-1, 1e-2)],
        *([("q_exit", f"q={q:g}", {"q": q}) for q in (0.3, 0.5, 0.7)] if has_gate else []),
    ]
    rows = []
    validation = val_loader(ev, config(stored))
    euler = {**ode, "solver__method": "euler", "solver__step_size": 1.0}
    for family, updates in (("loop", {}), ("ode", ode), ("ode_euler", euler)):
        cfg = config(stored, **updates)
        if family == "loop":
            for t in (1, 2, 3):
                strategy = AdaptiveDepth(EXITS["static"](), max_depth=t)
                rec = run_eval(ev, cfg, strategy)
                rows.append(summarise(family, "static", f"depth={t}", rec))
                rows[-1]["val_accuracy"], rows[-1]["val_cost"] = val_accuracy(ev, cfg, strategy, validation)
        for name, setting, params in strategies:
            strategy = AdaptiveDepth(EXITS[name](**params), mode="per_example")
            rec = run_eval(ev, cfg, strategy)
            rows.append(summarise(family, name, setting, rec))
            rows[-1]["val_accuracy"], rows[-1]["val_cost"] = val_accuracy(ev, cfg, strategy, validation)
            print(json.dumps({k: rows[-1][k] for k in ("family", "strategy", "setting", "accuracy", "accuracy_1_3",
                                                       "depth", "nfe", "seconds")}), flush=True)
    targets = target_check(rows, "loop", "depth") + target_check(rows, "ode", "nfe") + target_check(rows, "ode_euler", "nfe")

    # the compute knob on difficulties harder than trained (4, 5): more loops, longer horizon, tighter tolerance
    knob = []
    hard = {"task__test_difficulties": [4, 5]}
    for loops_k in (2, 4, 6, 8, 12):
        rec = run_eval(ev, config(stored, **hard, model__loops=loops_k), None)
        knob.append({"family": "loop", "knob": "loops", "value": loops_k, "accuracy_4": rec["accuracy_by_difficulty"]["4"],
                     "accuracy_5": rec["accuracy_by_difficulty"]["5"], "nfe": rec["nfe_forward"]})
    for t_end in (2.0, 4.0, 6.0, 8.0):
        rec = run_eval(ev, config(stored, **hard, **{**ode, "solver__t_end": t_end}), None)
        knob.append({"family": "ode", "knob": "t_end", "value": t_end, "accuracy_4": rec["accuracy_by_difficulty"]["4"],
                     "accuracy_5": rec["accuracy_by_difficulty"]["5"], "nfe": rec["nfe_forward"]})
    for tol in (1e-1, 1e-2, 1e-3, 1e-4):
        rec = run_eval(ev, config(stored, **hard, **{**ode, "solver__rtol": tol, "solver__atol": tol}), None)
        knob.append({"family": "ode", "knob": "rtol=atol", "value": tol, "accuracy_4": rec["accuracy_by_difficulty"]["4"],
                     "accuracy_5": rec["accuracy_by_difficulty"]["5"], "nfe": rec["nfe_forward"]})
    for row in knob:
        print(json.dumps(row), flush=True)

    # per-token exit during generation, with the loop's adaptive criterion chosen on validation
    pick = pick_on_val(rows, "loop")
    crit = {"name": pick["strategy"], "threshold": float(pick["setting"].split("=")[1])}
    gen = generation(ev, stored, crit, limit=0)
    for row in gen:
        print(json.dumps({"criterion": f"{pick['strategy']} {pick['setting']}", **row}), flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"ckpt": args.ckpt, "train_steps": checkpoint.get("global_step"), "rows": rows,
                               "targets": targets, "compute_knob": knob, "generation": {"criterion": crit, "rows": gen}},
                              indent=2) + "\n")
    print("\n| family | strategy | setting | acc 1-5 | acc 1-3 | mean depth | mean NFE | NFE 1-3 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['family']} | {r['strategy']} | {r['setting']} | {r['accuracy']:.3f} | {r['accuracy_1_3']:.3f} | "
              f"{r['depth']:.2f} | {r['nfe']:.1f} | {r['nfe_1_3']:.1f} |")
    print("\n| family | split | static acc | static cost | best adaptive | its acc | cost ratio | met |")
    print("|---|---|---|---|---|---|---|---|")
    for t in targets:
        print(f"| {t['family']} | {t['split']} | {t['static_accuracy']:.3f} | {t['static_cost']:.2f} | {t['best']} | "
              f"{t['accuracy']:.3f} | {t['cost_ratio']:.2f} | {t['met']} |")


if __name__ == "__main__":
    main()
