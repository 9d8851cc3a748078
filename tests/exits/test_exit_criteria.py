"""Exit criteria on constructed states: each stops where it should; Q-exit equals its formula."""
from __future__ import annotations

import math

import pytest
import torch

from odelm.exits import EXITS, ExitContext, KLExit, QExit, StateChange, StaticDepth, build_exit
from odelm.exits import exit_distribution, q_exit_step
from odelm.exits.kl import kl_divergence
from odelm.exits.loop_exit import loop_until_exit


class ScriptedField(torch.nn.Module):
    """F(k, h) = deltas[k] (B, L, C): a loop whose states are known in advance."""

    def __init__(self, deltas: torch.Tensor) -> None:
        super().__init__()
        self.deltas = deltas  # (T, B, L, C)
        from odelm.field import NFECounter

        self.nfe = NFECounter()
        self.rows = None  # which rows of the batch are being evaluated

    def forward(self, tau, h, e):
        self.nfe.forward += 1
        k = int(tau)
        rows = e[:, 0, 0].long()  # row ids ride in e so a shrinking active set stays aligned
        return self.deltas[k, rows]


def run_loop(criterion, deltas, h0, ctx, max_loops):
    B, L, C = h0.shape
    e = torch.zeros(B, L, C)
    e[:, 0, 0] = torch.arange(B, dtype=torch.float32)
    return loop_until_exit(ScriptedField(deltas), h0, e, criterion, ctx, max_loops)


def identity_ctx(B: int, L: int, mask=None, gate=None) -> ExitContext:
    return ExitContext(decode=lambda h: h, gate=gate, mask=torch.ones(B, L, dtype=torch.bool) if mask is None else mask)


def test_state_change_stops_at_the_first_small_relative_step() -> None:
    # row 0: steps of relative size 0.6, 0.5, 0.01 → exits at 3; row 1: steps shrink 0.5, 0.02 → exits at 2
    h0 = torch.ones(2, 1, 1)
    deltas = torch.zeros(5, 2, 1, 1)
    h = h0.clone()
    plans = [[0.6, 0.5, 0.01, 0.01, 0.01], [0.5, 0.02, 0.3, 0.3, 0.3]]
    for b, plan in enumerate(plans):
        value = 1.0
        for k, rel in enumerate(plan):  # choose Δ so that |Δ| / |h_k| = rel with h_k = value + Δ
            delta = rel * value / (1 - rel)
            deltas[k, b] = delta
            value += delta
    _, depth, exited = run_loop(StateChange(threshold=0.05), deltas, h0, identity_ctx(2, 1), 5)
    assert depth.tolist() == [3, 2] and exited.tolist() == [True, True]
    # min_depth holds an early exit back; a threshold never met runs to max depth, not exited
    _, depth, _ = run_loop(StateChange(threshold=0.05, min_depth=3), deltas, h0, identity_ctx(2, 1), 5)
    assert depth.tolist() == [3, 5]  # row 1 is at rest only at step 2, before min_depth
    _, depth, exited = run_loop(StateChange(threshold=1e-6), deltas, h0, identity_ctx(2, 1), 4)
    assert depth.tolist() == [4, 4] and exited.tolist() == [False, False]


def test_criteria_wait_for_every_read_out_position() -> None:
    # position 0 settles after step 1, position 1 only after step 3; position 2 never (not read out)
    h0 = torch.ones(1, 3, 1)
    deltas = torch.zeros(4, 1, 3, 1)
    deltas[0, 0, :, 0] = 1.0
    deltas[1:3, 0, 1, 0] = 1.0
    deltas[:, 0, 2, 0] = 5.0
    mask = torch.tensor([[True, True, False]])
    _, depth, _ = run_loop(StateChange(threshold=0.05), deltas, h0, identity_ctx(1, 3, mask), 4)
    assert depth.tolist() == [4]  # step 4 is the first with position 1 at rest (steps 2, 3 move it)
    only_first = torch.tensor([[True, False, False]])
    _, depth, _ = run_loop(StateChange(threshold=0.05), deltas, h0, identity_ctx(1, 3, only_first), 4)
    assert depth.tolist() == [2]


def test_kl_exit_compares_with_the_distribution_lag_steps_back() -> None:
    # decode(h) = h as logits over V = 2; the state moves 3, 1, 0.001 → KL tiny only after step 3
    h0 = torch.zeros(1, 1, 2)
    deltas = torch.zeros(5, 1, 1, 2)
    for k, step in enumerate([3.0, 1.0, 1e-3, 1e-3, 1e-3]):
        deltas[k, 0, 0, 0] = step
    ctx = identity_ctx(1, 1)
    _, depth, _ = run_loop(KLExit(threshold=1e-4), deltas, h0, ctx, 5)
    assert depth.tolist() == [3]
    # lag 2: KL(p_3 ‖ p_1) spans the step of 1 (large); KL(p_4 ‖ p_2) only 0.002 → exits at 4
    _, depth, _ = run_loop(KLExit(threshold=1e-4, lag=2), deltas, h0, ctx, 5)
    assert depth.tolist() == [4]
    # the divergence itself, by hand: KL([.5, .5] ‖ [.9, .1]) = .5 ln(.5/.9) + .5 ln(.5/.1)
    p, q = torch.tensor([0.5, 0.5]).log(), torch.tensor([0.9, 0.1]).log()
    assert float(kl_divergence(p, q)) == pytest.approx(0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(5.0), rel=1e-6)


def test_q_exit_equals_its_formula() -> None:
    torch.manual_seed(3)
    lam = torch.rand(6, 50)  # 6 steps, 50 independent cases
    p = exit_distribution(lam)
    for t in range(6):  # p(t) = λ_t ∏_{j<t}(1 − λ_j), leftover on the last step
        expected = lam[t] * torch.prod(1 - lam[:t], dim=0) if t < 5 else torch.prod(1 - lam[:5], dim=0)
        torch.testing.assert_close(p[t], expected)
    torch.testing.assert_close(p.sum(0), torch.ones(50))
    for q in (0.2, 0.5, 0.9):
        steps = q_exit_step(lam, q)
        for i in range(50):
            cdf, expected = 0.0, 6
            for t in range(6):
                cdf += float(p[t, i])
                if cdf >= q:
                    expected = t + 1
                    break
            assert int(steps[i]) == expected


def test_q_exit_criterion_in_the_loop_matches_the_formula() -> None:
    # gate λ(h) = h[..., 0] read straight from the state: the scripted states set λ_1 … λ_5
    torch.manual_seed(0)
    B, T = 40, 5
    lam = torch.rand(T, B) * 0.6
    h0 = torch.zeros(B, 1, 1)
    deltas = torch.zeros(T, B, 1, 1)
    prev = torch.zeros(B)
    for k in range(T):
        deltas[k, :, 0, 0] = lam[k] - prev
        prev = lam[k]
    ctx = identity_ctx(B, 1, gate=lambda h: h[..., 0])
    for q in (0.3, 0.6, 0.95):
        _, depth, _ = run_loop(QExit(q=q), deltas, h0, ctx, T)
        assert depth.tolist() == q_exit_step(lam, q).tolist()


def test_static_runs_to_the_maximum_depth() -> None:
    deltas = torch.zeros(3, 2, 1, 1)
    _, depth, exited = run_loop(StaticDepth(), deltas, torch.ones(2, 1, 1), identity_ctx(2, 1), 3)
    assert depth.tolist() == [3, 3] and not exited.any()


def test_registry_and_bad_values_name_the_value() -> None:
    assert set(EXITS) == {"static", "state_change", "kl", "q_exit", "converged"}
    assert build_exit({"name": "none"}) is None
    strategy = build_exit({"name": "kl", "threshold": 1e-3, "lag": 2, "mode": "batch", "max_depth": 6})
    assert isinstance(strategy.criterion, KLExit) and strategy.mode == "batch" and strategy.max_depth == 6
    for config, match in [
        ({"name": "halt"}, "unknown exit 'halt'"),
        ({"name": "kl", "threshold": -1.0}, r"exit.threshold must be a number in \(0, inf\), got -1.0"),
        ({"name": "q_exit", "q": 1.5}, r"exit.q must be a number in \(0, 1\], got 1.5"),
        ({"name": "kl", "lag": 0}, "exit.lag must be an integer >= 1, got 0"),
        ({"name": "static", "mode": "solo"}, "unknown exit.mode 'solo'"),
        ({"name": "state_change", "epsilon": 1}, "exit=state_change: .*epsilon"),
        ({"name": "static", "max_depth": 0}, "exit.max_depth must be a number"),
        ({"name": "converged", "max_t_end": 8.0, "max_depth": 4.0}, "exit.max_t_end=8.0 and exit.max_depth=4.0 disagree"),
        ({"name": "converged", "threshold": 0}, r"exit.threshold must be a number in \(0, inf\)"),
    ]:
        with pytest.raises(ValueError, match=match):
            build_exit(config)
