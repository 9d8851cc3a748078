"""Integrators: the loop/Euler identity, solver order on closed forms, adjoint gradients, NFE accounting."""
from __future__ import annotations

import math

import pytest
import torch

from odelm.depth import FIXED_GRID_METHODS, Loop, ODESolve, SolverError
from odelm.model import LatentLM, ModelConfig

from conftest import LinearField


def tiny_model(integrator, injection: str = "add", depth_conditioned: bool = False, dtype=torch.float32) -> LatentLM:
    cfg = ModelConfig(vocab_size=11, d_model=32, n_heads=2, injection=injection, depth_conditioned=depth_conditioned)
    return LatentLM(cfg, integrator).to(dtype)


@pytest.mark.parametrize("injection", ["none", "add", "concat"])
@pytest.mark.parametrize("depth_conditioned", [False, True])
def test_loop_equals_euler_step_one(injection: str, depth_conditioned: bool) -> None:
    model = tiny_model(Loop(5), injection, depth_conditioned)
    if depth_conditioned:  # make τ matter: the identity must hold with the loop index as τ
        for block in model.field.blocks:
            torch.nn.init.normal_(block.depth.mlp[-1].weight, std=0.1)
    tokens = torch.randint(0, 11, (3, 9))
    looped = model(tokens, trajectory_at=[0, 1, 2, 3, 4, 5])
    model.integrator = ODESolve("euler", step_size=1.0, t_end=5)
    euler = model(tokens, trajectory_at=[0, 1, 2, 3, 4, 5])
    assert torch.equal(looped.logits, euler.logits)
    assert torch.equal(looped.depth.trajectory, euler.depth.trajectory)
    assert looped.depth.nfe_forward == euler.depth.nfe_forward == 5


def test_depth_conditioning_starts_at_zero() -> None:
    plain = tiny_model(Loop(3))
    conditioned = tiny_model(Loop(3), depth_conditioned=True)
    conditioned.load_state_dict(plain.state_dict(), strict=False)
    tokens = torch.randint(0, 11, (2, 7))
    assert torch.equal(plain(tokens).logits, conditioned(tokens).logits)


@pytest.mark.parametrize("method,order", [("euler", 1), ("midpoint", 2), ("heun3", 3), ("rk4", 4)])
def test_fixed_grid_error_shrinks_with_the_method_order(method: str, order: int) -> None:
    field = LinearField(-1.0)
    h0 = torch.ones(1, 1, 1, dtype=torch.float64)
    exact = math.exp(-2.0)
    errors = []
    for step in (0.2, 0.1):
        out = ODESolve(method, t_end=2.0, step_size=step)(field, h0, h0)
        errors.append(abs(out.h.item() - exact))
    assert math.log2(errors[0] / errors[1]) == pytest.approx(order, abs=0.3)


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "adaptive_heun", "fehlberg2", "dopri8"])
def test_adaptive_error_shrinks_with_tolerance(method: str) -> None:
    """Error falls and NFE rises as rtol=atol tightens from 1e-3 to 1e-7 on dh/dτ = −h.

    Measured (torchdiffeq 0.2.5): dopri5's global error stays within 0.02–0.2× the tolerance; the
    low-order pairs are far looser (fehlberg2: 0.115 at 1e-3; bosh3 gains 38x over 1e-3 → 1e-7), so only dopri5,
    the default, is held to tolerance proportionality.
    """
    field = LinearField(-1.0)
    h0 = torch.ones(1, 1, 1, dtype=torch.float64)
    errors, nfes = [], []
    for tol in (1e-3, 1e-5, 1e-7):
        out = ODESolve(method, rtol=tol, atol=tol, t_end=2.0, max_num_steps=100_000)(field, h0, h0)
        errors.append(abs(out.h.item() - math.exp(-2.0)))
        nfes.append(out.nfe_forward)
        if method == "dopri5":
            assert errors[-1] < tol
    assert errors[0] > errors[1] > errors[2] and errors[0] / errors[2] > 10  # bosh3: only 38x
    assert nfes[0] < nfes[2]  # (dopri8's initial step choice makes NFE non-monotone in between)


def test_dense_trajectory_matches_closed_form() -> None:
    field = LinearField(-0.5)
    h0 = torch.full((2, 3, 4), 2.0, dtype=torch.float64)
    taus = [0.5, 1.0, 3.0]
    out = ODESolve("dopri5", rtol=1e-8, atol=1e-8, t_end=4.0)(field, h0, h0, trajectory_at=taus)
    assert out.trajectory_tau == taus and out.trajectory.shape == (3, 2, 3, 4)
    for k, tau in enumerate(taus):
        torch.testing.assert_close(out.trajectory[k], h0 * math.exp(-0.5 * tau), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="outside"):
        ODESolve("dopri5", t_end=4.0)(field, h0, h0, trajectory_at=[5.0])


def test_nfe_accounting_matches_calls_made() -> None:
    """dopri5: 2 evaluations to start (f0, initial step) + 6 per attempted step (FSAL)."""
    field = LinearField(-3.0)
    h0 = torch.ones(4, 2, 2, dtype=torch.float64)
    out = ODESolve("dopri5", rtol=1e-6, atol=1e-6, t_end=3.0)(field, h0, h0)
    assert out.nfe_forward == field.nfe.forward == 2 + 6 * (out.steps_accepted + out.steps_rejected)
    fixed = ODESolve("rk4", step_size=0.25, t_end=3.0)(field, h0, h0)
    assert fixed.nfe_forward == 4 * 12 and fixed.steps_accepted == 12 and fixed.steps_rejected == 0


@pytest.mark.parametrize("adjoint", [False, True])
def test_backward_nfe_counts_vjps_through_the_field(adjoint: bool) -> None:
    model = tiny_model(ODESolve("dopri5", rtol=1e-4, atol=1e-4, t_end=2.0, adjoint=adjoint))
    calls = []
    model.field.register_forward_hook(lambda *_: calls.append(torch.is_grad_enabled()))
    model.field.nfe.reset()
    out = model(torch.randint(0, 11, (2, 6)))
    forward_calls = len(calls)
    assert out.depth.nfe_forward == forward_calls == model.field.nfe.forward
    out.logits.square().mean().backward()
    backward_calls = len(calls) - forward_calls
    if adjoint:  # the adjoint re-evaluates the field backwards, one VJP per call
        assert backward_calls > 0 and model.field.nfe.backward == backward_calls
    else:  # back-propagation through the recorded evaluations: no new calls
        assert backward_calls == 0 and 0 < model.field.nfe.backward <= forward_calls


@pytest.mark.parametrize("adjoint_norm", ["default", "seminorm"])
def test_adjoint_gradients_match_direct_backprop(adjoint_norm: str) -> None:
    tokens = torch.randint(0, 11, (2, 6))
    grads = {}
    for adjoint in (False, True):
        torch.manual_seed(1)
        solver = ODESolve("dopri5", rtol=1e-9, atol=1e-9, t_end=2.0, adjoint=adjoint, adjoint_norm=adjoint_norm)
        model = tiny_model(solver, injection="concat", dtype=torch.float64)
        model(tokens).logits.square().mean().backward()
        grads[adjoint] = {name: p.grad.clone() for name, p in model.named_parameters()}
    assert grads[True]["embed.weight"].abs().sum() > 0  # the prompt encoding e receives gradient too
    for name, direct in grads[False].items():
        torch.testing.assert_close(grads[True][name], direct, rtol=1e-5, atol=1e-8, msg=name)


def test_budget_and_stiffness_errors_name_the_tolerance() -> None:
    field = LinearField(-1.0)
    h0 = torch.ones(1, 1, 1, dtype=torch.float64)
    with pytest.raises(SolverError, match=r"max_num_steps=3.*rtol=1e-09"):
        ODESolve("dopri5", rtol=1e-9, atol=1e-9, t_end=10.0, max_num_steps=3)(field, h0, h0)

    class BlowUp(LinearField):
        def forward(self, tau, h, e):  # dh/dτ = h², h(0) = 1: h = 1/(1-τ) explodes at τ = 1
            self.nfe.forward += 1
            return h * h

    with pytest.raises(SolverError, match="rtol=0.001.*loosen"):
        ODESolve("dopri5", rtol=1e-3, atol=1e-3, t_end=2.0, max_num_steps=10_000)(BlowUp(), h0, h0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"method": "rk45"}, "unknown solver method 'rk45'"),
        ({"rtol": 0.0}, "solver.rtol must be a finite number > 0, got 0.0"),
        ({"atol": -1e-3}, "solver.atol must be a finite number > 0, got -0.001"),
        ({"t_end": 0}, "solver.t_end must be a finite number > 0, got 0"),
        ({"method": "rk4"}, "fixed-grid method 'rk4' needs solver.step_size"),
        ({"max_num_steps": 0}, "solver.max_num_steps must be an integer >= 1, got 0"),
        ({"norm": "l1"}, "unknown solver.norm 'l1'"),
    ],
)
def test_bad_solver_settings_fail_with_the_value(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ODESolve(**kwargs)


def test_bad_loops() -> None:
    for loops in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match=f"loops must be an integer >= 1, got {loops!r}"):
            Loop(loops)


def test_every_fixed_grid_method_runs_the_model() -> None:
    tokens = torch.randint(0, 11, (2, 5))
    for method in FIXED_GRID_METHODS:
        model = tiny_model(ODESolve(method, step_size=0.5, t_end=2.0))
        out = model(tokens)
        assert out.logits.shape == (2, 5, 11) and torch.isfinite(out.logits).all()


def _identity_blocks(model: LatentLM) -> None:
    """Zero every block's output projections: each block is then the identity, the blocks' update is
    0, and the field is the leak alone, F(h) = −λ·h."""
    with torch.no_grad():
        for block in model.field.blocks:
            block.attn.proj.weight.zero_()
            block.mlp.down.weight.zero_()


@pytest.mark.parametrize("injection", ["none", "add"])
def test_state_decay_is_a_leak_with_closed_form_solutions(injection: str) -> None:
    """dh/dτ = −λh: the loop gives (1 − λ)^T · h(0), an accurate ODE solve exp(−λτ) · h(0)."""
    decay = 0.3
    cfg = ModelConfig(vocab_size=11, d_model=32, n_heads=2, injection=injection, state_decay=decay)
    model = LatentLM(cfg, Loop(6)).double()
    _identity_blocks(model)
    tokens = torch.randint(0, 11, (2, 5))
    h0 = model.encode(tokens)  # (B, L, C)
    looped = model(tokens, trajectory_at=[0, 3, 6]).depth.trajectory
    for k, t in enumerate([0, 3, 6]):
        torch.testing.assert_close(looped[k], (1 - decay) ** t * h0, rtol=1e-12, atol=1e-12)
    model.integrator = ODESolve("dopri5", rtol=1e-10, atol=1e-10, t_end=6.0)
    solved = model(tokens, trajectory_at=[0, 3, 6]).depth.trajectory
    for k, t in enumerate([0, 3, 6]):
        torch.testing.assert_close(solved[k], math.exp(-decay * t) * h0, rtol=1e-7, atol=1e-9)


def test_state_decay_keeps_the_loop_equal_to_euler_and_bounds_the_state() -> None:
    """The leak is part of the field, so the loop ≡ Euler(step 1) identity holds with it; and since
    every block's update is bounded, the leaky state stops growing where the plain one grows on."""
    torch.manual_seed(0)
    plain = LatentLM(ModelConfig(vocab_size=11, d_model=32, n_heads=2), Loop(200))
    leaky = LatentLM(ModelConfig(vocab_size=11, d_model=32, n_heads=2, state_decay=0.5), Loop(200))
    leaky.load_state_dict(plain.state_dict())
    tokens = torch.randint(0, 11, (3, 9))
    looped = leaky(tokens, trajectory_at=[0, 1, 2, 3])
    leaky.integrator = ODESolve("euler", step_size=1.0, t_end=3)
    euler = leaky(tokens, trajectory_at=[0, 1, 2, 3])
    assert torch.equal(looped.depth.trajectory, euler.depth.trajectory)
    leaky.integrator = Loop(200)
    with torch.no_grad():
        rms = {name: m(tokens, trajectory_at=[100, 200]).depth.trajectory.pow(2).mean(-1).sqrt().max(-1).values.max(-1).values
               for name, m in (("plain", plain), ("leaky", leaky))}  # (2,): the largest rms at 100 and 200 loops
    assert rms["plain"][1] > 1.5 * rms["plain"][0]  # without the leak the state keeps growing
    assert rms["leaky"][1] < 1.05 * rms["leaky"][0]  # with it, it has stopped


@pytest.mark.parametrize("bad", [-0.1, True, "0.1", float("nan"), float("inf")])
def test_a_bad_state_decay_is_named(bad) -> None:
    with pytest.raises(ValueError, match="model.state_decay must be a finite number >= 0, got"):
        ModelConfig(vocab_size=10, state_decay=bad)
