"""Event-stopped ODE solves against closed forms, and batch invariance of the per-example mode."""
from __future__ import annotations

import math

import pytest
import torch

from odelm.depth import Loop, ODESolve
from odelm.exits import AdaptiveDepth, Converged, ExitContext, KLExit, QExit, StateChange, StaticDepth
from odelm.exits.ode_exit import ode_until_exit, solve_until_exit
from odelm.model import LatentLM, ModelConfig

from conftest import LinearField

TOL = 1e-7


def ctx_for(h0: torch.Tensor, gate=None) -> ExitContext:
    return ExitContext(decode=lambda h: h, gate=gate, mask=torch.ones(h0.shape[:2], dtype=torch.bool))


def test_event_stops_at_the_analytic_time_of_the_state_change_criterion() -> None:
    """F = a·h, h(τ) = h0·e^{aτ}: the absolute change ‖F‖ = |a|·h0·e^{aτ} falls to ε at τ* = ln(|a| h0 / ε) / |a|."""
    a, h0v, eps = -0.5, 2.0, 0.1
    field = LinearField(a)
    h0 = torch.full((1, 1, 1), h0v, dtype=torch.float64)
    solver = ODESolve("dopri5", rtol=TOL, atol=TOL, t_end=20.0, max_num_steps=10_000)
    h, tau, nfe, steps, fired = solve_until_exit(
        field, h0, h0, StateChange(threshold=eps, relative=False), ctx_for(h0), solver, t_max=20.0
    )
    expected = math.log(abs(a) * h0v / eps) / abs(a)
    assert fired and tau == pytest.approx(expected, abs=1e-5)
    assert float(h) == pytest.approx(h0v * math.exp(a * expected), rel=1e-5)
    assert nfe == field.nfe.forward and steps > 0
    # the relative change ‖F‖/‖h‖ = |a| never falls below ε: the solve runs to the horizon
    h, tau, _, _, fired = solve_until_exit(field, h0, h0, StateChange(threshold=eps), ctx_for(h0), solver, t_max=3.0)
    assert not fired and tau == pytest.approx(3.0, abs=1e-6)
    assert float(h) == pytest.approx(h0v * math.exp(3 * a), rel=1e-5)


def test_event_stops_at_the_analytic_time_of_q_exit() -> None:
    """A constant gate λ = c: log S(τ) = τ·log(1 − c), so CDF reaches q at τ* = log(1 − q) / log(1 − c)."""
    c, q = 0.3, 0.9
    field = LinearField(-0.2)
    h0 = torch.ones(2, 3, 4, dtype=torch.float64)
    gate = lambda h: torch.full(h.shape[:-1], c, dtype=h.dtype)  # noqa: E731
    solver = ODESolve("dopri5", rtol=TOL, atol=TOL, t_end=20.0, max_num_steps=10_000)
    h, tau, _, _, fired = solve_until_exit(field, h0, h0, QExit(q=q), ctx_for(h0, gate), solver, t_max=20.0)
    expected = math.log(1 - q) / math.log(1 - c)
    assert fired and tau == pytest.approx(expected, abs=1e-5)
    torch.testing.assert_close(h, h0 * math.exp(-0.2 * expected))


def test_batch_mode_waits_for_every_example_and_per_example_mode_does_not() -> None:
    a, eps = -1.0, 0.1
    field = LinearField(a)
    h0 = torch.tensor([2.0, 4.0], dtype=torch.float64).view(2, 1, 1)
    solver = ODESolve("dopri5", rtol=TOL, atol=TOL, t_end=20.0, max_num_steps=10_000)
    crit = StateChange(threshold=eps, relative=False)
    expected = [math.log(2.0 / eps), math.log(4.0 / eps)]
    _, depth, nfe, _, exited = ode_until_exit(field, h0, h0, crit, ctx_for(h0), solver, 20.0, "per_example")
    assert depth.tolist() == pytest.approx(expected, abs=1e-5) and exited.all() and nfe[0] < nfe[1]
    _, depth, nfe, _, _ = ode_until_exit(field, h0, h0, crit, ctx_for(h0), solver, 20.0, "batch")
    assert depth.tolist() == pytest.approx([expected[1]] * 2, abs=1e-5) and nfe[0] == nfe[1]


def tiny_model(integrator) -> LatentLM:
    """In float64: the exit thresholds below sit between per-step values that differ by ~1e-7, which
    float32 rounding (it differs with the batch shape) can reorder; float64 keeps them apart."""
    torch.manual_seed(0)
    model = LatentLM(ModelConfig(vocab_size=11, d_model=32, n_heads=2), integrator).double().eval()
    with torch.no_grad():  # a contracting field, so hidden states settle and exits happen at different depths
        for p in model.field.parameters():
            p.mul_(0.5)
    return model


def prompts(lengths: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded token rows of the given lengths; read out at each row's last two tokens."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    for i, n in enumerate(lengths):
        tokens[i, :n] = torch.randint(4, 11, (n,), generator=g)
        mask[i, n - 2 : n] = True
    return tokens, mask


@pytest.mark.parametrize(
    "integrator,criterion",
    [
        (Loop(6), StateChange(threshold=0.045)),
        (Loop(6), KLExit(threshold=6.1e-6)),
        (ODESolve("dopri5", rtol=1e-3, atol=1e-3, t_end=6.0), StateChange(threshold=0.045)),
        (ODESolve("dopri5", rtol=1e-3, atol=1e-3, t_end=6.0), StaticDepth()),
        (Loop(6), Converged(threshold=0.05)),
        (ODESolve("dopri5", rtol=1e-3, atol=1e-3, t_end=6.0), Converged(threshold=0.05)),
    ],
)
def test_per_example_answer_and_nfe_do_not_depend_on_batch_mates(integrator, criterion) -> None:
    model = tiny_model(integrator)
    strategy = AdaptiveDepth(criterion, mode="per_example")
    tokens, mask = prompts([5, 9, 7, 12], seed=1)
    mates, mates_mask = prompts([3, 14, 6], seed=2)
    together = strategy(model, tokens, mask)
    # each example alone (cropped to its own length), and inside a different, longer-padded batch
    for i in range(len(tokens)):
        n = int(mask[i].nonzero().max()) + 1
        alone = strategy(model, tokens[i : i + 1, :n], mask[i : i + 1, :n])
        width = max(tokens.shape[1], mates.shape[1])
        mixed_tokens = torch.zeros(4, width, dtype=torch.long)
        mixed_mask = torch.zeros(4, width, dtype=torch.bool)
        mixed_tokens[:3, : mates.shape[1]], mixed_mask[:3, : mates.shape[1]] = mates, mates_mask
        mixed_tokens[3, :n], mixed_mask[3, :n] = tokens[i, :n], mask[i, :n]
        mixed = strategy(model, mixed_tokens, mixed_mask)
        for other, row in ((alone, 0), (mixed, 3)):
            assert float(other.depth[row]) == pytest.approx(float(together.depth[i]), abs=1e-6)
            assert float(other.nfe[row]) == float(together.nfe[i])
            read = mask[i, :n]
            assert torch.equal(other.logits[row, :n][read].argmax(-1), together.logits[i, :n][read].argmax(-1))
            torch.testing.assert_close(other.logits[row, :n][read], together.logits[i, :n][read], rtol=1e-4, atol=1e-5, msg=f"{i} {row} {other.depth} {together.depth}")
    if not isinstance(criterion, StaticDepth):  # the criterion really fired, at more than one depth
        assert together.exited.any() and len(set(together.depth.tolist())) > 1


def test_adaptive_loop_at_static_depth_equals_the_model() -> None:
    model = tiny_model(Loop(4))
    tokens, mask = prompts([5, 9], seed=3)
    out = AdaptiveDepth(StaticDepth())(model, tokens, mask)
    torch.testing.assert_close(out.logits, model(tokens).logits)
    assert out.depth.tolist() == [4.0, 4.0] and out.nfe.tolist() == [4.0, 4.0]
