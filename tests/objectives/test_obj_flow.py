"""Flow-matching terms against known answers, and the parameters their gradients reach."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from odelm.data import IGNORE, Batch
from odelm.depth import DepthOutput, Loop, ODESolve
from odelm.model import LatentLM, LMOutput, ModelConfig
from odelm.objectives import EndpointFlowMatching, Objective, Reflow, TrajectoryDistillation, flow_matching_loss

B, L, C = 3, 5, 8


class ConstantField(nn.Module):
    """F(τ, x; e) = (target − e) / horizon: the chord velocity of every straight path from e to target."""

    def __init__(self, target: torch.Tensor, horizon: float) -> None:
        super().__init__()
        self.target, self.horizon = target, horizon
        self.calls = 0

    def forward(self, tau: torch.Tensor, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return (self.target - e) / self.horizon


class ZeroField(nn.Module):
    def forward(self, tau: torch.Tensor, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class FakeModel(nn.Module):
    def __init__(self, field: nn.Module, t_end: float) -> None:
        super().__init__()
        self.field = field
        self.integrator = ODESolve("euler", step_size=1.0, t_end=t_end)


def batch_with_padding() -> Batch:
    tokens = torch.randint(4, 9, (B, L))
    tokens[0, 3:] = 0  # PAD: positions whose states the flow terms must ignore
    targets = torch.full((B, L), IGNORE)
    return Batch(tokens, targets, torch.ones(B, dtype=torch.long), torch.arange(B))


def output(e: torch.Tensor, h1: torch.Tensor, depth: float) -> LMOutput:
    return LMOutput(logits=torch.zeros(B, L, 11), depth=DepthOutput(h1, 1, 1, 0, depth), e=e)


def test_reflow_is_zero_for_the_chord_velocity_and_the_velocity_norm_for_a_zero_field() -> None:
    batch = batch_with_padding()
    e, h1 = torch.randn(B, L, C), torch.randn(B, L, C)
    h1[0, 3:] = 1e6  # huge chords at padding: excluded by the mask
    out = output(e, h1, depth=4.0)
    assert Reflow()(FakeModel(ConstantField(h1, 4.0), 4.0), batch, out).item() == pytest.approx(0.0, abs=1e-12)
    mask = batch.tokens != 0
    expected = ((h1 - e) / 4.0).pow(2).mean(-1)[mask].mean()
    assert Reflow()(FakeModel(ZeroField(), 4.0), batch, out).item() == pytest.approx(expected.item(), rel=1e-5)


def test_reflow_uses_the_depth_reached_as_horizon() -> None:
    """Under STEER the solve ends at a random depth; the chord velocity divides by that depth."""
    batch = batch_with_padding()
    e, h1 = torch.randn(B, L, C), torch.randn(B, L, C)
    out = output(e, h1, depth=3.5)
    assert Reflow()(FakeModel(ConstantField(h1, 3.5), 4.0), batch, out).item() == pytest.approx(0.0, abs=1e-12)


def test_flow_matching_samples_on_the_segment() -> None:
    """The field is evaluated once, at points of the straight segment, at depths inside [tau0, tau1]."""
    seen = {}

    class Probe(nn.Module):
        def forward(self, tau, x, e):
            seen["x"], seen["tau"] = x, tau
            return torch.zeros_like(x)

    x0, x1 = torch.zeros(B, L, C), torch.ones(B, L, C)
    flow_matching_loss(Probe(), x0, x1, torch.full((B,), 2.0), torch.full((B,), 3.0), x0, torch.ones(B, L))
    s = seen["x"][:, 0, 0]  # x = s · 1
    assert torch.all((0 <= s) & (s < 1)) and torch.allclose(seen["x"], s[:, None, None].expand(B, L, C))
    assert 2.0 <= float(seen["tau"]) < 3.0


class FakeTeacher(nn.Module):
    """A teacher whose states h_0 … h_K are given; e = h_0."""

    def __init__(self, states: torch.Tensor) -> None:
        super().__init__()
        self.states = states
        self.integrator = Loop(states.shape[0] - 1)

    def forward(self, tokens, trajectory_at=None):
        depth = DepthOutput(self.states[-1], 0, 0, 0, float(self.states.shape[0] - 1),
                            trajectory=self.states if trajectory_at is not None else None)
        return LMOutput(logits=torch.zeros(B, L, 11), depth=depth, e=self.states[0])


def zigzag(K: int, d: torch.Tensor) -> torch.Tensor:
    """h_k: K segments of equal speed, alternating direction ±d."""
    states = [torch.randn(B, L, C)]
    for k in range(K):
        states.append(states[-1] + (d if k % 2 == 0 else -d))
    return torch.stack(states)


@pytest.mark.parametrize("student_t_end", [4.0, 8.0])
def test_distillation_known_answers(student_t_end: float) -> None:
    """Teacher depth k maps to student depth k·t_end/K: each segment's velocity is (h_{k+1} − h_k)·K/t_end.
    With every segment at the same speed, a zero field's loss is that speed squared whatever the segment drawn."""
    batch, d = batch_with_padding(), torch.randn(B, L, C)
    term = TrajectoryDistillation()
    term.attach_teacher(FakeTeacher(zigzag(4, d)))
    loss = term(FakeModel(ZeroField(), student_t_end), batch, None)
    mask = batch.tokens != 0
    expected = (d * 4 / student_t_end).pow(2).mean(-1)[mask].mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    base = torch.randn(B, L, C)
    straight = torch.stack([base + k * d for k in range(5)])  # one direction, constant speed
    term.attach_teacher(FakeTeacher(straight))
    field = ConstantField(base + 4 * d, student_t_end)  # (4d − 0) / t_end: the segment velocity d·4/t_end
    assert term(FakeModel(field, student_t_end), batch, None).item() == pytest.approx(0.0, abs=1e-10)
    assert field.calls == 1  # one field evaluation per batch, no solve


def test_endpoint_known_answer() -> None:
    batch, states = batch_with_padding(), zigzag(3, torch.randn(B, L, C))
    term = EndpointFlowMatching()
    term.attach_teacher(FakeTeacher(states))
    assert term(FakeModel(ConstantField(states[-1], 2.0), 2.0), batch, None).item() == pytest.approx(0.0, abs=1e-10)
    mask = batch.tokens != 0
    expected = ((states[-1] - states[0]) / 2.0).pow(2).mean(-1)[mask].mean()
    assert term(FakeModel(ZeroField(), 2.0), batch, None).item() == pytest.approx(expected.item(), rel=1e-5)


def tiny(integrator, exit_gate: bool = False) -> LatentLM:
    return LatentLM(ModelConfig(vocab_size=11, d_model=16, n_heads=2, exit_gate=exit_gate), integrator)


def grads_of(model: nn.Module, loss: torch.Tensor) -> set[str]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n.split(".")[0] for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def real_batch() -> Batch:
    tokens = torch.randint(4, 11, (B, L))
    targets = torch.full((B, L), IGNORE)
    targets[:, -2:] = torch.randint(4, 11, (B, 2))
    return Batch(tokens, targets, torch.ones(B, dtype=torch.long), torch.arange(B))


def test_flow_terms_train_the_field_only() -> None:
    batch = real_batch()
    student = tiny(ODESolve("rk4", step_size=1.0, t_end=4.0))
    out = student(batch.tokens)
    assert grads_of(student, Reflow()(student, batch, out)) == {"field"}
    teacher = tiny(Loop(4)).eval().requires_grad_(False)
    for term in (TrajectoryDistillation(), EndpointFlowMatching()):
        term.attach_teacher(teacher)
        assert grads_of(student, term(student, batch, None)) == {"field"}
    assert all(p.grad is None for p in teacher.parameters())


def test_distillation_objective_needs_no_solve() -> None:
    objective = Objective({"fm_distill": (TrajectoryDistillation(), 1.0)})
    assert not objective.needs_output and objective.needs_teacher == ["fm_distill"]
    with pytest.raises(ValueError, match="needs objective.teacher"):
        objective(tiny(ODESolve()), real_batch(), None)
