"""GPU (or CPU, for a dry run): wall time of one training step of each flow recipe at d_model 512,
beside the looped model, with the recipe's own objective (its per-batch depth draws included).

    python experiments/gpu_flow.py --out experiments/results/gpu_session/gpu_flow.json
    python experiments/gpu_flow.py --device cpu --d-model 64 --steps 3 --warmup 1 --out /tmp/flow.json  # dry run

Each arm is built exactly as `python -m odelm.train <overrides>` builds it (the config composed from
conf/, `build_model`, `build_objective`, `prepare_objective`, `LitLM._training_step`), on batches of the
default task; one step = objective forward, backward, AdamW step; median (and mean: random draws vary
the cost) of `--steps` timed steps after `--warmup`, with torch.cuda.synchronize around each. The field
evaluations of each step (solve and objective terms) are counted too. The convergence-stopped solve's
NFE needs a trained field: experiments/gpu_session.sh trains both models and evaluates that.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from odelm.build import (build_data, build_integrator, build_model, build_objective, prepare_objective,
                         resolve_positions)
from odelm.data import EncodedExamples, collate
from odelm.lit import LitLM
from odelm.precision import configure_arithmetic

CONF = str(Path(__file__).resolve().parents[1] / "conf")

# name -> train.yaml overrides (the arms of the flow study, conf/arm/flow/, and the ODE default)
ARMS = {
    "looped T=4": ["model=looped"],
    "ode default (euler grid, step 0.5, t_end 4)": ["model=ode"],
    "ode random discretisation (euler/midpoint/rk4, 2-8 steps)": ["arm=flow/random_solver"],
    "ode random discretisation + progressive + path independence": [
        "model=ode", "solver=euler", "solver.step_size=1.0",
        "objective=[random_solver,progressive,path_independence]"],
    "ode flow (random discretisation + horizons + progressive + fixed point)": ["arm=flow/flow"],
    "ode dopri5 1e-3": ["model=ode", "solver=dopri5"],
}


def time_arm(overrides: list[str], d_model: int, batch_size: int, steps: int, warmup: int,
             device: torch.device) -> dict:
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            *overrides, f"model.d_model={d_model}", f"model.n_heads={max(1, d_model // 64)}",
            "task.n_train=512", "task.n_test_per_difficulty=2", "data.n_val_per_difficulty=2"])
    data = build_data(cfg, cfg.seed)
    resolve_positions(cfg, data, data.tokenizer)
    torch.manual_seed(0)
    model = build_model(cfg, data.tokenizer.vocab_size, build_integrator(cfg))
    objective = build_objective(cfg)
    prepare_objective(cfg, objective, model, None)
    model.to(device)
    lit = LitLM(model, objective, lr=cfg.optim.lr, weight_decay=0.0, betas=(0.9, 0.98), warmup_steps=1,
                max_steps=steps + warmup)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    encoded = EncodedExamples(data.train, data.tokenizer, "train")
    batches = [collate([encoded[(k * batch_size + i) % len(encoded)] for i in range(batch_size)]).to(device)
               for k in range(4)]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times, nfe = [], []
    for k in range(warmup + steps):
        sync()
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        model.field.nfe.reset() if hasattr(model, "field") else None
        loss = lit._training_step(batches[k % len(batches)])
        forward = model.field.nfe.forward if hasattr(model, "field") else None
        loss.backward()
        opt.step()
        sync()
        if k >= warmup:
            times.append(time.perf_counter() - start)
            nfe.append(forward)
    return {
        "overrides": overrides,
        "params": sum(p.numel() for p in model.parameters()),
        "step_ms_median": round(1000 * statistics.median(times), 2),
        "step_ms_mean": round(1000 * statistics.mean(times), 2),
        "nfe_forward_median": statistics.median(nfe) if nfe[0] is not None else None,
        "nfe_forward_mean": round(statistics.mean(nfe), 2) if nfe[0] is not None else None,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="experiments/results/gpu_session/gpu_flow.json")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    arithmetic = configure_arithmetic()  # the arithmetic of every entry point (odelm/precision.py)
    result = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "arithmetic": arithmetic, "d_model": args.d_model,
              "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup, "arms": {}}
    for name, overrides in ARMS.items():
        row = time_arm(overrides, args.d_model, args.batch_size, args.steps, args.warmup, device)
        result["arms"][name] = row
        print(f"{name}: {row['step_ms_median']} ms/step (mean {row['step_ms_mean']}), "
              f"nfe {row['nfe_forward_median']}", flush=True)
    looped = result["arms"]["looped T=4"]["step_ms_median"]
    for row in result["arms"].values():
        row["step_vs_looped"] = round(row["step_ms_median"] / looped, 2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
