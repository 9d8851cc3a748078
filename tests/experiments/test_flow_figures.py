"""F8 / F9 of the "flow" study on fabricated run directories: the six solver settings, the spread,
horizons as multiples of the trained one, and the convergence stop's points; the study's config."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import f8_solver_independence as f8  # noqa: E402
import f9_depth_extrapolation as f9  # noqa: E402
import reproduce  # noqa: E402
from fabricate import fabricate  # noqa: E402


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return fabricate(tmp_path_factory.mktemp("flow") / "root")


def read(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_setting_names() -> None:
    assert f8.setting_name("euler", 0.5) == "euler 0.5" and f8.setting_name("rk4", 1.0) == "rk4 1"
    assert f8.setting_name("dopri5", 1e-3) == "dopri5 1e-3" and f8.setting_name("dopri5", 1e-05) == "dopri5 1e-5"


def test_f8_has_the_six_settings_per_arm_and_their_spread(tree: Path, tmp_path: Path) -> None:
    f8.main(["--root", str(tree), "--out", str(tmp_path)])
    rows = read(tmp_path / "f8_solver_independence.csv")
    arms = set(reproduce.FLOW_ARMS)
    for arm in arms:
        mine = [r for r in rows if r["arm"] == arm]
        settings = [r["setting"] for r in mine if r["setting"] != "spread"]
        assert settings == list(f8.SETTINGS)  # rk4 1.0 is evaluated but is not one of the six
        means = [float(r["accuracy_trained_mean"]) for r in mine if r["setting"] != "spread"]
        (spread,) = [float(r["accuracy_trained_mean"]) for r in mine if r["setting"] == "spread"]
        assert spread == pytest.approx(max(means) - min(means))


def test_f9_horizons_are_multiples_of_the_trained_one(tree: Path, tmp_path: Path) -> None:
    f9.main(["--root", str(tree), "--out", str(tmp_path)])
    rows = read(tmp_path / "f9_depth_extrapolation.csv")
    horizons = [r for r in rows if r["solver"] in ("euler", "dopri5")]
    assert {r["setting"] for r in horizons} == {"x1", "x2", "x4"}
    assert {float(r["multiple_mean"]) for r in horizons} == {1.0, 2.0, 4.0}
    assert {r["group"] for r in rows} == {"trained", "d4", "d5"}  # trained on 1-3, tested on 1-5
    assert {r["setting"] for r in rows if r["solver"] == "converged"} == {"converged 0.01", "converged 0.001"}
    assert f9.trained_horizon({"solver": {"integrator": "loop", "loops": 4}}) == 4.0
    assert f9.trained_horizon({"solver": {"integrator": "ode", "t_end": 6.0}}) == 6.0


def test_the_flow_plans_solve_every_arm_as_an_ode_on_the_issue_settings() -> None:
    plans = {p.name: p for p in reproduce.EVAL_PLANS if p.study == "flow"}
    assert set(plans) == {"flow_fixed_grid", "flow_tolerance", "flow_horizon", "flow_converged"}
    for plan in plans.values():
        assert "model.integrator=ode" in plan.overrides and set(plan.arms) == set(reproduce.FLOW_ARMS)
    assert "sweep.values=[1e-2,1e-3,1e-5]" in plans["flow_tolerance"].overrides
    assert "sweep.values=[4.0,8.0,16.0]" in plans["flow_horizon"].overrides  # x1, x2, x4 of t_end = 4
    ode_exits = [p for p in reproduce.EVAL_PLANS if p.name.startswith("exit_ode")]
    assert all(p.per_example for p in ode_exits) and plans["flow_converged"].per_example  # same examples
    assert reproduce.PER_EXAMPLE_N_TEST == {"smoke": 20, "cpu": 50}  # full test sets at paper scale
    static = next(p for p in ode_exits if p.name == "exit_ode_static")
    assert "exit=static" in static.overrides and "exit.mode=per_example" in static.overrides
