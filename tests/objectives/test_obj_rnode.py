"""RNODE regulariser states: equal to closed forms / direct quadrature, invisible to step control,
absent from evaluation solves, and their gradients (direct and adjoint) agree."""
from __future__ import annotations

import math

import pytest
import torch

from odelm.depth import DepthPlan, ODESolve
from odelm.field import VectorField
from odelm.model import LatentLM, ModelConfig
from odelm.objectives import JacobianFrobenius, KineticEnergy, Objective

from conftest import LinearField


def test_states_match_the_closed_form_on_a_linear_field() -> None:
    """F = a·h: h(τ) = h0 e^{aτ}, so ∫ mean F² = a² mean h0² (e^{2aT} − 1) / 2a and, with J = a·I,
    the Hutchinson state is exactly T a² mean ε² for the probe ε the solve drew."""
    a, T = -0.7, 2.0
    field = LinearField(a)
    h0 = torch.randn(3, 4, 5, dtype=torch.float64)
    solver = ODESolve("dopri5", rtol=1e-9, atol=1e-9, t_end=T)
    torch.manual_seed(7)
    out = solver(field, h0, h0, plan=DepthPlan(regularisers=("kinetic", "jacobian")))
    torch.manual_seed(7)
    eps = torch.randn_like(h0)  # the solve's only random draw
    kinetic = a**2 * h0.pow(2).mean(dim=(1, 2)) * (math.exp(2 * a * T) - 1) / (2 * a)
    jacobian = T * a**2 * eps.pow(2).mean(dim=(1, 2))
    torch.testing.assert_close(out.regularisers["kinetic"], kinetic, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(out.regularisers["jacobian"], jacobian, rtol=1e-6, atol=1e-9)


def test_kinetic_state_equals_direct_quadrature_on_a_transformer_field() -> None:
    field = VectorField(16, 2).double()
    h0 = torch.randn(2, 6, 16, dtype=torch.float64)
    solver = ODESolve("dopri5", rtol=1e-8, atol=1e-8, t_end=2.0)
    regularised = solver(field, h0, h0, plan=DepthPlan(regularisers=("kinetic",))).regularisers["kinetic"]
    grid = torch.linspace(0, 2, 401, dtype=torch.float64)
    with torch.no_grad():
        field.eval()  # evaluation solves: plain h, sampled on a dense grid
        states = solver(field, h0, h0, trajectory_at=grid.tolist()).trajectory  # (401, B, L, C)
        rate = torch.stack([field(t, s, h0).pow(2).mean(dim=(1, 2)) for t, s in zip(grid, states)])  # (401, B)
    quadrature = torch.trapezoid(rate, grid, dim=0)
    torch.testing.assert_close(regularised.detach(), quadrature, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("names", [["kinetic"], ["kinetic", "jacobian"]])
def test_states_never_change_the_steps(names: list[str]) -> None:
    torch.manual_seed(0)
    field = VectorField(16, 2).double()
    h0 = torch.randn(2, 6, 16, dtype=torch.float64) * 3
    plain = ODESolve("dopri5", rtol=1e-4, atol=1e-4, t_end=4.0)
    tracked = ODESolve("dopri5", rtol=1e-4, atol=1e-4, t_end=4.0)
    a, b = plain(field, h0, h0), tracked(field, h0, h0, plan=DepthPlan(regularisers=tuple(names)))
    assert b.regularisers is not None and set(b.regularisers) == set(names)
    assert (a.nfe_forward, a.steps_accepted, a.steps_rejected) == (b.nfe_forward, b.steps_accepted, b.steps_rejected)
    torch.testing.assert_close(a.h, b.h)
    assert tracked(field, h0, h0).regularisers is None  # a solve without the plan (evaluation) pays nothing


def test_adjoint_gradients_match_direct_backpropagation() -> None:
    field = VectorField(16, 2).double()
    e = torch.randn(2, 5, 16, dtype=torch.float64, requires_grad=True)
    grads = []
    for adjoint in (False, True):
        solver = ODESolve("dopri5", rtol=1e-7, atol=1e-7, t_end=2.0, adjoint=adjoint)
        torch.manual_seed(3)
        out = solver(field, e, e, plan=DepthPlan(regularisers=("kinetic", "jacobian")))
        loss = out.regularisers["kinetic"].sum() + out.regularisers["jacobian"].sum() + out.h.pow(2).mean()
        grads.append(torch.autograd.grad(loss, [e, *field.parameters()]))
    for direct, adjoint in zip(*grads):
        torch.testing.assert_close(adjoint, direct, rtol=1e-4, atol=1e-6)


def test_terms_read_the_states_and_reach_field_and_embedding_not_head() -> None:
    model = LatentLM(ModelConfig(vocab_size=11, d_model=16, n_heads=2), ODESolve("rk4", step_size=1.0, t_end=2.0))
    objective = Objective({"kinetic_energy": (KineticEnergy(), 1.0), "jacobian_frobenius": (JacobianFrobenius(), 1.0)})
    objective.prepare(model)
    tokens = torch.randint(4, 11, (3, 6))
    out = model(tokens, plan=objective.plan(model))
    result = objective(model, None, out)
    assert result.terms["kinetic_energy"] == out.depth.regularisers["kinetic"].mean()
    result.loss.backward()
    reached = {n.split(".")[0] for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert reached == {"field", "embed"}  # h(0) = e carries the gradient to the embedding; the head is untouched


def test_terms_refuse_a_loop() -> None:
    from odelm.depth import Loop

    model = LatentLM(ModelConfig(vocab_size=11, d_model=16, n_heads=2), Loop(2))
    with pytest.raises(ValueError, match="use model=ode"):
        KineticEnergy().prepare(model)
