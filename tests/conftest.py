"""Shared fixtures: tiny models, a closed-form test field, and Hydra config composition."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from odelm.field import NFECounter

os.environ.setdefault("WANDB_MODE", "disabled")  # the offline-logging test sets its own mode
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")

# Overrides that shrink a training run to seconds while keeping every code path.
SMALL_RUN = ["trainer=smoke", "model.d_model=32", "model.n_heads=2", "data.batch_size=16", "data.n_val_per_difficulty=4"]
SMALL = SMALL_RUN + [  # ... and the generated tasks' sizes
    "task.n_train=256",
    "task.n_test_per_difficulty=8",
    "task.train_difficulties=[1,2]",
    "task.test_difficulties=[1,2,3]",
]


def compose_config(config_name: str = "train", overrides: list[str] | None = None):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides or [])


class LinearField(torch.nn.Module):
    """F(τ, h; e) = a · h: closed form h(τ) = h(0) · exp(a τ). Counts calls like VectorField."""

    def __init__(self, a: float = -1.0) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(a, dtype=torch.float64))
        self.nfe = NFECounter()

    def forward(self, tau: torch.Tensor, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        self.nfe.forward += 1
        return self.a * h


@pytest.fixture
def linear_field() -> LinearField:
    return LinearField()


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
