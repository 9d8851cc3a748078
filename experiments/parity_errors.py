"""Where a prefix-parity model goes wrong: error rate per bit position, where each string's first
error falls, and the error rate split by the first bit. A model that carries the parity one position
per step fails late in long strings; one that learned a rule with a gap (e.g. two positions back,
p[i] = p[i-2] ^ x[i-1] ^ x[i]) fails where the gap reaches past the start of the string.

    python experiments/parity_errors.py --ckpt outputs/bench_extrapolation/prefix_parity_w2/train/checkpoints/final.ckpt \\
        --bits 16 --loops 12,24 --out experiments/results/parity_errors_window2.json

Strings are drawn afresh (seeded), not from any split: this is a diagnosis, not a score (short
strings can occur in training: the record counts them, `in_training`).
`--lead k` writes k zeros before every string and scores the original positions only (leading zeros
leave every prefix parity unchanged): if the errors vanish, they came from the start of the string,
where a local window has fewer keys than anywhere else. `--loops` takes a list: one profile each.
"""
from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from odelm.build import build_data, build_integrator, build_model
from odelm.eval import load_checkpoint
from odelm.runs import write_json
from odelm.tasks import CharTokenizer


def error_profile(bits: torch.Tensor, predicted: torch.Tensor) -> dict:
    """bits, predicted: (N, n) of 0/1, predicted[i, j] the model's parity of bits[i, :j+1]."""
    reference = bits.cumsum(1) % 2  # (N, n)
    wrong = predicted != reference  # (N, n)
    first = [int(w.nonzero()[0]) if bool(w.any()) else -1 for w in wrong]
    any_wrong = wrong.any(1).float()
    return {
        "strings": int(bits.shape[0]),
        "exact": round(1.0 - any_wrong.mean().item(), 4),
        "error_by_position": [round(v, 4) for v in wrong.float().mean(0).tolist()],
        "first_error_position": {str(k): v for k, v in sorted(Counter(first).items())},  # -1: no error
        "wrong_share_by_first_bit": {str(b): round(any_wrong[bits[:, 0] == b].mean().item(), 4) for b in (0, 1)
                                     if bool((bits[:, 0] == b).any())},
    }


def load(ckpt: str) -> tuple[DictConfig, CharTokenizer, dict]:
    """A training checkpoint's config, tokenizer and model weights."""
    checkpoint = load_checkpoint(ckpt)
    state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    return (OmegaConf.create(checkpoint["odelm"]["config"]), CharTokenizer.from_dict(checkpoint["odelm"]["tokenizer"]),
            state)


def model_at_depth(loaded: tuple[DictConfig, CharTokenizer, dict], depth: float | None) -> torch.nn.Module:
    """The checkpoint's model in evaluation mode, run to `depth` loops (ODE: horizon; None: the trained one)."""
    cfg, tokenizer, state = loaded
    cfg = cfg.copy()
    if depth is not None:
        if cfg.model.integrator == "ode":
            cfg.solver.t_end = float(depth)
        else:
            cfg.model.loops = int(depth)
    model = build_model(cfg, tokenizer.vocab_size, build_integrator(cfg, training=False))
    model.load_state_dict(state)
    return model.eval()


def report(result: dict, out: str | None) -> dict:
    """Print a diagnosis record and, with `out`, write it (atomic: an interrupted run leaves the old file whole)."""
    print(json.dumps(result))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_json(out, result)
    return result


def predict(loaded: tuple[DictConfig, CharTokenizer, dict], bits: torch.Tensor, loops: int | None) -> torch.Tensor:
    """The checkpoint's per-position parity predictions (N, n) for `bits` (N, n), at `loops` loops."""
    tokenizer = loaded[1]
    model = model_at_depth(loaded, loops)
    tokens = torch.tensor([tokenizer.encode("".join(map(str, row))) for row in bits.tolist()])
    with torch.no_grad():
        best = model(tokens).logits.argmax(-1)  # (N, n) token ids
    return (best == tokenizer.encode("1")[0]).long()


def in_training(cfg: DictConfig, bits: torch.Tensor) -> int:
    """How many of the strings `bits` (N, n) occur among the run's training prompts (its own seed)."""
    train = {ex.prompt for ex in build_data(cfg, cfg.seed).train}
    return sum("".join(map(str, row)) in train for row in bits.tolist())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--bits", type=int, default=16)
    parser.add_argument("--loops", default=None, help="loops (ODE: horizon), comma-separated; default: the trained ones")
    parser.add_argument("--lead", type=int, default=0, help="zeros written before every string (not scored)")
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    bits = torch.tensor([[rng.randrange(2) for _ in range(args.bits)] for _ in range(args.n)])
    padded = torch.cat([torch.zeros(args.n, args.lead, dtype=torch.long), bits], dim=1)  # (N, lead + bits)
    loops = [int(v) for v in args.loops.split(",")] if args.loops else [None]
    loaded = load(args.ckpt)
    result = {"ckpt": args.ckpt, "bits": args.bits, "lead": args.lead, "seed": args.seed,
              "in_training": in_training(loaded[0], bits),  # strings that are also training prompts
              "profiles": [{"loops": n, **error_profile(bits, predict(loaded, padded, n)[:, args.lead:])}
                           for n in loops]}
    return report(result, args.out)


if __name__ == "__main__":
    main()
