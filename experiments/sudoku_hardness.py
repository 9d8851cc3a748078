"""How hard are generated 9×9 Sudoku puzzles for `guesses_to_solve` (a solver that fills naked and hidden
singles before every guess)? The numbers behind `task.params.min_guesses` and `task=sudoku9_hard`.

    python experiments/sudoku_hardness.py --out experiments/results/sudoku_hardness.json

1. Random unique puzzles (`Sudoku(3, 3)`, no filter), `--n` per blank count: the share that needs at
   least one and at least two guesses.
2. The committed hard data (`data/sudoku9_hard/test.jsonl`): min / median / 90th percentile / max guesses.
3. For scale: A. Inkala's "hardest" puzzle.
4. Orientation: the rating of a symmetric copy (`Sudoku.augment`) of each of the first `--n-aug` test
   puzzles, four copies each: the share that rates below 2 (the count breaks ties by cell order).
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from odelm.tasks import Sudoku, load_jsonl
from odelm.tasks.sudoku import guesses_to_solve

# A. Inkala's published "hardest" puzzle (2012)
INKALA = "8..........36......7..9.2...5...7.......457.....1...3...1....68..85...1..9....4.."


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="experiments/results/sudoku_hardness.json")
    parser.add_argument("--blanks", default="46,52,56")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--n-aug", type=int, default=25)
    parser.add_argument("--data", default="data/sudoku9_hard/test.jsonl")
    args = parser.parse_args(argv)
    task = Sudoku(3, 3)
    rate = lambda prompt: guesses_to_solve(task.parse(prompt), 3, 3)  # noqa: E731
    random_puzzles = {}
    for blanks in (int(b) for b in args.blanks.split(",")):
        rng = random.Random(blanks)
        ratings = [rate(task.sample(rng, blanks).prompt) for _ in range(args.n)]
        random_puzzles[blanks] = {"n": args.n, "share_ge1": sum(r >= 1 for r in ratings) / args.n,
                                  "share_ge2": sum(r >= 2 for r in ratings) / args.n}
    test = load_jsonl(args.data)
    ratings = sorted(rate(ex.prompt) for ex in test)
    rng = random.Random(0)
    copies = [rate(task.augment(ex, rng).prompt) for ex in test[:args.n_aug] for _ in range(4)]
    result = {
        "inkala_guesses": rate(INKALA),
        "command": " ".join(["python experiments/sudoku_hardness.py", *(argv or [])]),
        "random_unique_puzzles": random_puzzles,
        "hard_test_data": {"file": args.data, "n": len(ratings), "min": ratings[0], "median": ratings[len(ratings) // 2],
                           "p90": ratings[int(0.9 * len(ratings))], "max": ratings[-1]},
        "augmented_copies": {"n": len(copies), "share_below_2": sum(c < 2 for c in copies) / len(copies),
                             "share_zero": sum(c == 0 for c in copies) / len(copies)},
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
