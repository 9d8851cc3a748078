"""Every objective recipe trains a few steps from a composed command line; recipes combine by
merging; bad objective settings fail before training with a message that names them."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from odelm import train
from odelm.build import ConfigError

from conftest import CONF_DIR, SMALL, compose_config

STEPS = ["trainer.max_steps=6", "trainer.val_check_interval=5", "trainer.log_every_n_steps=3"]


def train_run(path: Path, *overrides: str) -> dict:
    return train.run(compose_config("train", SMALL + STEPS + list(overrides)), run_dir=path)


def rows(record: dict) -> list[dict]:
    return [r for r in csv.DictReader((Path(record["run_dir"]) / "metrics.csv").open()) if r["split"] == "train"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> dict:
    return train_run(tmp_path_factory.mktemp("teacher"), "model=looped", "model.exit_gate=true",
                     "objective=ouro_stage1")


RECIPES = {
    "ce": ["model=ode"],
    "ce_all_steps": ["model=looped"],
    "fm_reflow": ["model=ode"],
    "kinetic": ["model=ode"],
    "rnode": ["model=ode", "solver=rk4", "solver.step_size=1.0"],
    "steer": ["model=ode"],
    "huginn": ["model=looped"],
    "ouro_stage1": ["model=looped", "model.exit_gate=true"],
    "random_solver": ["model=ode", "solver=euler"],
    "horizons": ["model=looped"],
    "progressive": ["model=ode", "solver=euler", "solver.step_size=0.5"],
    "fixed_point": ["model=looped"],
    "shortcut": ["model=ode", "solver=euler", "model.step_conditioned=true"],
    "converge": ["model=ode", "solver=euler"],
    "path_independence": ["model=ode", "solver=euler"],
}


def test_every_recipe_has_a_test() -> None:
    recipes = {p.stem for p in Path(CONF_DIR, "objective").glob("*.yaml") if not p.stem.startswith("_")}
    assert recipes == set(RECIPES) | {"fm_distill", "fm_endpoint", "ouro_stage2"}


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipe_trains_and_logs_each_term(recipe: str, tmp_path: Path) -> None:
    record = train_run(tmp_path, f"objective={recipe}", *RECIPES[recipe])
    assert record["train_steps"] == 6 and 0.0 <= record["accuracy"] <= 1.0
    logged = rows(record)
    for term in record["objective"]["terms"]:
        assert all(r[term] != "" and float(r[term]) >= 0 for r in logged), term


@pytest.mark.parametrize("term", ["fm_distill", "fm_endpoint"])
def test_distillation_trains_without_solving_and_keeps_the_teacher_shell(term: str, teacher: dict,
                                                                         tmp_path: Path) -> None:
    record = train_run(tmp_path, "model=ode", f"objective={term}", f"objective.teacher={teacher['checkpoint']}",
                       "objective.init_from_teacher=false")
    assert all(int(r["nfe_forward"]) == 1 and r["accuracy"] == "" for r in rows(record))  # one field call, no solve
    t = torch.load(teacher["checkpoint"], weights_only=False)["state_dict"]
    s = torch.load(record["checkpoint"], weights_only=False)["state_dict"]
    assert torch.equal(s["model.embed.weight"], t["model.embed.weight"])  # copied and never trained
    assert torch.equal(s["model.head.weight"], t["model.head.weight"])
    assert not torch.equal(s["model.field.blocks.0.attn.qkv.weight"], t["model.field.blocks.0.attn.qkv.weight"])


def test_stage2_changes_only_the_gate(teacher: dict, tmp_path: Path) -> None:
    record = train_run(tmp_path, "model=looped", "model.exit_gate=true", "objective=ouro_stage2",
                       f"objective.teacher={teacher['checkpoint']}")
    t = torch.load(teacher["checkpoint"], weights_only=False)["state_dict"]
    s = torch.load(record["checkpoint"], weights_only=False)["state_dict"]
    changed = {k for k in t if not torch.equal(t[k], s[k])}
    assert changed == {"model.exit_gate.weight", "model.exit_gate.bias"}


def test_recipes_combine(tmp_path: Path) -> None:
    record = train_run(tmp_path, "model=ode", "objective=[fm_reflow,kinetic,steer]", "objective.terms.fm_reflow=0.5")
    assert record["objective"]["terms"] == {"ce": 1.0, "fm_reflow": 0.5, "kinetic_energy": 0.1}
    assert record["objective"]["depth"]["steer_b"] == 0.5 and "steer_b" not in record["solver"]  # the objective's
    assert {"fm_reflow", "kinetic_energy"} <= set(rows(record)[0])


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["model=ode", "objective=fm_distill"], r"need objective.teacher=PATH"),
        (["model=ode", "objective=fm_distill", "objective.teacher=/nonexistent.ckpt"],
         "objective.teacher '/nonexistent.ckpt' is not a file"),
        (["objective=ce", "objective.init_from_teacher=true"], "init_from_teacher=true needs objective.teacher"),
        (["model=looped", "objective=ouro_stage1"], "add model.exit_gate=true"),
        (["model=looped", "objective=kinetic"], "use model=ode"),
        (["model=looped", "objective=steer"], "steer_b=0.5 .* needs model=ode"),
        (["model=ode", "objective=huginn"], "need model=looped"),
        (["model=looped", "model.exit_gate=true", "objective=ouro_stage1", "objective.options.ouro_stage1.beta=-1"],
         "beta must be a number >= 0, got -1"),
        (["model=ode", "objective=steer", "objective.depth.steer_b=4"], r"steer_b must be a number in \[0, t_end"),
        (["model=looped", "objective=huginn", "objective.depth.bptt_steps=0"], "bptt_steps must be an integer >= 1"),
        (["model=looped", "objective=random_solver"], r"objective.depth.methods=\['euler', 'midpoint', 'rk4'\] .* needs model=ode"),
        (["model=ode", "objective=random_solver", "objective.depth.methods=[rk5]"], "methods \\['rk5'\\] are not solver methods"),
        (["model=ode", "objective=random_solver", "objective.depth.steps=[3,2]"], "steps must be \\[lo, hi\\]"),
        (["model=ode", "objective=ce", "objective.depth.steps=[2,4]"], "steps needs objective.depth.methods"),
        (["model=ode", "objective=[horizons,steer]"], "both choose the depth plan's \\['t_end'\\]"),
        (["model=ode", "objective=shortcut"], "needs a step-conditioned field: add model.step_conditioned=true"),
        (["model=ode", "objective=shortcut", "objective.options.shortcut.stop_grad=both"], "stop_grad must be one of"),
        (["model=looped", "objective=horizons", "objective.options.horizon_ce.max_factor=1"], "max_factor must be a number > 1"),
    ],
)
def test_bad_objective_settings_fail_before_training(overrides: list[str], match: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=match):
        train_run(tmp_path, *overrides)
    assert not (tmp_path / "metrics.csv").exists()


def test_teacher_of_another_vocabulary_is_refused(teacher: dict, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="another vocabulary"):
        train_run(tmp_path, "task=multihop", "task.train_difficulties=[1]", "task.test_difficulties=[1]", "model=ode",
                  "objective=fm_distill", f"objective.teacher={teacher['checkpoint']}")


@pytest.mark.parametrize(
    "recipe,model,setting,check",
    [
        ("huginn", "model=looped", "model.loops=1", lambda r: r["solver"] == {"integrator": "loop", "loops": 1}),
        ("steer", "model=ode", "solver.t_end=0.5", lambda r: r["solver"]["t_end"] == 0.5 and "steer_b" not in r["solver"]),
    ],
)
def test_training_only_depth_options_do_not_constrain_evaluation(recipe: str, model: str, setting: str, check,
                                                                  tmp_path: Path) -> None:
    """A Huginn checkpoint evaluates at 1 loop and a STEER one (b = 0.5) at t_end = 0.5: the random
    depth is a training device, so its constraints (mean loops >= 2, b < t_end) must not apply."""
    from odelm import eval as odelm_eval

    record = train_run(tmp_path / "train", f"objective={recipe}", model)
    overrides = [f"ckpt={record['checkpoint']}", setting]
    evaluated = odelm_eval.run(compose_config("eval", overrides), run_dir=tmp_path / "eval", overrides=overrides)
    assert evaluated["status"] == "ok" and check(evaluated)
