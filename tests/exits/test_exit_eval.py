"""odelm.eval with exit strategies, test-time compute sweeps and the logit lens, end to end."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from odelm import eval as odelm_eval
from odelm import train as odelm_train
from odelm.build import ConfigError

from conftest import SMALL, compose_config


@pytest.fixture(scope="module")
def looped_ckpt(tmp_path_factory) -> str:
    run_dir = tmp_path_factory.mktemp("looped")
    cfg = compose_config("train", [*SMALL, "model=looped"])
    return odelm_train.run(cfg, run_dir=run_dir)["checkpoint"]


def eval_run(tmp_path: Path, ckpt: str, *overrides: str, name: str = "eval") -> dict:
    given = [f"ckpt={ckpt}", *overrides]
    return odelm_eval.run(compose_config("eval", given), run_dir=tmp_path / name, overrides=given)


def test_exit_records_per_example_compute(tmp_path: Path, looped_ckpt: str) -> None:
    base = eval_run(tmp_path, looped_ckpt, name="base")
    static = eval_run(tmp_path, looped_ckpt, "exit=static", name="static")
    assert static["accuracy"] == base["accuracy"] and static["depth"] == base["depth"] == 4.0
    rec = eval_run(tmp_path, looped_ckpt, "exit=state_change", "exit.threshold=0.5", "exit.max_depth=6", name="sc")
    n = rec["n_examples"]
    per = rec["per_example"]
    assert len(per["nfe"]) == len(per["depth"]) == n and per["nfe"] == per["depth"]  # loop: one call per step
    assert rec["exit"]["name"] == "state_change" and rec["exit"]["max_depth"] == 6
    assert rec["depth"] == pytest.approx(sum(per["depth"]) / n) and 1 <= min(per["depth"]) <= max(per["depth"]) <= 6
    for d, hist in rec["depth_histogram_by_difficulty"].items():
        assert sum(hist.values()) == rec["n_by_difficulty"][d]
    saved = json.loads((tmp_path / "sc" / "metrics.json").read_text())
    assert saved["depth_by_difficulty"] == rec["depth_by_difficulty"]


def test_looped_checkpoint_as_an_event_stopped_ode_per_example(tmp_path: Path, looped_ckpt: str) -> None:
    rec = eval_run(tmp_path, looped_ckpt, "model.integrator=ode", "solver=dopri5", "solver.t_end=4",
                   "exit=kl", "exit.threshold=1e-3", "task.n_test_per_difficulty=3")
    per = rec["per_example"]
    assert rec["solver"]["integrator"] == "ode" and all(0 < d <= 4.0 + 1e-6 for d in per["depth"])
    assert all(v > 0 for v in per["nfe"]) and rec["nfe_forward"] == pytest.approx(sum(per["nfe"]) / len(per["nfe"]))


def test_eval_device_is_recorded_and_cpu_equals_auto_here(tmp_path: Path, looped_ckpt: str) -> None:
    auto = eval_run(tmp_path, looped_ckpt, "exit=state_change", "exit.threshold=0.5", name="auto")
    cpu = eval_run(tmp_path, looped_ckpt, "exit=state_change", "exit.threshold=0.5", "device=cpu", name="cpu")
    assert cpu["device"] == "cpu" and auto["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert cpu["accuracy"] == pytest.approx(auto["accuracy"], abs=1e-6)
    assert cpu["per_example"]["depth"] == auto["per_example"]["depth"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_eval_on_a_gpu_equals_the_cpu_with_exits_lens_and_probe(tmp_path: Path, looped_ckpt: str) -> None:
    given = ["exit=state_change", "exit.threshold=0.5", "lens.depths=[0,2,4]", "probe_backward=true"]
    cpu = eval_run(tmp_path, looped_ckpt, *given, "device=cpu", name="cpu")
    gpu = eval_run(tmp_path, looped_ckpt, *given, "device=cuda", name="gpu")
    assert gpu["device"].startswith("cuda") and gpu["accuracy"] == pytest.approx(cpu["accuracy"], abs=0.01)
    assert [r["depth"] for r in gpu["lens"]] == [r["depth"] for r in cpu["lens"]]
    assert gpu["nfe_backward"] == cpu["nfe_backward"]


def test_sweep_writes_one_row_per_setting(tmp_path: Path, looped_ckpt: str) -> None:
    rec = eval_run(tmp_path, looped_ckpt, "sweep.key=model.loops", "sweep.values=[1,2,4]", "lens.depths=[0,2,4]")
    with open(tmp_path / "eval" / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["value"]) for r in rows] == [1, 2, 4]
    assert [float(r["nfe_forward"]) for r in rows] == [1.0, 2.0, 4.0]
    assert {"accuracy", "accuracy_d1", "accuracy_d3", "nfe_d2", "depth"} <= set(rows[0])
    assert len(rec["sweep"]["rows"]) == 3
    lens = {r["depth"]: r for r in rec["lens"]}
    assert lens[4.0]["accuracy"] == rec["sweep"]["records"][2]["accuracy"] and lens[4.0]["distance_to_final"] == 0.0
    assert (tmp_path / "eval" / "lens.csv").exists()
    tol = eval_run(tmp_path, looped_ckpt, "model.integrator=ode", "solver=dopri5", "sweep.key=[solver.rtol,solver.atol]",
                   "sweep.values=[1e-2,1e-4]", "task.n_test_per_difficulty=3", name="tol")
    nfe = [r["nfe_forward"] for r in tol["sweep"]["rows"]]
    assert nfe[0] < nfe[1]  # a tighter tolerance costs more evaluations


def test_a_sweep_promotes_no_setting_chosen_on_test(tmp_path: Path, looped_ckpt: str) -> None:
    """Sweep rows are test-split numbers: the record must not lift the best-on-test row to its top level
    (that would be model selection on test). It keeps what every setting shares, and every row."""
    rec = eval_run(tmp_path, looped_ckpt, "sweep.key=model.loops", "sweep.values=[1,2,4]")
    assert not {"accuracy", "accuracy_by_difficulty", "nfe_forward", "loss"} & set(rec)
    assert "best_value" not in rec["sweep"] and [r["value"] for r in rec["sweep"]["rows"]] == [1, 2, 4]
    assert rec["status"] == "ok" and rec["task"]["name"] == "modular_chain" and "model" not in rec  # loops vary
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert "accuracy" not in saved and len(saved["sweep"]["records"]) == 3


def test_training_returns_validation_accuracy_to_sweepers(tmp_path: Path, monkeypatch) -> None:
    """What `python -m odelm.train -m ...` hands Optuna is the validation accuracy, never the test's."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    from conftest import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=SMALL, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
        cfg.hydra.mode = RunMode.MULTIRUN
    HydraConfig.instance().set_config(cfg)
    monkeypatch.setattr(odelm_train, "run", lambda _cfg: {"accuracy": 0.9, "val_accuracy": 0.25})
    assert odelm_train.main(cfg) == 0.25


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["exit=q_exit"], "needs a model trained with model.exit_gate=true"),
        (["exit=kl", "exit.threshold=-1"], "exit.threshold must be a number"),
        (["exit=static", "exit.max_depth=2.5"], "whole number of loops, got 2.5"),
        (["sweep.key=solver.rtl", "sweep.values=[1]"], "sweep.key 'solver.rtl' is not a key"),
        (["sweep.key=model.loops"], "needs a non-empty list sweep.values"),
        (["lens.depths=[0.5]"], "integer depths only"),
        (["device=banana"], "device='banana' is not a device"),
        (["device=meta"], "device='meta': choose auto, cpu, cuda"),
    ] + ([(["device=cuda"], "device=cuda: torch sees no GPU here")] if not torch.cuda.is_available() else []),
)
def test_bad_exit_sweep_and_lens_settings_fail_naming_the_value(tmp_path: Path, looped_ckpt: str, overrides, match) -> None:
    with pytest.raises(ConfigError, match=match):
        eval_run(tmp_path, looped_ckpt, *overrides)


def test_a_checkpoint_from_before_a_behaviour_key_keeps_its_behaviour() -> None:
    """Keys missing from a stored config take today's defaults, except keys whose default changes
    behaviour: a windowed model trained before model.window_padding existed ran without edge padding."""
    from omegaconf import OmegaConf

    stored = OmegaConf.to_container(compose_config("train", ["model.attn_window=2"]))
    del stored["model"]["window_padding"]
    given = compose_config("eval", ["ckpt=x"])
    assert given.model.window_padding == "zeros"  # today's default
    assert odelm_eval.merged_config(stored, given, ["ckpt=x"]).model.window_padding == "none"
    stored["model"]["window_padding"] = "zeros"
    assert odelm_eval.merged_config(stored, given, ["ckpt=x"]).model.window_padding == "zeros"
