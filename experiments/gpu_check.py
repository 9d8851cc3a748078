"""GPU check (run on a CUDA machine; never part of CI): does the paper-scale path work on a GPU, and
what does a training step cost there?

    python experiments/gpu_check.py --out experiments/results/gpu_check.json

1. Gradient agreement on CUDA, float32: adjoint (seminorm) vs direct back-propagation through
   dopri5 at rtol = atol = 1e-6, every parameter of a small LatentLM (torchdiffeq's adjoint has
   user reports of wrong gradients off the tested path).
2. Training-step time at paper scale (d_model 256, batch 64, default-task batches): looped T=4,
   ODE Euler grid (step 0.5), ODE dopri5 1e-3 (direct, and adjoint), transformer 4 layers;
   median of 20 timed steps after 5 warm-up steps, with torch.cuda.synchronize.
3. bf16 autocast: one looped and one dopri5 training step under torch.autocast(bfloat16): the
   loss is finite and the gradients agree with float32 to the printed relative error (not a
   supported path: reported, not asserted).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from odelm.data import EncodedExamples, collate
from odelm.depth import Loop, ODESolve
from odelm.model import LatentLM, ModelConfig, TransformerLM
from odelm.objectives import answer_cross_entropy
from odelm.tasks import CharTokenizer, ModularChain, generate
from odelm.precision import configure_arithmetic


def batch_of(n: int, device: torch.device):
    task = ModularChain(modulus=7)
    tokenizer = CharTokenizer(task.alphabet())
    encoded = EncodedExamples(generate(task, [1, 2, 3], n, seed=0), tokenizer, "train")
    batch = collate([encoded[i] for i in range(n)])
    return batch.to(device), tokenizer.vocab_size


def grads(model: torch.nn.Module, batch, autocast: bool = False) -> tuple[float, list[torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        loss = answer_cross_entropy(model(batch.tokens).logits.float(), batch.targets)
    loss.backward()
    return loss.item(), [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]


def rel_err(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    num = sum(float((x - y).pow(2).sum()) for x, y in zip(a, b))
    den = sum(float(y.pow(2).sum()) for y in b)
    return (num / max(den, 1e-30)) ** 0.5


def step_ms(model: torch.nn.Module, batch, steps: int = 20, warmup: int = 5) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    for i in range(warmup + steps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        answer_cross_entropy(model(batch.tokens).logits, batch.targets).backward()
        opt.step()
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="experiments/results/gpu_check.json")
    args = parser.parse_args(argv)
    device = torch.device("cuda")
    arithmetic = configure_arithmetic()  # the one arithmetic of every entry point (odelm/precision.py)
    result: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "arithmetic": arithmetic}

    batch, vocab = batch_of(32, device)
    torch.manual_seed(0)
    direct = LatentLM(ModelConfig(vocab_size=vocab, d_model=64, n_heads=2), ODESolve("dopri5", rtol=1e-6, atol=1e-6)).to(device)
    adjoint = LatentLM(ModelConfig(vocab_size=vocab, d_model=64, n_heads=2),
                       ODESolve("dopri5", rtol=1e-6, atol=1e-6, adjoint=True, adjoint_norm="seminorm")).to(device)
    adjoint.load_state_dict(direct.state_dict())
    _, g_direct = grads(direct, batch)
    _, g_adjoint = grads(adjoint, batch)
    result["adjoint_vs_direct_rel_err"] = rel_err(g_adjoint, g_direct)
    print("adjoint vs direct gradient relative error:", result["adjoint_vs_direct_rel_err"], flush=True)

    batch, vocab = batch_of(64, device)
    cfg = ModelConfig(vocab_size=vocab, d_model=256, n_heads=4)
    arms = {
        "looped T=4": lambda: LatentLM(cfg, Loop(4)),
        "ode euler step 0.5": lambda: LatentLM(cfg, ODESolve("euler", step_size=0.5)),
        "ode dopri5 1e-3": lambda: LatentLM(cfg, ODESolve("dopri5", rtol=1e-3, atol=1e-3)),
        "ode dopri5 1e-3 adjoint": lambda: LatentLM(cfg, ODESolve("dopri5", rtol=1e-3, atol=1e-3, adjoint=True)),
        "transformer 4 layers": lambda: TransformerLM(ModelConfig(vocab_size=vocab, d_model=256, n_heads=4, n_layers=4)),
    }
    result["train_step_ms_d256_b64"] = {}
    for name, build in arms.items():
        torch.manual_seed(0)
        ms = step_ms(build().to(device), batch)
        result["train_step_ms_d256_b64"][name] = round(ms, 2)
        print(f"{name}: {ms:.2f} ms/step", flush=True)

    result["bf16_autocast"] = {}
    for name, integrator in (("looped", Loop(4)), ("ode dopri5 1e-3", ODESolve("dopri5", rtol=1e-3, atol=1e-3))):
        torch.manual_seed(0)
        model = LatentLM(ModelConfig(vocab_size=vocab, d_model=128, n_heads=4), integrator).to(device)
        try:
            loss32, g32 = grads(model, batch)
            loss16, g16 = grads(model, batch, autocast=True)
            result["bf16_autocast"][name] = {"loss_fp32": loss32, "loss_bf16": loss16, "grad_rel_err": rel_err(g16, g32)}
        except Exception as err:  # reported, not supported
            result["bf16_autocast"][name] = {"error": f"{type(err).__name__}: {err}"}
        print(name, "bf16:", result["bf16_autocast"][name], flush=True)

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
