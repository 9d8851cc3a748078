"""Honest NFE counters in metrics.csv (forward: every field evaluation of the step; backward: the
vector-Jacobian products of .backward() only; probe: the RNODE Hutchinson products, apart), and
RNODE penalties blind to right-padding."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from odelm import train
from odelm.depth import DepthPlan, Loop, ODESolve
from odelm.model import LatentLM, ModelConfig
from odelm.tasks import CharTokenizer

from conftest import SMALL, compose_config

# rk4 with step 1 over t_end 4: 4 steps of 4 evaluations, 16 field calls per forward solve
RK4 = ["model=ode", "solver=rk4", "solver.step_size=1.0", "solver.t_end=4"]
STEPS = ["trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.log_every_n_steps=1"]


def train_rows(tmp_path: Path, *overrides: str) -> list[dict]:
    record = train.run(compose_config("train", SMALL + STEPS + list(overrides)), run_dir=tmp_path)
    with open(Path(record["run_dir"]) / "metrics.csv") as f:
        return [r for r in csv.DictReader(f) if r["split"] == "train"]


def counts(row: dict) -> tuple[int, int, int]:
    return int(row["nfe_forward"]), int(row["nfe_backward"]), int(row.get("nfe_probe") or 0)


def test_rnode_probe_is_counted_apart_from_backward(tmp_path: Path) -> None:
    """Direct back-propagation takes one VJP per recorded evaluation (16); the Hutchinson probe takes
    its own 16 inside the forward solve. (Before: 32 backward for 16 forward, no probe column.)"""
    logged = train_rows(tmp_path, "objective=rnode", *RK4)
    assert logged and all(counts(r) == (16, 16, 16) for r in logged), [counts(r) for r in logged]


def test_rnode_adjoint_counts(tmp_path: Path) -> None:
    """Adjoint: the backward solve re-evaluates the field 16 times, one VJP each (backward) and one
    probe each (besides the forward solve's 16 probes)."""
    logged = train_rows(tmp_path, "objective=rnode", *RK4, "solver.adjoint=true")
    assert logged and all(counts(r) == (16, 16, 32) for r in logged), [counts(r) for r in logged]


def test_reflow_field_call_counts_as_forward(tmp_path: Path) -> None:
    """fm_reflow evaluates the field once more on the chord: 16 + 1 forward, each back-propagated.
    (Before: forward showed the solve's 16 only while backward counted 17.)"""
    logged = train_rows(tmp_path, "objective=fm_reflow", *RK4)
    assert logged and all(counts(r) == (17, 17, 0) for r in logged), [counts(r) for r in logged]


def test_plain_cross_entropy_counts(tmp_path: Path) -> None:
    logged = train_rows(tmp_path, *RK4)
    assert logged and all(counts(r) == (16, 16, 0) for r in logged)


def _position_probe(x: torch.Tensor) -> torch.Tensor:
    """A Hutchinson probe that depends on (position, channel) only, so an example draws the same probe
    alone and inside a longer batch."""
    _, L, C = x.shape
    grid = torch.arange(L * C, dtype=x.dtype, device=x.device).view(1, L, C)
    return torch.sin(0.37 * grid + 0.1).expand_as(x).clone()


def test_rnode_penalty_is_the_same_alone_and_padded_in_a_batch(monkeypatch) -> None:
    """Padding must not reach an example's kinetic or Jacobian penalty: not through the means (masked
    over real positions) nor through attention (the probe is zero at padding). Before: the padded copy
    averaged zeros-and-junk over padding and leaked its probe back through attention."""
    monkeypatch.setattr(torch, "randn_like", _position_probe)
    torch.manual_seed(0)
    solver = ODESolve("rk4", step_size=0.5, t_end=2.0)
    plan = DepthPlan(regularisers=("kinetic", "jacobian"))
    model = LatentLM(ModelConfig(vocab_size=12, d_model=16, n_heads=2), solver).double().train()
    pad = CharTokenizer.PAD
    short = torch.tensor([[1, 5, 6, 7, 2, 8]])  # BOS prompt SEP answer
    long = torch.tensor([[1, 9, 4, 5, 6, 7, 10, 2, 11, 3]])
    padded = torch.cat([short, torch.full((1, long.shape[1] - short.shape[1]), pad)], dim=1)
    alone = model(short, plan=plan).depth.regularisers
    batch = model(torch.cat([padded, long]), plan=plan).depth.regularisers
    long_alone = model(long, plan=plan).depth.regularisers
    for name in ("kinetic", "jacobian"):
        torch.testing.assert_close(batch[name][0], alone[name][0], rtol=1e-10, atol=0)
        torch.testing.assert_close(batch[name][1], long_alone[name][0], rtol=1e-10, atol=0)
        assert alone[name][0] > 0


def test_every_integrator_takes_a_mask() -> None:
    from conftest import LinearField

    h0 = torch.randn(2, 3, 4, dtype=torch.float64)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    loop = Loop(3)(LinearField(), h0, h0, mask=mask)
    assert torch.equal(loop.h, Loop(3)(LinearField(), h0, h0).h)  # a loop averages nothing: mask unused
    solver = ODESolve("euler", step_size=1.0, t_end=1.0)
    field = LinearField(-1.0)
    out = solver(field, h0, h0, mask=mask, plan=DepthPlan(regularisers=("kinetic",)))
    # one Euler step: kinetic = mean over real positions of mean_C (a h0)²
    expected = torch.stack([h0[0, :2].pow(2).mean(), h0[1].pow(2).mean()])
    torch.testing.assert_close(out.regularisers["kinetic"], expected)


@pytest.mark.parametrize("name", ["kinetic", "jacobian"])
def test_mask_none_is_every_position(name: str) -> None:
    torch.manual_seed(1)
    solver = ODESolve("rk4", step_size=1.0, t_end=1.0)
    plan = DepthPlan(regularisers=(name,))
    model = LatentLM(ModelConfig(vocab_size=12, d_model=16, n_heads=2), solver).double().train()
    h0 = model.encode(torch.tensor([[1, 5, 6, 2]]))
    torch.manual_seed(3)
    full = solver(model.field, h0, h0, mask=torch.ones(1, 4, dtype=torch.bool), plan=plan).regularisers[name]
    torch.manual_seed(3)
    none = solver(model.field, h0, h0, plan=plan).regularisers[name]
    torch.testing.assert_close(full, none, rtol=1e-12, atol=0)
