"""The accuracy a model gets on pointer_chase without following any pointer: guess uniformly among the
distinct letters of the table (the answer is always one of them). Above chance (1 / n_letters) and
rising with difficulty, because a longer chain leaves fewer slots for distractor letters; the floor to
read the study's accuracies against.

    python experiments/pointer_chase_guess.py --out experiments/results/pointer_chase_guess.json

Exact expectation per example (1 / distinct letters), averaged over 5000 examples per difficulty.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from odelm.tasks import PointerChase, generate


def guess_accuracy(prompt: str) -> float:
    table = prompt.split(":")[0]
    return 1.0 / len({c for c in table if c.isalpha()})


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="experiments/results/pointer_chase_guess.json")
    parser.add_argument("--difficulties", default="1,2,3,4,5,6")
    parser.add_argument("--n", type=int, default=5000, help="examples per difficulty")
    args = parser.parse_args(argv)
    task = PointerChase()
    levels = [int(d) for d in args.difficulties.split(",")]
    result = {"task": task.describe(), "chance": 1 / task.n_letters, "guess_by_difficulty": {}}
    for level in levels:
        examples = generate(task, [level], args.n, seed=0)
        result["guess_by_difficulty"][str(level)] = round(statistics.fmean(guess_accuracy(e.prompt) for e in examples), 4)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
