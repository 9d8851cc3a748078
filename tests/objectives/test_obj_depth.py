"""Training-only depth randomisation: STEER random end time (ODE) and Huginn random depth with
truncated back-propagation (loop)."""
from __future__ import annotations

import math

import pytest
import torch

from odelm.depth import DepthPlan, Loop, ODESolve, RandomDepth

from conftest import LinearField


def test_steer_samples_the_end_time_per_call_and_the_solver_keeps_none_of_it() -> None:
    field = LinearField(-0.5)
    h0 = torch.randn(2, 3, 4, dtype=torch.float64)
    solver = ODESolve("dopri5", rtol=1e-9, atol=1e-9, t_end=4.0)
    steer = RandomDepth(steer_b=1.0)
    depths = []
    for _ in range(20):
        out = solver(field, h0, h0, trajectory_at=[2.0, 4.0], plan=DepthPlan(**steer.draw(solver.t_end)))
        depths.append(out.depth)
        torch.testing.assert_close(out.h, h0 * math.exp(-0.5 * out.depth))  # solved to the sampled end
        torch.testing.assert_close(out.trajectory[0], h0 * math.exp(-0.5 * out.depth / 2))  # depths scale along
    assert all(3.0 <= d <= 5.0 for d in depths) and len(set(depths)) == 20
    assert solver(field, h0, h0).depth == 4.0  # without a plan: the nominal horizon, in any mode
    with pytest.raises(ValueError, match="steer_b must be a number in"):
        RandomDepth(steer_b=4.0).check(4.0)


@pytest.mark.parametrize("t_end,b", [(3.0, 0.3), (5.0, 0.7), (6.0, 0.3), (10.0, 0.7)])
def test_steer_keeps_per_step_depths_valid_for_every_end_time(t_end: float, b: float) -> None:
    """Per-step terms ask for every integer depth up to t_end; scaled by a random horizon the last
    one must land exactly on the drawn end (it missed by an ulp and broke torchdiffeq's grid check
    in float32 for 8-40% of draws at these horizons)."""
    torch.manual_seed(0)
    field = LinearField(-0.5).float()
    solver = ODESolve("rk4", step_size=0.5, t_end=t_end)
    steer = RandomDepth(steer_b=b)
    depths = [float(k) for k in range(1, int(t_end) + 1)]
    for _ in range(40):
        h0 = torch.randn(2, 3, 4)
        out = solver(field, h0, h0, trajectory_at=depths, plan=DepthPlan(**steer.draw(t_end)))
        assert out.trajectory.shape[0] == len(depths)
        torch.testing.assert_close(out.trajectory[-1], out.h)


def test_random_depth_has_the_nominal_mean_and_is_off_in_evaluation() -> None:
    loop = Loop(4, random_depth=True)
    draws = [loop.sample_loops() for _ in range(3000)]
    assert abs(sum(draws) / len(draws) - 4) < 0.15 and min(draws) >= 1 and max(draws) <= 12 and len(set(draws)) > 4
    field = LinearField(-0.5)
    h0 = torch.randn(2, 3, dtype=torch.float64)
    seen = {loop(field, h0, h0).depth for _ in range(30)}
    assert len(seen) > 1
    field.eval()
    assert loop(field, h0, h0).depth == 4.0
    field.train()
    with pytest.raises(ValueError, match="random depth cannot be combined with trajectory_at"):
        loop(field, h0, h0, trajectory_at=[1.0])


def test_truncated_backpropagation_keeps_the_last_k_steps() -> None:
    """h_{k+1} = (1 + a) h_k: through all 4 steps d(Σh)/da = 4(1+a)^3 Σh0; through the last 2 only,
    2(1+a)·(1+a)^2 Σh0 (the first two steps are constants), and h0 gets no gradient."""
    a = -0.5
    h0 = torch.randn(5, dtype=torch.float64, requires_grad=True)
    for bptt, factor in ((None, 4), (2, 2)):
        field = LinearField(a)
        out = Loop(4, bptt_steps=bptt)(field, h0, h0)
        (ga,) = torch.autograd.grad(out.h.sum(), field.a, retain_graph=True)
        assert ga.item() == pytest.approx(factor * (1 + a) ** 3 * h0.sum().item(), rel=1e-12)
        assert out.h.requires_grad
        grad_h0 = torch.autograd.grad(out.h.sum(), h0, allow_unused=True)[0]
        assert (grad_h0 is None) == (bptt is not None)
    field.eval()  # evaluation: full graph
    (ga,) = torch.autograd.grad(Loop(4, bptt_steps=2)(field, h0, h0).h.sum(), field.a)
    assert ga.item() == pytest.approx(4 * (1 + a) ** 3 * h0.sum().item(), rel=1e-12)


def test_state_noise_is_relative_to_the_state_between_steps_off_in_evaluation_and_not_differentiated() -> None:
    """LinearField(0): the loop is the identity, so what a training loop adds is the noise alone: after the
    first of two steps h1 − h0 = σ·rms(h0)·ε per position, whose rms over channels is σ·rms(h0) (a wide
    state: within 5%), and the last step adds none (nothing after it could correct it); the gradient
    through the loop is the noise-free one (d h / d h0 = I)."""
    torch.manual_seed(0)
    field = LinearField(0.0)
    h0 = torch.randn(3, 4, 4096, dtype=torch.float64) * torch.tensor([0.1, 1.0, 10.0]).view(3, 1, 1).double()
    h0.requires_grad_(True)
    out = Loop(2, state_noise=0.2)(field, h0, h0, trajectory_at=[0, 1, 2])
    h1, h2 = out.trajectory[1], out.trajectory[2]
    ratio = (h1 - h0).pow(2).mean(-1).sqrt() / h0.pow(2).mean(-1).sqrt()  # (3, 4)
    torch.testing.assert_close(ratio, torch.full_like(ratio, 0.2), rtol=0.05, atol=0)
    assert torch.equal(h2, h1) and torch.equal(out.h, h2)
    assert torch.equal(Loop(1, state_noise=0.2)(field, h0, h0).h, h0)  # one loop: no step between
    (grad,) = torch.autograd.grad(out.h.sum(), h0)
    torch.testing.assert_close(grad, torch.ones_like(grad))
    assert Loop(3, state_noise=0.2).describe() == {"loops": 3, "state_noise": 0.2}
    field.eval()
    assert torch.equal(Loop(3, state_noise=0.2)(field, h0, h0).h, h0)
    with pytest.raises(ValueError, match="state_noise must be a number >= 0, got -1"):
        Loop(2, state_noise=-1)


def test_state_noise_is_a_training_option_that_evaluation_never_builds() -> None:
    from hydra import compose, initialize_config_dir

    from odelm.build import build_integrator

    from conftest import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["model=looped", "objective.depth.state_noise=0.1"])
    assert build_integrator(cfg).state_noise == 0.1
    assert build_integrator(cfg, training=False).state_noise == 0.0
