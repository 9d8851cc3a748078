"""Where a maze model goes wrong on larger mazes: valid shortest paths by S–G distance, beside the
longest S–G distance of the trained sizes. A model whose rule is size-free fails no more often on long
paths than on short ones; one that learned to carry information only as far as training needed fails
once the path (or the distance it must carry) outgrows the trained mazes, as prefix parity does.
Also by dead-end depth (how far the farthest open cell is from the path: the rounds that dead-end
filling, a size-free rule, needs on a perfect maze) and by kind of error (cells marked off the path,
path cells left unmarked); the per-maze distance, dead-end depth and validity are written too, for
joint breakdowns.

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
from odelm.tasks.maze import GOAL, PATH, ROW_END, START, WALL, _distances, _neighbours

from parity_errors import load, model_at_depth


def shortest_paths(task: Maze, prompt: str) -> int:
    """How many shortest S–G paths a maze has (paths counted layer by layer of the distance to G)."""
    n, cells = task.parse(prompt)
    to_goal = _distances({i for i, ch in enumerate(cells) if ch != WALL}, cells.index(GOAL), n)
    count = {cells.index(GOAL): 1}
    for i in sorted(to_goal, key=to_goal.get)[1:]:
        count[i] = sum(count[j] for j in _neighbours(i, n) if to_goal.get(j) == to_goal[i] - 1)
    return count[cells.index(START)]


def by_distance(distances: list[int], valid: list[float], edges: list[int], key: str = "distance") -> list[dict]:
    """Valid rate per bucket [edges[i], edges[i+1]) of `distances` (the last bucket open above)."""
    rows = []
    for i, lo in enumerate(edges):
        hi = edges[i + 1] if i + 1 < len(edges) else None
        picked = [v for d, v in zip(distances, valid) if d >= lo and (hi is None or d < hi)]
        if picked:
            rows.append({f"{key}_from": lo, f"{key}_below": hi, "mazes": len(picked),
                         "valid_shortest_path": round(sum(picked) / len(picked), 4)})
    return rows


def dead_end_depth(task: Maze, prompt: str, path: set[int]) -> int:
    """Rounds of dead-end filling a maze needs: the farthest open cell's distance from the marked S–G path
    (in a perfect maze every open cell off the path hangs in a dead-end subtree, filled leaf by leaf, one
    layer a round). A local rule that fills dead ends needs at least this many steps of propagation."""
    n, cells = task.parse(prompt)
    open_cells = {i for i, ch in enumerate(cells) if ch != WALL}
    return max(_distances(open_cells, path, n).values())


def error_kinds(task: Maze, prompt: str, reference: str, predicted: str) -> tuple[int, int]:
    """(open cells marked that the reference leaves open, reference path cells left unmarked)."""
    n, cells = task.parse(prompt)
    width = n + 1
    ref = [reference[r * width + c] for r in range(n) for c in range(n)]
    out = [predicted[r * width + c] if r * width + c < len(predicted) else "?" for r in range(n) for c in range(n)]
    extra = sum(1 for g, r, o in zip(cells, ref, out) if g != WALL and r != PATH and o == PATH)
    missed = sum(1 for r, o in zip(ref, out) if r == PATH and o != PATH)
    return extra, missed


def marked_cells(answer: str) -> set[int]:
    """Grid indices (row-major, row ends dropped) of the cells an answer marks."""
    return {i for i, ch in enumerate(answer.replace(ROW_END, "")) if ch == PATH}


def maze_tasks(cfg) -> tuple[Maze, Maze]:
    """The run's test-distribution maze (task.params: what is diagnosed) and its training-distribution
    maze (task.params updated by task.train_params: what the trained-range statistics describe)."""
    params = dict(cfg.task.get("params") or {})
    return Maze(**params), Maze(**{**params, **dict(cfg.task.get("train_params") or {})})


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--rooms", type=int, default=7, help="rooms per side of the mazes diagnosed (7: 15x15)")
    parser.add_argument("--horizons", default=None, help="ODE horizons (loop: loop counts), comma-separated; default: trained")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--edges", default="0,10,20,30,40", help="S–G distance bucket edges")
    parser.add_argument("--fill-edges", default="0,5,10,15,20,30", help="dead-end depth bucket edges")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    cfg, tokenizer, state = load(args.ckpt)
    task, train_task = maze_tasks(cfg)
    train_params = dict(cfg.task.get("train_params") or {})
    rng = random.Random(args.seed)
    mazes = [task.sample(rng, args.rooms) for _ in range(args.n)]
    distances = [task.shortest_distance(ex.prompt) for ex in mazes]
    fills = [dead_end_depth(task, ex.prompt, marked_cells(ex.answer)) for ex in mazes]
    trained_mazes = [train_task.sample(rng, k) for k in cfg.task.train_difficulties for _ in range(500)]
    trained = [task.shortest_distance(ex.prompt) for ex in trained_mazes]
    trained_fills = [dead_end_depth(task, ex.prompt, marked_cells(ex.answer)) for ex in trained_mazes]
    tokens = torch.tensor([tokenizer.encode(ex.prompt) for ex in mazes])  # (N, L): one size, no padding
    edges = [int(v) for v in args.edges.split(",")]
    fill_edges = [int(v) for v in args.fill_edges.split(",")]
    profiles = []
    for value in ([float(v) for v in args.horizons.split(",")] if args.horizons else [None]):
        model = model_at_depth((cfg, tokenizer, state), value)
        with torch.no_grad():
            ids = model(tokens).logits.argmax(-1)  # (N, L)
        texts = [tokenizer.decode(row) for row in ids.tolist()]
        valid = [task.score(ex, text)["valid_shortest_path"] for ex, text in zip(mazes, texts)]
        kinds = [error_kinds(task, ex.prompt, ex.answer, text) for ex, text in zip(mazes, texts)]
        profiles.append({"depth": value, "valid_shortest_path": round(sum(valid) / len(valid), 4),
                         # wrong mazes: how many mark cells off the reference path, how many leave
                         # reference path cells unmarked
                         "wrong_with_extra_cells": sum(1 for v, (e, _) in zip(valid, kinds) if not v and e),
                         "wrong_with_missed_cells": sum(1 for v, (_, m) in zip(valid, kinds) if not v and m),
                         "by_distance": by_distance(distances, valid, edges),
                         "by_dead_end_depth": by_distance(fills, valid, fill_edges, key="dead_end_depth"),
                         "valid_per_maze": [int(v) for v in valid]})
    result = {"ckpt": args.ckpt, "rooms": args.rooms, "n": args.n, "seed": args.seed,
              "maze_params": dict(cfg.task.get("params") or {}), "train_params": train_params,
              "trained_rooms": list(cfg.task.train_difficulties),
              "trained_max_distance": max(trained), "trained_mean_distance": round(sum(trained) / len(trained), 2),
              "mean_distance": round(sum(distances) / len(distances), 2),
              "trained_max_dead_end_depth": max(trained_fills),
              "trained_mean_dead_end_depth": round(sum(trained_fills) / len(trained_fills), 2),
              "mean_dead_end_depth": round(sum(fills) / len(fills), 2),
              "distance_per_maze": distances, "dead_end_depth_per_maze": fills,  # for joint breakdowns
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
