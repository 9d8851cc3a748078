"""Where a maze model goes wrong on larger mazes: valid shortest paths by S–G distance, beside the
longest S–G distance of the trained sizes. A model whose rule is size-free fails no more often on long
paths than on short ones; one that learned to carry information only as far as training needed fails
once the path (or the distance it must carry) outgrows the trained mazes, as prefix parity does.

    python experiments/maze_errors.py --ckpt outputs/bench_extrapolation/maze_ode_w1z_perfect/train/checkpoints/final.ckpt \\
        --rooms 7 --horizons 12,48 --out experiments/results/maze_errors/perfect_rooms7.json

Mazes are drawn afresh (seeded) with the run's own maze settings (extra_openings, tie_break), not from
any split: this is a diagnosis, not a score.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

from odelm.runs import write_json
from odelm.tasks import Maze
from odelm.tasks.maze import GOAL, START, WALL, _distances, _neighbours

from parity_errors import load, model_at_depth


def shortest_paths(task: Maze, prompt: str) -> int:
    """How many shortest S–G paths a maze has (paths counted layer by layer of the distance to G)."""
    n, cells = task.parse(prompt)
    to_goal = _distances({i for i, ch in enumerate(cells) if ch != WALL}, cells.index(GOAL), n)
    count = {cells.index(GOAL): 1}
    for i in sorted(to_goal, key=to_goal.get)[1:]:
        count[i] = sum(count[j] for j in _neighbours(i, n) if to_goal.get(j) == to_goal[i] - 1)
    return count[cells.index(START)]


def by_distance(distances: list[int], valid: list[float], edges: list[int]) -> list[dict]:
    """Valid rate per S–G distance bucket [edges[i], edges[i+1]) (the last bucket open above)."""
    rows = []
    for i, lo in enumerate(edges):
        hi = edges[i + 1] if i + 1 < len(edges) else None
        picked = [v for d, v in zip(distances, valid) if d >= lo and (hi is None or d < hi)]
        if picked:
            rows.append({"distance_from": lo, "distance_below": hi, "mazes": len(picked),
                         "valid_shortest_path": round(sum(picked) / len(picked), 4)})
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--rooms", type=int, default=7, help="rooms per side of the mazes diagnosed (7: 15x15)")
    parser.add_argument("--horizons", default=None, help="ODE horizons (loop: loop counts), comma-separated; default: trained")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--edges", default="0,10,20,30,40", help="S–G distance bucket edges")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    cfg, tokenizer, state = load(args.ckpt)
    task = Maze(**dict(cfg.task.get("params") or {}))
    rng = random.Random(args.seed)
    mazes = [task.sample(rng, args.rooms) for _ in range(args.n)]
    distances = [task.shortest_distance(ex.prompt) for ex in mazes]
    trained_mazes = [task.sample(rng, k) for k in cfg.task.train_difficulties for _ in range(500)]
    trained = [task.shortest_distance(ex.prompt) for ex in trained_mazes]
    tokens = torch.tensor([tokenizer.encode(ex.prompt) for ex in mazes])  # (N, L): one size, no padding
    edges = [int(v) for v in args.edges.split(",")]
    profiles = []
    for value in ([float(v) for v in args.horizons.split(",")] if args.horizons else [None]):
        model = model_at_depth((cfg, tokenizer, state), value)
        with torch.no_grad():
            ids = model(tokens).logits.argmax(-1)  # (N, L)
        valid = [task.score(ex, tokenizer.decode(row))["valid_shortest_path"] for ex, row in zip(mazes, ids.tolist())]
        profiles.append({"depth": value, "valid_shortest_path": round(sum(valid) / len(valid), 4),
                         "by_distance": by_distance(distances, valid, edges)})
    result = {"ckpt": args.ckpt, "rooms": args.rooms, "n": args.n, "seed": args.seed,
              "maze_params": dict(cfg.task.get("params") or {}),
              "trained_rooms": list(cfg.task.train_difficulties),
              "trained_max_distance": max(trained), "trained_mean_distance": round(sum(trained) / len(trained), 2),
              "mean_distance": round(sum(distances) / len(distances), 2),
              # mazes with several shortest paths, where a random tie-break gives the same maze two labels
              "tied_share": round(sum(shortest_paths(task, ex.prompt) > 1 for ex in mazes) / len(mazes), 4),
              "trained_tied_share": round(sum(shortest_paths(task, ex.prompt) > 1 for ex in trained_mazes)
                                          / len(trained_mazes), 4),
              "profiles": profiles}
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
