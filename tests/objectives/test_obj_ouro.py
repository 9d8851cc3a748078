"""Ouro exit-gate losses: hand-computed gates, the per-step plumbing, and Stage II's frozen LM."""
from __future__ import annotations

import math

import pytest
import torch

from odelm.data import IGNORE, Batch
from odelm.depth import Loop, ODESolve
from odelm.model import LatentLM, ModelConfig
from odelm.objectives import (
    CrossEntropyAllSteps, Objective, OuroStage1, OuroStage2, exit_distribution, improvement_labels, stage1_loss,
    stage2_loss,
)


def test_exit_distribution_and_stage1_on_hand_computed_gates() -> None:
    gates = torch.tensor([[0.5], [0.5], [0.9]])  # the last gate is ignored: leftover mass exits at T
    p = exit_distribution(gates)
    torch.testing.assert_close(p, torch.tensor([[0.5], [0.25], [0.25]]))
    losses = torch.tensor([[1.0], [2.0], [3.0]])
    entropy = 0.5 * math.log(2) + 2 * 0.25 * math.log(4)  # 1.5 ln 2
    assert stage1_loss(losses, gates, beta=0.1).item() == pytest.approx(1.75 - 0.1 * entropy, rel=1e-6)
    two = torch.tensor([[0.2, 1.0], [0.7, 0.3]])  # two tokens: mean of their losses
    p2 = exit_distribution(two)
    torch.testing.assert_close(p2, torch.tensor([[0.2, 1.0], [0.8, 0.0]]))
    l2 = torch.tensor([[4.0, 1.0], [1.0, 5.0]])
    h0 = -(0.2 * math.log(0.2) + 0.8 * math.log(0.8))
    expected = ((0.2 * 4 + 0.8 * 1 - 0.05 * h0) + (1.0 * 1 - 0.0)) / 2
    assert stage1_loss(l2, two, beta=0.05).item() == pytest.approx(expected, rel=1e-6)


def test_stage2_labels_and_loss() -> None:
    losses = torch.tensor([[1.0], [0.5], [0.5]])  # improves 1 → 0.5, then stalls
    w = improvement_labels(losses, k=50.0, gamma=0.005)
    torch.testing.assert_close(w, torch.sigmoid(torch.tensor([[50 * 0.495], [-50 * 0.005]])))
    gates = torch.tensor([[0.9], [0.1], [0.8]])
    expected = -((w[0, 0] * math.log(0.9) + (1 - w[0, 0]) * math.log(0.1))
                 + (w[1, 0] * math.log(0.2) + (1 - w[1, 0]) * math.log(0.8))) / 2
    assert stage2_loss(losses, gates, 50.0, 0.005).item() == pytest.approx(expected.item(), rel=1e-5)


def gated(integrator) -> LatentLM:
    return LatentLM(ModelConfig(vocab_size=11, d_model=16, n_heads=2, exit_gate=True), integrator)


def batch() -> Batch:
    tokens = torch.randint(4, 11, (3, 6))
    targets = torch.full((3, 6), IGNORE)
    targets[:, -2:] = torch.randint(4, 11, (3, 2))
    return Batch(tokens, targets, torch.ones(3, dtype=torch.long), torch.arange(3))


@pytest.mark.parametrize("integrator", [Loop(3), ODESolve("rk4", step_size=0.5, t_end=3.0)])
def test_stage1_on_the_model_equals_its_formula_on_decoded_steps(integrator) -> None:
    model, b = gated(integrator), batch()
    objective = Objective({"ouro_stage1": (OuroStage1(beta=0.1), 1.0), "ce_all_steps": (CrossEntropyAllSteps(), 1.0)})
    objective.prepare(model)
    assert objective.trajectory_at == [1.0, 2.0, 3.0]
    out = model(b.tokens, trajectory_at=objective.trajectory_at)
    terms = objective(model, b, out).terms
    sup = b.targets != IGNORE
    losses, gates = [], []
    for t in range(3):  # decode each step by hand
        h = out.depth.trajectory[t]
        logits = model.decode(h)
        losses.append(torch.nn.functional.cross_entropy(logits[sup], b.targets[sup], reduction="none"))
        gates.append(model.exit_probability(h)[sup])
    losses, gates = torch.stack(losses), torch.stack(gates)
    torch.testing.assert_close(terms["ouro_stage1"], stage1_loss(losses, gates, 0.1).detach())
    torch.testing.assert_close(terms["ce_all_steps"], losses.mean().detach())
    torch.testing.assert_close(out.depth.trajectory[-1], out.depth.h)


def test_stage2_trains_the_gate_alone() -> None:
    model, b = gated(Loop(3)), batch()
    objective = Objective({"ouro_stage2": (OuroStage2(), 1.0)})
    objective.prepare(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"exit_gate.weight", "exit_gate.bias"}
    objective(model, b, model(b.tokens, trajectory_at=objective.trajectory_at)).loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == trainable and all(model.get_parameter(n).grad.abs().sum() > 0 for n in with_grad)


def test_stage1_reaches_the_gate_and_the_lm() -> None:
    model, b = gated(Loop(3)), batch()
    objective = Objective({"ouro_stage1": (OuroStage1(), 1.0)})
    objective.prepare(model)
    objective(model, b, model(b.tokens, trajectory_at=objective.trajectory_at)).loss.backward()
    reached = {n.split(".")[0] for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert reached == {"embed", "field", "norm", "head", "exit_gate"}


def test_gate_terms_need_the_gate() -> None:
    model = LatentLM(ModelConfig(vocab_size=11, d_model=16, n_heads=2), Loop(3))
    for term in (OuroStage1(), OuroStage2()):
        with pytest.raises(ValueError, match="model.exit_gate=true"):
            term.prepare(model)
    with pytest.raises(ValueError, match="beta must be a number >= 0"):
        OuroStage1(beta=-1)
