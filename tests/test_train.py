"""End-to-end: every model trains from a composed config, writes its run directory, is re-evaluated
at other solver settings, resumes, logs to wandb offline; a NaN loss keeps the last checkpoint."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from odelm import eval as odelm_eval
from odelm import train
from odelm.lit import NonFiniteLossError

from conftest import SMALL, compose_config

REQUIRED = {"model", "task", "solver", "params", "accuracy", "accuracy_by_difficulty", "nfe_forward", "loss",
            "n_examples", "train_steps", "train_seconds", "checkpoint"}


def train_run(tmp_path: Path, *overrides: str) -> dict:
    cfg = compose_config("train", SMALL + list(overrides))
    return train.run(cfg, run_dir=tmp_path / "run")


def eval_run(tmp_path: Path, ckpt: str, *overrides: str, name: str = "eval") -> dict:
    given = [f"ckpt={ckpt}", *overrides]
    cfg = compose_config("eval", given)
    return odelm_eval.run(cfg, run_dir=tmp_path / name, overrides=given)


@pytest.fixture(scope="module")
def ode_run(tmp_path_factory) -> dict:
    return train_run(tmp_path_factory.mktemp("ode"), "model=ode", "solver=dopri5", "solver.rtol=1e-3",
                     "solver.atol=1e-3", "solver.t_end=2")


@pytest.fixture(scope="module")
def looped_run(tmp_path_factory) -> dict:
    return train_run(tmp_path_factory.mktemp("looped"), "model=looped", "model.loops=2")


def test_run_directory_schema(ode_run: dict) -> None:
    run_dir = Path(ode_run["run_dir"])
    record = json.loads((run_dir / "metrics.json").read_text())
    assert REQUIRED <= set(record)
    assert record["solver"]["method"] == "dopri5" and record["solver"]["t_end"] == 2.0
    assert record["train_steps"] == 20 and record["n_examples"] == 3 * 8
    assert set(record["accuracy_by_difficulty"]) == {"1", "2", "3"}
    assert record["nfe_forward"] >= 8  # dopri5: 2 to start + 6 per step
    assert Path(record["checkpoint"]).is_file()
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    train_rows = [r for r in rows if r["split"] == "train"]
    assert [int(r["step"]) for r in train_rows] == [5, 10, 15, 20]
    for column in ("loss", "nfe_forward", "nfe_backward", "lr", "wall_time", "ce"):
        assert all(r[column] != "" for r in train_rows), column
    assert any(r["split"] == "val" for r in rows)
    resolved = (run_dir / "config.yaml").read_text()
    assert "dopri5" in resolved and "???" not in resolved


@pytest.mark.parametrize("model", ["looped", "transformer"])
def test_other_models_train(tmp_path: Path, model: str) -> None:
    record = train_run(tmp_path, f"model={model}")
    assert record["model"]["name"] == model and 0.0 <= record["accuracy"] <= 1.0
    assert record["nfe_forward"] == 4


def test_eval_overrides_change_only_the_solver(tmp_path: Path, ode_run: dict) -> None:
    ckpt = ode_run["checkpoint"]
    same = eval_run(tmp_path, ckpt, name="same")
    assert same["accuracy"] == pytest.approx(ode_run["accuracy"]) and same["nfe_forward"] == ode_run["nfe_forward"]
    tight = eval_run(tmp_path, ckpt, "solver.rtol=1e-6", "solver.atol=1e-6", name="tight")
    assert tight["solver"]["rtol"] == 1e-6 and tight["nfe_forward"] > same["nfe_forward"]
    rk4 = eval_run(tmp_path, ckpt, "solver=rk4", "solver.step_size=0.5", name="rk4")
    assert rk4["solver"]["method"] == "rk4" and rk4["solver"]["t_end"] == 2.0  # trained horizon kept
    assert rk4["nfe_forward"] == 4 * 4  # 4 stages × 4 steps of 0.5 over [0, 2]
    longer = eval_run(tmp_path, ckpt, "solver=rk4", "solver.step_size=0.5", "solver.t_end=4", name="long")
    assert longer["nfe_forward"] == 4 * 8


def test_eval_more_loops(tmp_path: Path, looped_run: dict) -> None:
    record = eval_run(tmp_path, looped_run["checkpoint"], "model.loops=8")
    assert record["solver"] == {"integrator": "loop", "loops": 8} and record["nfe_forward"] == 8
    assert record["train_steps"] == looped_run["train_steps"]


def test_looped_checkpoint_solved_as_an_ode(tmp_path: Path, looped_run: dict) -> None:
    """The shared field makes the families interchangeable: euler(step 1) reproduces the loop exactly."""
    record = eval_run(tmp_path, looped_run["checkpoint"], "model.integrator=ode", "solver=euler",
                      "solver.step_size=1.0", "solver.t_end=2")
    assert record["accuracy"] == looped_run["accuracy"] and record["loss"] == pytest.approx(looped_run["loss"])


def test_resume_continues_from_the_checkpoint_in_its_own_directory(tmp_path: Path, looped_run: dict) -> None:
    import shutil

    own = tmp_path / "earlier"
    shutil.copytree(looped_run["run_dir"], own)  # the fixture's run stays as it is for the other tests
    last = own / "checkpoints" / "last.ckpt"
    record = train_run(tmp_path, "model=looped", "model.loops=2", f"ckpt_path={last}", "trainer.max_steps=30")
    assert record["train_steps"] == 30
    assert Path(record["run_dir"]) == own.resolve() and not (tmp_path / "run").exists()
    assert json.loads((own / "metrics.json").read_text())["train_steps"] == 30
    assert record["train_seconds"] > looped_run["train_seconds"]  # accumulated over both parts
    steps = [int(r["step"]) for r in csv.DictReader((own / "metrics.csv").open()) if r["split"] == "train"]
    assert steps == [5, 10, 15, 20, 25, 30]  # each step once


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path, monkeypatch) -> None:
    from odelm.objectives import ce

    original = ce.CrossEntropy.__call__
    calls = {"n": 0}

    def poisoned(self, model, batch, out):
        calls["n"] += 1
        loss = original(self, model, batch, out)
        return loss * float("nan") if calls["n"] > 15 else loss

    monkeypatch.setattr(ce.CrossEntropy, "__call__", poisoned)
    with pytest.raises(NonFiniteLossError, match="training loss became nan at step 15"):
        train_run(tmp_path, "model=looped")
    checkpoint = tmp_path / "run" / "checkpoints" / "step10.ckpt"
    state = torch.load(checkpoint, weights_only=False)
    assert state["global_step"] == 10 and "odelm" in state
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values())
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert (tmp_path / "run" / "metrics.csv").read_text().count("\n") >= 4  # rows logged before the failure


def test_wandb_offline_writes_a_local_run(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    train_run(tmp_path, "model=looped", "logger=wandb", "trainer.max_steps=5")
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))


def _cli(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_command_lines_train_then_eval(tmp_path: Path) -> None:
    run_dir = tmp_path / "cli_run"
    done = _cli("odelm.train", *SMALL, "model=ode", "solver=rk4", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((run_dir / "metrics.json").read_text())
    out_dir = tmp_path / "cli_eval"
    done = _cli("odelm.eval", f"ckpt={record['checkpoint']}", "solver.t_end=8", f"hydra.run.dir={out_dir}",
                cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    evaluated = json.loads((out_dir / "metrics.json").read_text())
    assert evaluated["solver"]["t_end"] == 8.0 and evaluated["nfe_forward"] == 2 * record["nfe_forward"]


def test_compare_trains_each_model_and_writes_the_table(tmp_path: Path) -> None:
    from odelm import compare

    rows = compare.main(["--models", "looped,transformer", "--out", str(tmp_path), *SMALL])
    assert [r["model"] for r in rows] == ["looped", "transformer"]
    assert all(r["status"] == "ok" and r["train_steps"] == 20 for r in rows)
    # acc_train_range covers difficulties 1-2 (trained), acc_harder covers 3
    record = json.loads((tmp_path / "looped" / "metrics.json").read_text())
    by_d = record["accuracy_by_difficulty"]
    assert rows[0]["acc_train_range"] == pytest.approx((by_d["1"] + by_d["2"]) / 2)
    assert rows[0]["acc_harder"] == pytest.approx(by_d["3"])
    table = (tmp_path / "compare.csv").read_text().splitlines()
    assert len(table) == 3 and table[0].startswith("model,status,params")


def test_eval_accepts_a_checkpoint_written_before_a_config_key_existed(tmp_path: Path, looped_run: dict) -> None:
    """Checkpoints store their resolved config; a key added to conf/ later takes today's default."""
    state = torch.load(looped_run["checkpoint"], weights_only=False)
    del state["odelm"]["config"]["model"]["n_layers"]
    del state["odelm"]["config"]["model"]["exit_gate"]
    old = tmp_path / "old.ckpt"
    torch.save(state, old)
    record = eval_run(tmp_path, str(old))
    assert record["accuracy"] == looped_run["accuracy"] and record["model"]["n_layers"] == 4


def test_the_solver_lives_with_the_ode_model(tmp_path: Path, looped_run: dict) -> None:
    """A looped run records no solver (it has none); solver settings on it fail at composition."""
    from hydra.errors import ConfigCompositionException

    assert "solver" not in (Path(looped_run["run_dir"]) / "config.yaml").read_text()
    assert "solver" not in compose_config("train", ["model=transformer"])
    for override in ("solver.rtol=1e-3", "solver=rk4"):
        with pytest.raises(ConfigCompositionException, match="solver"):
            compose_config("train", ["model=looped", override])
    with pytest.raises(odelm_eval.ConfigError, match="solver.rtol applies to ODE models only.*model.integrator=ode"):
        eval_run(tmp_path, looped_run["checkpoint"], "solver.rtol=1e-5")


def test_eval_switching_the_method_keeps_the_trained_solver_settings(tmp_path: Path) -> None:
    trained = train_run(tmp_path, "model=ode", "solver=dopri5", "solver.t_end=2", "solver.max_num_steps=77",
                        "solver.norm=max", "trainer.max_steps=5")
    record = eval_run(tmp_path, trained["checkpoint"], "solver=rk4", "solver.step_size=0.5")
    assert record["solver"]["method"] == "rk4" and record["solver"]["step_size"] == 0.5
    assert (record["solver"]["t_end"], record["solver"]["max_num_steps"], record["solver"]["norm"]) == (2.0, 77, "max")
    euler = eval_run(tmp_path, trained["checkpoint"], "solver=euler", name="euler")  # euler.yaml's own step
    assert euler["solver"]["step_size"] == 1.0 and euler["nfe_forward"] == 2


def test_looped_checkpoint_as_an_ode_integrates_over_its_loops(tmp_path: Path, looped_run: dict) -> None:
    record = eval_run(tmp_path, looped_run["checkpoint"], "model.integrator=ode", "solver=euler")
    assert record["solver"]["t_end"] == 2.0 and record["nfe_forward"] == 2  # model.loops=2, not the default 4
    assert record["accuracy"] == looped_run["accuracy"]


def test_curriculum_with_patience_moves_on_from_a_level_it_has_not_learned(tmp_path: Path) -> None:
    """20 steps, a validation every 10: an untrained model learns no level, yet with patience 1 (and a
    progress bar no reading can clear, min_delta=1) the curriculum trains on both levels by the end,
    and the record says the unlock was forced."""
    record = train_run(tmp_path, "data.curriculum.enabled=true", "data.curriculum.patience=1",
                       "data.curriculum.min_delta=1.0")
    assert record["curriculum_level"] == 2 and record["curriculum_forced"] == [1]
    rows = list(csv.DictReader(open(Path(record["run_dir"]) / "metrics.csv")))
    assert {r["curriculum_level"] for r in rows if r["split"] == "train"} == {"1", "2"}


def test_eval_on_the_validation_split_reproduces_training_validation(tmp_path: Path, tmp_path_factory) -> None:
    """split=val evaluates the validation split (for choosing without reading test): on the final
    checkpoint it gives exactly the run's own final validation accuracy; task.val_difficulties moves it
    to other levels, in training as in evaluation."""
    run = train_run(tmp_path_factory.mktemp("val"), "model=looped", "model.loops=2", "task.val_difficulties=[2,3]",
                    "data.curriculum.enabled=false")  # the curriculum would need level 1 in validation
    assert set(run["val_accuracy_by_difficulty"]) == {"2", "3"}
    record = eval_run(tmp_path, run["checkpoint"], "split=val", name="val")
    assert record["split"] == "val" and record["n_examples"] == run["n_val"] == 8
    assert record["accuracy"] == run["val_accuracy"]
    assert record["accuracy_by_difficulty"] == run["val_accuracy_by_difficulty"]
    assert eval_run(tmp_path, run["checkpoint"], name="test")["split"] == "test"
    other = eval_run(tmp_path, run["checkpoint"], "split=val", "task.val_difficulties=[4]", name="val4")
    assert set(other["accuracy_by_difficulty"]) == {"4"} and other["n_examples"] == 4
    more = eval_run(tmp_path, run["checkpoint"], "split=val", "task.val_difficulties=[4]", "data.n_val_per_difficulty=9",
                    name="val4_more")  # any count at a level the run never trained on
    assert more["n_examples"] == 9
    # where training prompts live (a trained level), validation must be the run's own
    with pytest.raises(odelm_eval.ConfigError, match=r"n_val_per_difficulty=9 differs from the run's 4 at trained level"):
        eval_run(tmp_path, run["checkpoint"], "split=val", "data.n_val_per_difficulty=9", name="bad_n")
    with pytest.raises(odelm_eval.ConfigError, match=r"trained level\(s\) \[1\] were not validation levels of the run"):
        eval_run(tmp_path, run["checkpoint"], "split=val", "task.val_difficulties=[1,2]", name="bad_level")
    with pytest.raises(odelm_eval.ConfigError, match=r"task.test_seed=7 differs from the run's 1234"):
        eval_run(tmp_path, run["checkpoint"], "split=val", "task.test_seed=7", name="bad_seed")
    with pytest.raises(odelm_eval.ConfigError, match="split must be one of .*got 'train'"):
        eval_run(tmp_path, run["checkpoint"], "split=train", name="bad")


def test_validation_at_evaluation_never_holds_a_test_or_training_prompt(tmp_path: Path) -> None:
    """A larger test set at evaluation reaches prompts the run validated on: those are dropped from
    validation (not redrawn, which could draw training prompts), and the rest is the run's own validation."""
    from odelm.build import build_data

    given = ("model=looped", "model.loops=2", "task.params.modulus=3", "task.n_train=64", "trainer.max_steps=2")
    run = train_run(tmp_path, *given)  # mod 3: a prompt space small enough for the splits to meet
    record = eval_run(tmp_path, run["checkpoint"], "split=val", "task.n_test_per_difficulty=12", name="val")
    bigger = build_data(compose_config("train", [*SMALL, *given, "task.n_test_per_difficulty=12"]), seed=0, train=False)
    own = build_data(compose_config("train", SMALL + list(given)), seed=0)
    test_now = {ex.prompt for ex in bigger.test}
    kept = [ex for ex in own.val if ex.prompt not in test_now]
    assert record["val_dropped_test_prompts"] == len(own.val) - len(kept) > 0
    assert record["n_examples"] == len(kept)


def test_best_validation_checkpoint_holds_the_weights_that_were_validated(tmp_path: Path) -> None:
    """callbacks=best_val writes best.ckpt right after a validation: re-evaluated on validation, it gives
    exactly the best logged score (a checkpoint written before its step's validation, as the periodic
    ones are, would be ranked by the previous validation's score)."""
    run = train_run(tmp_path, "model=looped", "model.loops=2", "trainer.max_steps=40", "callbacks=best_val",
                    "callbacks.best_val.monitor=val/loss", "callbacks.best_val.mode=min")
    best = Path(run["run_dir"]) / "checkpoints" / "best.ckpt"
    rows = [r for r in csv.DictReader((Path(run["run_dir"]) / "metrics.csv").open()) if r["split"] == "val"]
    losses = {int(r["step"]): float(r["loss"]) for r in rows}
    assert len(set(losses.values())) > 1  # validation moved, so the choice is a real one
    step = min(losses, key=lambda s: (losses[s], s))
    assert torch.load(best, weights_only=False)["global_step"] == step
    record = eval_run(tmp_path, str(best), "split=val", name="best")
    assert record["loss"] == pytest.approx(losses[step], rel=1e-5)


def test_solving_a_grid_trained_field_another_way_warns(tmp_path: Path, looped_run: dict, caplog) -> None:
    """A field trained on one grid is a model of that grid: evaluating it with another solve says so
    (log and record); its own grid, or a field trained on random grids, does not."""
    grid = train_run(tmp_path, "model=ode", "solver=euler_grid")
    with caplog.at_level("WARNING", logger="odelm.eval"):
        same = eval_run(tmp_path, grid["checkpoint"], name="same")
        assert "off_grid_warning" not in same and "model of that grid" not in caplog.text
        other = eval_run(tmp_path, grid["checkpoint"], "solver=rk4", "solver.step_size=0.5", name="rk4")
        assert "trained on the euler grid of step 0.5 over [0, 4.0]" in other["off_grid_warning"]
        assert "by rk4 (step 0.5, t_end 4.0)" in other["off_grid_warning"]
        assert "model of that grid" in caplog.text
    looped = eval_run(tmp_path, looped_run["checkpoint"], "model.integrator=ode", "solver=dopri5", name="loop")
    assert "trained as a loop of 2 steps" in looped["off_grid_warning"]
    assert "by dopri5 (rtol " in looped["off_grid_warning"] and "step" not in looped["off_grid_warning"].split("by dopri5")[1]
    as_loop = eval_run(tmp_path, looped_run["checkpoint"], "model.integrator=ode", "solver=euler",
                       "solver.step_size=1.0", name="loop_grid")  # Euler of step 1 over [0, T] is the loop
    assert "off_grid_warning" not in as_loop and as_loop["accuracy"] == looped_run["accuracy"]
    drawn = train_run(tmp_path / "rs", "model=ode", "solver=euler_grid", "objective=random_solver")
    assert "off_grid_warning" not in eval_run(tmp_path, drawn["checkpoint"], "solver=dopri5", name="rs")


def test_time_schedule_decays_over_the_wall_clock_cap_not_the_step_count() -> None:
    """optim.schedule=time: the cosine's progress is the Timer's elapsed share of the cap, so the rate reaches
    its floor when the cap fires however few steps were taken, and a warmup is still counted in steps."""
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import Timer

    from odelm.lit import LitLM

    class StoppedClock(Timer):  # a Timer whose elapsed time the test sets
        elapsed = 0.0

        def time_elapsed(self, stage="train"):
            return self.elapsed

    timer = StoppedClock(duration={"minutes": 10})
    lit = LitLM(torch.nn.Linear(2, 2), objective=None, lr=1.0, weight_decay=0.0, betas=(0.9, 0.98),
                warmup_steps=2, max_steps=1_000_000, min_lr_ratio=0.1, schedule="time")
    lit.trainer = trainer = SimpleNamespace(callbacks=[timer], global_step=0)
    rate = lit.configure_optimizers()["lr_scheduler"]["scheduler"].lr_lambdas[0]
    assert rate(0) == pytest.approx(0.5)  # warmup: by steps
    timer.elapsed = 60.0
    lit.on_train_batch_start(None, 0)
    assert lit.time_progress == 0.0  # still warming up: the cosine has not started
    seen = []
    trainer.global_step = 2  # the warm-up ended at 20% of the cap: the cosine runs over the other 80%
    for share in (0.2, 0.6, 1.0, 1.5):
        timer.elapsed = share * 600
        lit.on_train_batch_start(None, 0)
        seen.append(rate(50))  # the step count no longer matters
    assert seen == pytest.approx([1.0, 0.55, 0.1, 0.1])
    assert lit.warmup_end_seconds == 120.0
    steps = LitLM(torch.nn.Linear(2, 2), objective=None, lr=1.0, weight_decay=0.0, betas=(0.9, 0.98),
                  warmup_steps=2, max_steps=102, min_lr_ratio=0.1)
    assert steps.configure_optimizers()["lr_scheduler"]["scheduler"].lr_lambdas[0](52) == pytest.approx(0.55)
    no_cap = LitLM(torch.nn.Linear(2, 2), objective=None, lr=1.0, weight_decay=0.0, betas=(0.9, 0.98),
                   warmup_steps=2, max_steps=10, schedule="time")
    no_cap.trainer = SimpleNamespace(callbacks=[Timer()], global_step=0)
    with pytest.raises(ValueError, match="needs a wall-clock cap"):
        no_cap.on_train_batch_start(None, 0)


def test_grad_ema_adds_gain_times_the_gradients_running_mean_and_resumes_it() -> None:
    """Grokfast-EMA against its closed form on two steps: m1 = g1, g1' = g1 + λ·g1; m2 = α·g1 + (1 − α)·g2,
    g2' = g2 + λ·m2. The running mean travels in the checkpoint, so a resumed run amplifies the same way."""
    from odelm.lit import LitLM

    def make():
        torch.manual_seed(0)
        return LitLM(torch.nn.Linear(2, 1, bias=False), objective=None, lr=1.0, weight_decay=0.0, betas=(0.9, 0.98),
                     warmup_steps=1, max_steps=10, grad_ema=(0.9, 2.0))

    lit = make()
    weight = lit.model.weight
    g1, g2 = torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0, 0.5]])
    weight.grad = g1.clone()
    lit.on_before_optimizer_step(None)
    assert torch.allclose(weight.grad, g1 + 2.0 * g1)
    weight.grad = g2.clone()
    lit.on_before_optimizer_step(None)
    m2 = 0.9 * g1 + 0.1 * g2
    assert torch.allclose(weight.grad, g2 + 2.0 * m2)
    checkpoint = {}
    lit.on_save_checkpoint(checkpoint)
    resumed = make()
    resumed.on_load_checkpoint(checkpoint)
    resumed.model.weight.grad = g1.clone()
    resumed.on_before_optimizer_step(None)
    assert torch.allclose(resumed.model.weight.grad, g1 + 2.0 * (0.9 * m2 + 0.1 * g1))
    # restored before Lightning moves the model to its device: the mean follows the gradient's device
    on_device = make()
    on_device.on_load_checkpoint(checkpoint)
    on_device.model.to("meta")
    on_device.model.weight.grad = torch.zeros(1, 2, device="meta")
    on_device._amplify_slow_gradients()  # (the finiteness check cannot read meta tensors)
    assert on_device._grad_ema_state["model.weight"].device.type == "meta"
    plain = LitLM(torch.nn.Linear(2, 1, bias=False), objective=None, lr=1.0, weight_decay=0.0, betas=(0.9, 0.98),
                  warmup_steps=1, max_steps=10)
    plain.model.weight.grad = g1.clone()
    plain.on_before_optimizer_step(None)
    assert torch.equal(plain.model.weight.grad, g1)  # off by default: gradients untouched


def test_time_schedule_reaches_the_floor_when_the_cap_fires_in_a_real_run(tmp_path: Path) -> None:
    """The wiring: Lightning's own Timer, the batch hook and the logged rate. A 2-second cap and a step
    count far out of reach (over which a step-run cosine would stay at the peak, 1e-3): the rate falls
    every step after the warm-up and is well into its decay by the last logged step (a step or two of
    ~0.2 s before the cap; the floor itself is 1e-4)."""
    record = train_run(tmp_path, "model=looped", "model.loops=2", "optim.schedule=time", "optim.warmup_steps=2",
                       "trainer.max_time_minutes=0.035", "trainer.max_steps=1000000", "trainer.log_every_n_steps=1",
                       "trainer.val_check_interval=1000000")
    with open(tmp_path / "run" / "metrics.csv") as f:
        rates = [float(r["lr"]) for r in csv.DictReader(f) if r["split"] == "train" and r["lr"]]
    assert record["train_steps"] < 1000000 and len(rates) >= 5
    assert max(rates) > 0.9e-3 and rates[-1] < 0.5e-3
    assert all(b < a for a, b in zip(rates[3:], rates[4:]))  # after the warm-up: only down
