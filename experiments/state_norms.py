"""How large the latent state grows with depth: the rms of h(τ) over channels, per position, at
several depths (loop counts, or ODE horizons), for a trained checkpoint on fresh inputs of one
difficulty. A pre-norm residual state that grows at every step reaches norms at 2× / 4× the trained
depth that no training step saw; a field with a leak (`model.state_decay`) settles instead.

    python experiments/state_norms.py --ckpt outputs/bench_extrapolation/prefix_parity_w2z_s2/train/checkpoints/final.ckpt \\
        --difficulty 64 --depths 0,12,24,48,96 --out experiments/results/state_norms/parity_window2_zeros_seed2.json

Inputs are drawn afresh from the checkpoint's task (seeded), not from any split: a diagnosis, not a
score. The record gives, per depth, the 10 / 50 / 90% quantiles of the per-position rms and, for
sequences, the mean rms of each block of `--block` positions (all inputs of one difficulty have one
length here only when the task's inputs do; padding positions are left out).
"""
from __future__ import annotations

import argparse
import random
import sys

import torch

from odelm.runs import command_line
from odelm.tasks import CharTokenizer, build_task

from parity_errors import load, model_at_depth, report


def state_rms(ckpt: str, difficulty: int, depths: list[float], n: int, seed: int, block: int) -> dict:
    cfg, tokenizer, state = load(ckpt)
    task = build_task(cfg.task.name, **dict(cfg.task.get("params") or {}))
    rng = random.Random(seed)
    prompts = [task.sample(rng, difficulty).prompt for _ in range(n)]
    width = max(len(p) for p in prompts)
    tokens = torch.tensor([tokenizer.encode(p) + [CharTokenizer.PAD] * (width - len(p)) for p in prompts])  # (N, L)
    real = tokens != CharTokenizer.PAD  # (N, L)
    model = model_at_depth((cfg, tokenizer, state), max(depths))
    with torch.no_grad():
        trajectory = model(tokens, trajectory_at=depths).depth.trajectory  # (K, N, L, C)
    rows = []
    for depth, h in zip(depths, trajectory):
        rms = h.pow(2).mean(-1).sqrt()  # (N, L)
        quantiles = torch.quantile(rms[real], torch.tensor([0.1, 0.5, 0.9])).tolist()
        by_block = [round(rms[:, i:i + block][real[:, i:i + block]].mean().item(), 3) for i in range(0, width, block)]
        rows.append({"depth": depth, "rms_q10_q50_q90": [round(v, 3) for v in quantiles], "rms_by_block": by_block})
    return {"ckpt": ckpt, "integrator": cfg.model.integrator, "state_decay": float(cfg.model.get("state_decay", 0.0)),
            "trained_depth": float(cfg.solver.t_end) if cfg.model.integrator == "ode" else int(cfg.model.loops),
            "difficulty": difficulty, "inputs": n, "length": width, "block": block, "depths": rows}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--difficulty", type=int, required=True, help="difficulty of the fresh inputs (parity: bits)")
    parser.add_argument("--depths", required=True, help="loop counts (ODE: horizons), comma-separated")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--block", type=int, default=8, help="positions per block of the rms profile")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    depths = sorted({float(v) for v in args.depths.split(",")})
    result = {"command": command_line("experiments/state_norms.py", argv or sys.argv[1:]),
              **state_rms(args.ckpt, args.difficulty, depths, args.n, args.seed, args.block)}
    return report(result, args.out)


if __name__ == "__main__":
    main()
