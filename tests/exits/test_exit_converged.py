"""The convergence stop against closed forms, its NFE (the check reuses the solver's derivative),
the derivative reuse of the other criteria, and `exit=converged` end to end."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from odelm import eval as odelm_eval
from odelm import train as odelm_train
from odelm.depth import Loop, ODESolve
from odelm.exits import Converged, ExitContext, StateChange, build_exit
from odelm.exits.converged import relative_residual
from odelm.exits.ode_exit import solve_until_exit
from odelm.field import NFECounter

from conftest import SMALL, compose_config


class Relax(torch.nn.Module):
    """F = −(h − c): h(τ) = c + (h0 − c)·e^{−τ}, a fixed point at c."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c
        self.nfe = NFECounter()

    def forward(self, tau, h, e):
        self.nfe.forward += 1
        return -(h - self.c)


def ctx_for(h0: torch.Tensor) -> ExitContext:
    return ExitContext(decode=lambda h: h, gate=None, mask=torch.ones(h0.shape[:2], dtype=torch.bool))


def test_euler_stops_at_the_first_settled_grid_point_paying_one_call_per_step() -> None:
    """Euler step d: h_k = c + (h0 − c)(1 − d)^k; r_k = |h_k − c| / |h_k|. The solve stops at the
    first k with r_k < ε, after k + 1 field calls (one per state: the step reuses the check's)."""
    c, h0v, eps, d = 1.0, 3.0, 1e-2, 0.25
    h0 = torch.full((1, 1, 1), h0v, dtype=torch.float64)
    field = Relax(c)
    solver = ODESolve("euler", step_size=d, atol=1e-6, t_end=50.0)
    h, tau, nfe, steps, fired = solve_until_exit(field, h0, h0, Converged(threshold=eps), ctx_for(h0), solver, 50.0)
    k = next(k for k in range(1, 500) if k * d >= 1.0 and
             abs((h0v - c) * (1 - d) ** k) / abs(c + (h0v - c) * (1 - d) ** k) < eps)
    assert fired and tau == pytest.approx(k * d, abs=1e-5)
    assert float(h) == pytest.approx(c + (h0v - c) * (1 - d) ** k, rel=1e-5)
    assert nfe == k + 1 and steps == k
    # state_change (the same quantity, checked also on interpolated states) pays for its bisection
    field2 = Relax(c)
    *_, nfe2, _, _ = solve_until_exit(field2, h0, h0, StateChange(threshold=eps), ctx_for(h0), solver, 50.0)
    assert nfe2 > nfe


def test_dopri5_stops_once_settled_with_no_extra_field_calls() -> None:
    """Closed form: r(τ) < ε from τ* = ln((h0 − c)(1 − ε) / (ε c)). The stop is the end of the first
    step past τ*, and every field call is one of the solver's (2 to start, the derivative at h0 and
    the initial step-size probe, then 6 per step attempt: dopri5 reuses its last stage)."""
    c, h0v, eps = 1.0, 3.0, 1e-3
    h0 = torch.full((2, 3, 4), h0v, dtype=torch.float64)
    field = Relax(c)
    solver = ODESolve("dopri5", rtol=1e-6, atol=1e-6, t_end=50.0, max_num_steps=10_000)
    h, tau, nfe, steps, fired = solve_until_exit(field, h0, h0, Converged(threshold=eps), ctx_for(h0), solver, 50.0)
    star = math.log((h0v - c) * (1 - eps) / (eps * c))
    assert fired and star - 1e-6 <= tau <= star + 2.0
    assert float(relative_residual(-(h - c), h, ctx_for(h0)).max()) < eps
    assert (nfe - 2) % 6 == 0 and nfe == field.nfe.forward
    # never settles (no fixed point: F = −h/2 has ‖F‖/‖h‖ = 1/2): runs to the maximum horizon
    h, tau, _, _, fired = solve_until_exit(Relax(0.0), h0, h0, Converged(threshold=0.4), ctx_for(h0), solver, 3.0)
    assert not fired and tau == pytest.approx(3.0, abs=1e-5)


def test_the_loop_stops_when_its_update_is_small() -> None:
    c, h0v, eps = 1.0, 3.0, 0.05
    from odelm.exits.loop_exit import loop_until_exit

    h0 = torch.full((1, 2, 2), h0v, dtype=torch.float64)

    class Half(torch.nn.Module):  # h_{k+1} = h_k + (c − h_k)/2
        def forward(self, tau, h, e):
            return (c - h) / 2

    _, depth, exited = loop_until_exit(Half(), h0, h0, Converged(threshold=eps), ctx_for(h0), 40)
    h = [c + (h0v - c) * 0.5**k for k in range(40)]
    k = next(k for k in range(1, 40) if abs(h[k] - h[k - 1]) / abs(h[k]) < eps)
    assert exited.all() and depth.tolist() == [k]


def test_residual_ignores_positions_after_the_last_read_out() -> None:
    f = torch.ones(1, 4, 2)
    h = torch.ones(1, 4, 2)
    f[0, 3] = 100.0  # padding after the read-out position 2
    mask = torch.tensor([[False, False, True, False]])
    ctx = ExitContext(decode=lambda x: x, gate=None, mask=mask)
    assert float(relative_residual(f, h, ctx)) == pytest.approx(1.0)


def test_max_t_end_is_the_maximum_horizon() -> None:
    strategy = build_exit({"name": "converged", "threshold": 1e-3, "max_t_end": 16.0, "max_depth": None,
                           "min_depth": 1.0, "mode": "per_example"})
    assert isinstance(strategy.criterion, Converged) and strategy.max_depth == 16.0
    assert strategy.max_loops(Loop(4)) == 16


def test_converged_exit_end_to_end_reports_nfe_per_example(tmp_path: Path) -> None:
    ckpt = odelm_train.run(compose_config("train", [*SMALL, "model=looped"]), run_dir=tmp_path / "train")["checkpoint"]
    given = [f"ckpt={ckpt}", "model.integrator=ode", "solver=dopri5", "exit=converged", "exit.threshold=0.5",
             "exit.max_t_end=8", "task.n_test_per_difficulty=3"]
    rec = odelm_eval.run(compose_config("eval", given), run_dir=tmp_path / "eval", overrides=given)
    per = rec["per_example"]
    assert rec["exit"]["name"] == "converged" and rec["exit"]["max_depth"] == 8.0
    assert len(per["nfe"]) == rec["n_examples"] and all(v > 0 for v in per["nfe"])
    assert all(1.0 - 1e-6 <= d <= 8.0 + 1e-6 for d in per["depth"])
    assert rec["nfe_forward"] == pytest.approx(sum(per["nfe"]) / len(per["nfe"]))
