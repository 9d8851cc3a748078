"""One arithmetic: train, eval and compare each set float32 with full-precision float32 matmuls
(no TF32) before doing anything else, and every record says which arithmetic it ran under."""
from __future__ import annotations

import pytest
import torch

from odelm import compare, train
from odelm import eval as odelm_eval
from odelm.build import ConfigError
from odelm.precision import arithmetic, configure_arithmetic

from conftest import compose_config


@pytest.fixture
def loose_arithmetic():
    """Leaves TF32-like matmuls on, as another library (or an earlier odelm version) might."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    yield
    torch.set_float32_matmul_precision(before)


def test_configure_arithmetic() -> None:
    assert configure_arithmetic() == {"default_dtype": "float32", "float32_matmul_precision": "highest",
                                      "cuda_matmul_allow_tf32": False}
    assert arithmetic()["float32_matmul_precision"] == "highest" and torch.get_default_dtype() == torch.float32


def test_train_sets_the_arithmetic_first(tmp_path, loose_arithmetic) -> None:
    cfg = compose_config("train", ["trainer.max_steps=0"])  # rejected, but only after the arithmetic is set
    with pytest.raises(ConfigError, match="trainer.max_steps"):
        train.run(cfg, run_dir=tmp_path)
    assert torch.get_float32_matmul_precision() == "highest"


def test_eval_sets_the_arithmetic_first(tmp_path, loose_arithmetic) -> None:
    given = [f"ckpt={tmp_path / 'missing.ckpt'}"]
    with pytest.raises(ConfigError, match="is not a file"):
        odelm_eval.run(compose_config("eval", given), run_dir=tmp_path / "eval", overrides=given)
    assert torch.get_float32_matmul_precision() == "highest"


def test_compare_sets_the_arithmetic_before_training(tmp_path, loose_arithmetic, monkeypatch) -> None:
    seen = []

    def fake_run(cfg, run_dir):
        seen.append(torch.get_float32_matmul_precision())
        raise ConfigError("stop here")

    monkeypatch.setattr(train, "run", fake_run)
    with pytest.raises(SystemExit, match="stop here"):
        compare.main(["--models", "looped", "--out", str(tmp_path), "task.n_test_per_difficulty=8"])
    assert seen == ["highest"]
