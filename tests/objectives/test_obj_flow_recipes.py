"""Recipes that make the field a flow, each against a known answer: random discretisation, the
per-call depth plan (start / end depth), Δt-conditioning, random horizons, the progressive loss,
the fixed-point residual and shortcut consistency."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from odelm.data import Batch
from odelm.depth import DepthPlan, Loop, ODESolve, RandomDepth
from odelm.field import NFECounter
from odelm.model import LatentLM, ModelConfig
from odelm.objectives import (CrossEntropy, FixedPointResidual, HorizonCrossEntropy, Objective, ProgressiveLoss,
                              ShortcutConsistency, answer_cross_entropy)
from odelm.objectives.progressive import draw_legs
from odelm.tasks import CharTokenizer

from conftest import LinearField


class TimeField(torch.nn.Module):
    """F(τ, h) = τ (every entry): h(t1) − h(t0) = (t1² − t0²) / 2, exact for rk4 and midpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.nfe = NFECounter()

    def forward(self, tau, h, e):
        self.nfe.forward += 1
        return torch.ones_like(h) * tau


class StepLinearField(torch.nn.Module):
    """F(τ, h; Δt) = (a + c·Δt) · h, a step-conditioned closed-form field."""

    step_conditioned = True

    def __init__(self, a: float, c: float) -> None:
        super().__init__()
        self.a, self.c = a, c
        self.nfe = NFECounter()
        self.seen: list[float] = []

    def forward(self, tau, h, e, dt=None):
        self.nfe.forward += 1
        dt = 0.0 if dt is None else float(dt)
        self.seen.append(dt)
        return (self.a + self.c * dt) * h


def test_random_discretisation_draws_method_and_steps_and_solves_to_the_same_horizon() -> None:
    """Each draw is a fixed-grid method from the list and n in [lo, hi] steps over t_end; the solve
    takes exactly n steps (n·stages field calls) and, on F = τ, lands on the exact answer."""
    draws = RandomDepth(methods=("euler", "midpoint", "rk4"), steps=(2, 5))
    solver = ODESolve("dopri5", t_end=3.0)
    stages = {"euler": 1, "midpoint": 2, "rk4": 4}
    seen = set()
    for _ in range(60):
        plan = DepthPlan(**draws.draw(solver.t_end))
        n = round(solver.t_end / plan.step_size)
        assert plan.method in stages and 2 <= n <= 5 and n * plan.step_size == pytest.approx(3.0)
        seen.add((plan.method, n))
        field = TimeField()
        h0 = torch.zeros(1, 2, 3, dtype=torch.float64)
        out = solver(field, h0, h0, plan=plan)
        assert out.steps_accepted == n and out.nfe_forward == n * stages[plan.method]
        if plan.method != "euler":  # second order or more: exact on a linear-in-τ field
            torch.testing.assert_close(out.h, h0 + 4.5)
        assert out.plan == plan and out.depth == 3.0
    assert len(seen) >= 10  # every method and several step counts were drawn
    assert solver(TimeField(), h0, h0).nfe_forward > 0  # the nominal solve is untouched (dopri5)


def test_the_plan_starts_and_ends_where_asked() -> None:
    h0 = torch.zeros(2, 3, dtype=torch.float64)
    out = ODESolve("rk4", step_size=0.5, t_end=4.0)(TimeField(), h0, h0, trajectory_at=[2.0],
                                                     plan=DepthPlan(t_start=1.0, t_end=3.0))
    torch.testing.assert_close(out.h, h0 + (9 - 1) / 2)  # ∫_1^3 τ dτ
    torch.testing.assert_close(out.trajectory[0], h0 + (4 - 1) / 2)
    a = -0.5
    loop = Loop(4)
    out = loop(LinearField(a), h0 + 1, h0, plan=DepthPlan(t_start=2.0, t_end=5.0))
    torch.testing.assert_close(out.h, (h0 + 1) * (1 + a) ** 3)
    assert out.nfe_forward == 3 and out.depth == 5.0
    with pytest.raises(ValueError, match="t_end=2.5 is not an integer"):
        loop(LinearField(a), h0, h0, plan=DepthPlan(t_end=2.5))
    with pytest.raises(ValueError, match="use model=ode"):
        loop(LinearField(a), h0, h0, plan=DepthPlan(method="rk4"))
    with pytest.raises(ValueError, match="must end after it starts"):
        DepthPlan(t_start=2.0, t_end=1.0)


def test_plans_merge_and_refuse_two_choices_of_one_field() -> None:
    plan = DepthPlan(regularisers=("jacobian",)).merge(regularisers=("kinetic",), t_end=3.0)
    assert plan.regularisers == ("kinetic", "jacobian") and plan.t_end == 3.0
    with pytest.raises(ValueError, match="both set the depth plan's t_end"):
        plan.merge(t_end=5.0)


def test_step_conditioning_starts_as_the_plain_field_and_keeps_loop_equal_to_euler() -> None:
    config = ModelConfig(vocab_size=11, d_model=16, n_heads=2)
    plain = LatentLM(config, Loop(3))
    conditioned = LatentLM(ModelConfig(vocab_size=11, d_model=16, n_heads=2, step_conditioned=True), Loop(3))
    missing = conditioned.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(".step." in k for k in missing)
    tokens = torch.randint(4, 11, (2, 7))
    torch.testing.assert_close(conditioned(tokens).logits, plain(tokens).logits)  # zero-initialised
    for p in conditioned.field.parameters():  # a trained conditioning: Loop(3) still equals Euler step 1
        p.data += 0.05 * torch.randn_like(p)
    looped = conditioned(tokens).logits
    conditioned.integrator = ODESolve("euler", step_size=1.0, t_end=3.0)
    torch.testing.assert_close(conditioned(tokens).logits, looped, rtol=1e-5, atol=1e-5)
    conditioned.integrator = ODESolve("euler", step_size=0.5, t_end=3.0)
    assert not torch.allclose(conditioned(tokens).logits, looped, atol=1e-4)


def test_the_solver_tells_the_field_its_step() -> None:
    """Loop: Δt = 1; Euler: its step; every other method: 0 (the instantaneous velocity)."""
    h0 = torch.ones(1, 2, dtype=torch.float64)
    for integrator, expected in ((Loop(2), {1.0}), (ODESolve("euler", step_size=0.25, t_end=1.0), {0.25}),
                                 (ODESolve("rk4", step_size=0.5, t_end=1.0), {0.0}),
                                 (ODESolve("dopri5", t_end=1.0), {0.0})):
        field = StepLinearField(-0.5, 1.0)
        integrator(field, h0, h0)
        assert set(field.seen) == expected, integrator
    field = StepLinearField(-0.5, 1.0)
    out = ODESolve("euler", step_size=0.5, t_end=1.0)(field, h0, h0, plan=DepthPlan(step_size=0.25))
    torch.testing.assert_close(out.h, h0 * (1 + 0.25 * (-0.5 + 0.25)) ** 4)


def _tiny(integrator, **config) -> LatentLM:
    return LatentLM(ModelConfig(vocab_size=11, d_model=16, n_heads=2, **config), integrator)


def _batch(length: int = 6, pad: int = 0) -> Batch:
    tokens = torch.randint(4, 11, (3, length))
    if pad:
        tokens[0, -pad:] = CharTokenizer.PAD
    targets = torch.full_like(tokens, -100)
    targets[:, length - pad - 1] = torch.randint(4, 11, (3,))
    return SimpleNamespace(tokens=tokens, targets=targets)


@pytest.mark.parametrize("integrator", [Loop(4), ODESolve("euler", step_size=0.5, t_end=4.0)])
def test_horizon_ce_draws_longer_horizons_and_reads_the_answer_at_the_trained_one(integrator) -> None:
    model = _tiny(integrator)
    term = HorizonCrossEntropy(max_factor=3.0)
    objective = Objective({"ce": (CrossEntropy(), 1.0),
                           "horizon_ce": (term, 1.0)})
    objective.prepare(model)
    ends = [objective.plan(model).t_end for _ in range(40)]
    assert min(ends) >= 4.0 and max(ends) <= 12.0 and len(set(ends)) > 3
    if isinstance(integrator, Loop):
        assert all(t == int(t) for t in ends)
    batch = _batch()
    plan = objective.plan(model)
    out = model(batch.tokens, trajectory_at=objective.trajectory_at, plan=plan)
    assert out.depth.depth == plan.t_end
    nominal = model(batch.tokens)  # the answer at T, by a separate nominal forward
    result = objective(model, batch, out)
    torch.testing.assert_close(result.terms["horizon_ce"], answer_cross_entropy(nominal.logits, batch.targets).detach())
    torch.testing.assert_close(result.terms["ce"], answer_cross_entropy(out.logits, batch.targets).detach())


def test_progressive_legs_stay_in_range() -> None:
    for whole in (True, False):
        for _ in range(200):
            n, k = draw_legs(4, whole)
            assert 0 <= n <= 3 and 1 <= k <= 4 - n + 1e-9
            if whole:
                assert n == int(n) and k == int(k)


def test_progressive_loss_continues_from_a_detached_state() -> None:
    """Equals the CE after k loops from the state after n loops, and no gradient flows through the
    first n loops: its gradient equals that of a model whose first leg is a constant."""
    model = _tiny(Loop(4))
    term = ProgressiveLoss()
    batch = _batch()
    out = model(batch.tokens)
    torch.manual_seed(11)
    loss = term(model, batch, out)
    torch.manual_seed(11)
    n, k = draw_legs(4, True)
    e = model.encode(batch.tokens)
    with torch.no_grad():
        h = Loop(int(n))(model.field, e, e).h if n else e
    h_end = h
    for step in range(int(k)):
        h_end = h_end + model.field(torch.tensor(n + step), h_end, e)
    manual = answer_cross_entropy(model.decode(h_end), batch.targets)
    torch.testing.assert_close(loss, manual)
    assert loss.requires_grad
    nfe = model.field.nfe.forward
    torch.manual_seed(11)
    term(model, batch, out)
    assert model.field.nfe.forward - nfe == n + k  # n without a graph, k with one


def test_fixed_point_residual_is_relative_and_masks_padding() -> None:
    """With F = a·h the residual ‖F‖/‖h‖ is |a| at every real position; padding is left out even
    where its state is zero (which would give 0 and pull the mean down)."""
    a = -0.3
    model = _tiny(Loop(2))
    model.field = LinearField(a).float()
    batch = _batch(pad=2)
    h = torch.randn(3, 6, 16)
    h[0, -2:] = 0.0
    out = SimpleNamespace(depth=SimpleNamespace(h=h, depth=2.0), e=h)
    value = FixedPointResidual()(model, batch, out)
    assert value.item() == pytest.approx(abs(a), rel=1e-5)


def test_shortcut_consistency_matches_its_closed_form() -> None:
    """F = (a + cΔt)·h. Big step d: (a + cd) h. Two half steps at Δt = s: (a + cs) h (1 + (d/2)(a + cs)/2).
    The loss is the masked mean over positions of mean_C (big − small)²."""
    a, c, T = -0.4, 0.3, 3
    states = torch.randn(T, 2, 5, 4, dtype=torch.float64)
    field = StepLinearField(a, c)
    model = SimpleNamespace(field=field, integrator=Loop(T))
    depth = SimpleNamespace(trajectory=states, trajectory_tau=[0.0, 1.0, 2.0])
    out = SimpleNamespace(depth=depth, e=states[0])
    batch = SimpleNamespace(tokens=torch.full((2, 5), 5))
    for levels, anchor in (([0.5], True), ([1.0], False)):
        term = ShortcutConsistency(levels=levels, anchor_zero=anchor)
        torch.manual_seed(5)
        value = term(model, batch, out)
        torch.manual_seed(5)
        k = int(torch.randint(T, ()).item())
        d = levels[0]
        s = 0.0 if anchor else d / 2
        g = a + c * s
        diff = (a + c * d) * states[k] - g * states[k] * (1 + (d / 2) * g / 2)
        assert value.item() == pytest.approx(diff.pow(2).mean().item(), rel=1e-10)


def test_path_independence_at_zero_noise_is_the_answer_ce_of_the_same_solve() -> None:
    from odelm.objectives import PathIndependence

    model = _tiny(ODESolve("rk4", step_size=0.5, t_end=2.0))
    batch = _batch()
    plan = DepthPlan(method="euler", step_size=0.25, t_end=3.0)
    out = model(batch.tokens, plan=plan)
    value = PathIndependence(sigma=0.0)(model, batch, out)  # the batch's plan, from h(0) = e
    torch.testing.assert_close(value, answer_cross_entropy(out.logits, batch.targets))
    noisy = PathIndependence(sigma=1.0)(model, batch, out)
    assert noisy.requires_grad and not torch.isclose(noisy, value)
    with pytest.raises(ValueError, match="sigma must be a number >= 0"):
        PathIndependence(sigma=-1.0)


@pytest.mark.parametrize("integrator", [Loop(3), ODESolve("euler", step_size=0.5, t_end=2.0)])
def test_path_independence_from_another_end_state_solves_from_the_rolled_detached_end(integrator) -> None:
    """start=other_end at zero noise: the second solve starts at example i−1's end state (the batch rolled
    by one), detached, so its gradient reaches the field through the second solve only."""
    from odelm.objectives import PathIndependence

    torch.manual_seed(0)
    model = _tiny(integrator)
    batch = _batch()
    out = model(batch.tokens)
    value = PathIndependence(sigma=0.0, start="other_end")(model, batch, out)
    start = torch.stack([out.depth.h[2], out.depth.h[0], out.depth.h[1]]).detach()  # (B, L, C)
    expected = answer_cross_entropy(model.decode(model.integrator(model.field, start, out.e).h), batch.targets)
    torch.testing.assert_close(value, expected)
    assert not torch.isclose(value, PathIndependence(sigma=0.0)(model, batch, out))  # not the prompt start
    grads = torch.autograd.grad(value, [out.depth.h, out.e], allow_unused=True)
    assert grads[0] is None and grads[1] is not None  # the start is detached; e re-enters every evaluation
    with pytest.raises(ValueError, match="start must be one of .*, got 'noise'"):
        PathIndependence(start="noise")


def test_path_independence_from_another_end_state_starts_at_the_prompt_where_the_other_is_padding() -> None:
    """Example 1 is shorter (padded): example 2, which starts from example 1's end state, starts at its
    own encoding e where example 1 has padding; a batch of one has no other example and starts at e."""
    from odelm.objectives import PathIndependence

    torch.manual_seed(0)
    model = _tiny(Loop(3))
    batch = _batch(pad=2)  # example 0 padded; roll by one: example 1 starts from example 0's end
    batch.tokens[1, -2:] = CharTokenizer.PAD  # example 1 padded too: example 2 starts from it
    batch.targets[2] = -100
    batch.targets[2, 5] = 5  # causal: only the last position sees the positions where example 1 is padding
    out = model(batch.tokens)
    real = batch.tokens != CharTokenizer.PAD
    start = out.depth.h.detach().roll(1, dims=0)
    start = torch.where(real.roll(1, dims=0)[..., None], start, out.e)
    expected = answer_cross_entropy(model.decode(model.integrator(model.field, start, out.e).h), batch.targets)
    torch.testing.assert_close(PathIndependence(sigma=0.0, start="other_end")(model, batch, out), expected)
    one = SimpleNamespace(tokens=batch.tokens[2:], targets=batch.targets[2:])
    out_one = model(one.tokens)
    torch.testing.assert_close(PathIndependence(sigma=0.0, start="other_end")(model, one, out_one),
                               PathIndependence(sigma=0.0)(model, one, out_one))


def test_random_discretisation_may_draw_an_adaptive_method() -> None:
    """An adaptive draw takes no step: the solve runs at the solver's tolerance (the small-step limit)."""
    draws = RandomDepth(methods=("euler", "dopri5"), steps=(4, 8))
    solver = ODESolve("rk4", step_size=1.0, rtol=1e-8, atol=1e-8, t_end=2.0)
    h0 = torch.ones(1, 2, dtype=torch.float64)
    seen = set()
    for _ in range(20):
        plan = DepthPlan(**draws.draw(solver.t_end))
        seen.add(plan.method)
        out = solver(LinearField(-0.5), h0, h0, plan=plan)
        if plan.method == "dopri5":
            assert plan.step_size is None
            torch.testing.assert_close(out.h, h0 * math.exp(-1.0), rtol=1e-6, atol=1e-8)
    assert seen == {"euler", "dopri5"}
    assert RandomDepth(methods=("dopri5",)).draw(2.0) == {"method": "dopri5"}  # no steps needed
