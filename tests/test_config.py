"""Every config group option composes and builds; every bad value fails before training, naming it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from odelm import eval as odelm_eval
from odelm import train
from odelm.build import ConfigError, build_data, build_integrator, build_model, build_objective, resolve_positions

from conftest import CONF_DIR, SMALL, SMALL_RUN, compose_config

GROUPS = ["model", "solver", "task", "objective", "trainer", "callbacks", "logger"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml") if not p.stem.startswith("_"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes_and_builds(group: str, option: str, tmp_path: Path) -> None:
    # sizes every task can supply as disjoint splits (modular_chain mod 7 has 147 one-operation prompts)
    overrides = [f"{group}={option}", "task.n_test_per_difficulty=20"]
    if group == "solver":
        overrides.append("model=ode")
    if option.startswith("sudoku"):  # generated puzzle by puzzle (the hard generator ~0.1 s each): a few suffice here
        overrides += ["task.n_train=30", "data.n_val_per_difficulty=5"]
    if option == "jsonl":
        data, test = tmp_path / "d.jsonl", tmp_path / "t.jsonl"
        data.write_text('{"prompt": "ab", "answer": "c", "difficulty": 1}\n{"prompt": "ba", "answer": "c", "difficulty": 1}\n')
        test.write_text('{"prompt": "bb", "answer": "c", "difficulty": 1}\n')
        overrides += [f"task.train={data}", f"task.test={test}", "data.n_val_per_difficulty=1"]
    cfg = compose_config("train", overrides)
    data = build_data(cfg, seed=0)
    resolve_positions(cfg, data, data.tokenizer)
    integrator = build_integrator(cfg)
    model = build_model(cfg, data.tokenizer.vocab_size, integrator)
    build_objective(cfg)
    assert model.num_params() > 0
    if group == "solver":  # the method (and grid step) the option's file states
        stated = OmegaConf.load(Path(CONF_DIR) / "solver" / f"{option}.yaml")
        assert integrator.method == stated.method
        assert integrator.step_size == stated.get("step_size", integrator.step_size)
    if group in ("trainer", "callbacks", "logger"):  # instantiated from their _target_s
        import lightning as L

        callbacks = train.build_callbacks(cfg, tmp_path / "checkpoints")
        loggers = train.build_loggers(cfg, tmp_path)
        kwargs = {k: v for k, v in train.trainer_kwargs(cfg).items() if k != "_target_"}
        trainer = L.Trainer(**kwargs, callbacks=callbacks, logger=loggers or False, default_root_dir=str(tmp_path))
        assert trainer.max_steps == cfg.trainer.max_steps


def test_unknown_group_options_are_named() -> None:
    for overrides, name in ((["model=ode", "solver=rk45"], "rk45"), (["task=kakuro"], "kakuro"), (["model=rnn"], "rnn")):
        with pytest.raises(MissingConfigException, match=name):
            compose_config("train", overrides)


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["model=ode", "solver.rtol=0"], "solver.rtol must be a finite number > 0, got 0"),
        (["model=ode", "solver.atol=-1e-3"], "solver.atol must be a finite number > 0, got -0.001"),
        (["model=ode", "solver.t_end=0"], "solver.t_end must be a finite number > 0, got 0"),
        (["model=ode", "solver.method=rk45"], "unknown solver method 'rk45'"),
        (["model=ode", "solver=rk4", "solver.step_size=null"], "needs solver.step_size"),
        (["model.loops=0"], "loops must be an integer >= 1, got 0"),
        (["model.integrator=rnn"], "unknown model.integrator 'rnn'"),
        (["task.name=kakuro"], "unknown task 'kakuro'"),
        (["task.train_difficulties=[]"], "task.train_difficulties must be a non-empty list"),
        (["task.params.modulus=1"], "modulus must be an integer >= 2, got 1"),
        (["trainer.max_steps=0"], "trainer.max_steps must be an integer >= 1, got 0"),
        (["optim.lr=-1"], "optim.lr must be > 0, got -1"),
        (["optim.schedule=epochs"], "optim.schedule must be steps or time, got 'epochs'"),
        (["model=looped", "objective.depth.state_noise=-0.1"], "state_noise must be a number >= 0, got -0.1"),
        (["model=ode", "objective.depth.state_noise=0.1"], r"state_noise=0.1 \(noise on the loop's state\) needs model=looped"),
        (["optim.schedule=time"], "optim.schedule=time .* set trainer.max_time_minutes"),
        (["optim.grad_ema={alpha:1.0,gain:2.0}"], r"optim.grad_ema.alpha must be a number in \[0, 1\), got 1.0"),
        (["optim.grad_ema={alpha:0.98,gain:-1}"], "optim.grad_ema.gain must be a finite number >= 0, got -1"),
        (["optim.grad_ema=0.98"], r"optim.grad_ema must be null or \{alpha: A, gain: G\}, got 0.98"),
        (["model.dropout=1.5"], r"model.dropout must be a number in \[0, 1\), got 1.5"),
        (["model.state_decay=-0.5"], "model.state_decay must be a finite number >= 0, got -0.5"),
        (["model=ode", "solver=dopri5", "model.dropout=0.1"], r"model.dropout=0.1 .* adaptive solver \(dopri5\)"),
        (["model=ode", "objective=random_solver", "objective.depth.methods=[euler,bosh3]", "model.dropout=0.1"],
         r"adaptive solver \(bosh3\)"),
        (["model=ode", "solver.adjoint=true", "model.dropout=0.1"], r"model.dropout=0.1 with solver.adjoint=true"),
        (["data.curriculum.enabled=true", "data.curriculum.min_delta=0"], "min_delta must be in .* got 0"),
        (["+objective.terms.no_such_term=0.1"], r"unknown objective term\(s\) \['no_such_term'\]"),
        (["ckpt_path=/nonexistent/last.ckpt"], "ckpt_path '/nonexistent/last.ckpt' is not a file"),
    ],
)
def test_bad_values_fail_before_training(overrides: list[str], match: str, tmp_path: Path) -> None:
    cfg = compose_config("train", SMALL + overrides)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=match):
        train.run(cfg, run_dir=tmp_path)
    assert time.perf_counter() - start < 5
    assert not (tmp_path / "checkpoints").exists()


def jsonl_cfg(tmp_path: Path, train_text: str | None, test_text: str = '{"prompt": "1+1", "answer": "2"}\n'):
    train_path = write(tmp_path / "train.jsonl", train_text) if train_text is not None else str(tmp_path / "none.jsonl")
    test_path = write(tmp_path / "test.jsonl", test_text)
    return compose_config("train", SMALL_RUN + ["task=jsonl", f"task.train={train_path}", f"task.test={test_path}"])


@pytest.mark.parametrize(
    "train_text,match",
    [
        (None, "none.jsonl"),
        ("", "train.jsonl"),
        ('{"prompt": "1+1", "answer": "2"}\n{"prompt": "1+2" "answer": "3"}\n', r"train.jsonl:2"),
        ('{"prompt": "1+1"}\n', r"train.jsonl:1.*answer"),
        ('{"prompt": "1+1", "answer": 2}\n', r"train.jsonl:1.*answer"),
        ('{"prompt": "1+1", "answer": "2", "difficulty": "hard"}\n', r"train.jsonl:1.*difficulty"),
    ],
)
def test_bad_jsonl_fails_before_training(tmp_path: Path, train_text, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        train.run(jsonl_cfg(tmp_path, train_text), run_dir=tmp_path / "run")


def test_jsonl_without_files_names_the_key() -> None:
    cfg = compose_config("train", SMALL_RUN + ["task=jsonl"])
    with pytest.raises(ConfigError, match="task=jsonl needs task.train=FILE"):
        build_data(cfg, seed=0)


def test_checkpoint_on_text_outside_its_vocabulary(tmp_path: Path) -> None:
    lines = "".join(json.dumps({"prompt": f"{a}+{b}", "answer": str(a + b), "difficulty": 1}) + "\n"
                    for a in range(4) for b in range(4))
    test_lines = "".join(json.dumps({"prompt": f"{a}-{b}", "answer": str(a - b), "difficulty": 1}) + "\n"
                         for a in range(4) for b in range(4))
    cfg = jsonl_cfg(tmp_path, lines, test_text=test_lines)
    record = train.run(cfg, run_dir=tmp_path / "run")
    other = write(tmp_path / "other.jsonl", '{"prompt": "7*9", "answer": "63"}\n')
    given = [f"ckpt={record['checkpoint']}", f"task.test={other}"]
    with pytest.raises(ConfigError, match=r"characters '\*79' outside the vocabulary"):
        odelm_eval.run(compose_config("eval", given), run_dir=tmp_path / "eval", overrides=given)


def test_command_line_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    done = subprocess.run(
        [sys.executable, "-m", "odelm.train", "model=ode", "solver.rtol=-1", "task.n_test_per_difficulty=20",
         f"hydra.run.dir={tmp_path}/r"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("odelm")]
    assert errors == ["odelm: error: solver.rtol must be a finite number > 0, got -1"]
    assert "Traceback" not in done.stderr


def test_learned_positions_take_their_length_from_the_data_and_refuse_longer_inputs(tmp_path: Path) -> None:
    def lines(same: bool) -> str:
        return "".join(json.dumps({"prompt": f"{a}+{b}", "answer": str(a + b), "difficulty": 1}) + "\n"
                       for a in range(5) for b in range(5) if (a == b) == same)

    cfg = jsonl_cfg(tmp_path, lines(False), test_text=lines(True))
    assert cfg.model.pos_embedding == "auto" and cfg.model.max_len is None  # the default recipe
    record = train.run(cfg, run_dir=tmp_path / "run")
    # no test input is longer than a trained one, so auto chose the learned table, as long as the data's inputs
    assert record["model"]["pos_embedding"] == "learned"
    assert record["model"]["max_len"] == 6  # BOS a + b SEP answer (EOS is never an input)
    longer = write(tmp_path / "longer.jsonl", '{"prompt": "1+2+3", "answer": "6"}\n')
    given = [f"ckpt={record['checkpoint']}", f"task.test={longer}"]
    with pytest.raises(ConfigError, match="model.max_len=6 is shorter than the longest input"):
        odelm_eval.run(compose_config("eval", given), run_dir=tmp_path / "eval", overrides=given)


@pytest.mark.parametrize("test_difficulties,expected", [("[1,2]", "learned"), ("[1,2,3]", "none")])
def test_auto_positions_are_learned_only_without_longer_test_inputs(test_difficulties: str, expected: str) -> None:
    """A learned row for a position no training input reaches is untrained: when the test split holds
    longer inputs (more operations than trained), auto falls back to rotary positions alone."""
    cfg = compose_config("train", [*SMALL, f"task.test_difficulties={test_difficulties}"])
    data = build_data(cfg, seed=0)
    resolve_positions(cfg, data, data.tokenizer)
    assert cfg.model.pos_embedding == expected
    assert (cfg.model.max_len is not None) == (expected == "learned")
    build_model(cfg, data.tokenizer.vocab_size, build_integrator(cfg))  # builds once resolved


def test_the_ode_default_is_the_euler_grid_and_any_solver_replaces_it() -> None:
    """model=ode trains on an Euler grid of step 0.5 (the recipe measured to learn in a CPU budget);
    solver=X still replaces method and step, and the looped model carries no solver at all."""
    ode = compose_config("train", ["model=ode"])
    assert (ode.solver.method, ode.solver.step_size, ode.solver.t_end) == ("euler", 0.5, 4.0)
    assert build_integrator(ode).step_size == 0.5
    adaptive = compose_config("train", ["model=ode", "solver=dopri5"])
    assert (adaptive.solver.method, adaptive.solver.step_size) == ("dopri5", None)
    assert "solver" not in compose_config("train", ["model=looped"])


def test_the_default_curriculum_cannot_stall_and_the_studies_keep_theirs_off(tmp_path: Path) -> None:
    """The default recipe trains with the accuracy-gated curriculum and a finite patience (a level that
    stopped improving is unlocked past, not waited on forever); every study keeps the recipe it was
    measured with."""
    cfg = compose_config("train", [])
    assert cfg.data.curriculum.enabled is True
    assert isinstance(cfg.data.curriculum.patience, int) and cfg.data.curriculum.patience >= 1
    data = tmp_path / "d.jsonl"
    data.write_text("".join(f'{{"prompt": "{p}", "answer": "c", "difficulty": {d}}}\n'
                            for d, p in ((1, "ab"), (1, "ba"), (2, "abab"), (2, "baba"), (1, "aa"), (2, "bbbb"))))
    test = tmp_path / "t.jsonl"
    test.write_text('{"prompt": "bb", "answer": "c", "difficulty": 1}\n')
    jsonl = compose_config("train", ["task=jsonl", f"task.train={data}", f"task.test={test}",
                                     "data.n_val_per_difficulty=1"])
    from odelm.build import build_curriculum

    built = build_data(jsonl, seed=0)
    curriculum = build_curriculum(jsonl, built.train, built.val)
    assert curriculum is not None and curriculum.patience == cfg.data.curriculum.patience
    for study in sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml")):
        assert compose_config("train", [f"experiment={study}"]).data.curriculum.enabled is False, study


def test_state_decay_reaches_the_field_and_a_config_without_it_builds_the_plain_field() -> None:
    """model.state_decay is read from the run's config, and a stored config from before the key (a
    checkpoint's) builds a field without the leak, as it was trained."""
    cfg = compose_config("train", SMALL + ["model.state_decay=0.25", "model.pos_embedding=none"])
    assert build_model(cfg, 10, build_integrator(cfg, training=False)).field.state_decay == 0.25
    old = OmegaConf.create(OmegaConf.to_container(cfg))
    del old.model["state_decay"]
    assert build_model(old, 10, build_integrator(old, training=False)).field.state_decay == 0.0


def test_the_leaky_recipe_is_the_measured_command_line() -> None:
    """arm=flow/leaky is the leak + progressive x4 + other-end path independence recipe as it was run
    from the command line: merging the two objectives must not leave path independence's CE weight of
    1.0, and the field and objective it builds carry the leak and both options."""
    cfg = compose_config("train", SMALL + ["arm=flow/leaky", "model.pos_embedding=none"])
    by_hand = compose_config("train", SMALL + ["model.pos_embedding=none", "model=ode", "model.state_decay=0.05",
                                               "objective=[progressive,path_independence]",
                                               "objective.options.progressive.max_factor=4", "objective.terms.ce=0.5",
                                               "objective.options.path_independence.start=other_end"])
    assert OmegaConf.to_container(cfg.objective) == OmegaConf.to_container(by_hand.objective)
    assert OmegaConf.to_container(cfg.model) == OmegaConf.to_container(by_hand.model)
    assert cfg.solver == by_hand.solver and (cfg.solver.method, cfg.solver.step_size) == ("euler", 0.5)
    assert dict(cfg.objective.terms) == {"ce": 0.5, "progressive": 0.5, "path_independence": 0.5}
    terms = build_objective(cfg).terms
    assert terms["progressive"][0].max_factor == 4 and terms["path_independence"][0].start == "other_end"
    assert build_model(cfg, 10, build_integrator(cfg, training=False)).field.state_decay == 0.05


def test_random_euler_steps_keep_the_leaky_recipe() -> None:
    """The documented variant (arm=flow/leaky with objective=[random_solver,progressive,path_independence]
    and Euler-only draws) keeps the arm's CE weight, options and leak (random_solver's ce 1.0 must not win)
    and draws only Euler steps between t_end/lo and t_end/hi."""
    cfg = compose_config("train", SMALL + ["arm=flow/leaky", "model.pos_embedding=none",
                                           "objective=[random_solver,progressive,path_independence]",
                                           "objective.depth.methods=[euler]", "objective.depth.steps=[4,8]"])
    assert dict(cfg.objective.terms) == {"ce": 0.5, "progressive": 0.5, "path_independence": 0.5}
    objective = build_objective(cfg)
    assert objective.terms["progressive"][0].max_factor == 4
    assert objective.terms["path_independence"][0].start == "other_end"
    assert cfg.model.state_decay == 0.05 and cfg.solver.t_end == 4.0
    draws = [objective.depth.draw(cfg.solver.t_end) for _ in range(200)]
    assert {d["method"] for d in draws} == {"euler"}
    assert {d["step_size"] for d in draws} == {4.0 / n for n in range(4, 9)}
