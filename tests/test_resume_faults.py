"""Exact resume after SIGTERM, SLURM job parameters from the Trainer settings, and faults that lose
nothing (adjoint backward failures and exit-solve budgets become SolverError; non-finite gradients
never reach the weights or a checkpoint)."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from odelm import train
from odelm.depth import SolverError
from odelm.lit import NonFiniteGradientError, TrainingInterrupted

from conftest import SMALL, compose_config

N = 6
# Huginn random depth draws from torch's global RNG every step; the curriculum draws from the
# sampler's own; a low threshold makes it unlock during the run. Validation every 3 steps.
RESUME = SMALL + ["model=looped", "objective.depth.random_depth=true", "data.curriculum.enabled=true",
                  "data.curriculum.threshold=0.05",
                  f"trainer.max_steps={2 * N}", "trainer.val_check_interval=3", "trainer.log_every_n_steps=1",
                  "trainer.checkpoint_every_n_steps=1000"]


def _losses(run_dir: Path) -> dict[int, float]:
    rows = csv.DictReader((run_dir / "metrics.csv").open())
    return {int(r["step"]): float(r["loss"]) for r in rows if r["split"] == "train"}


def test_sigterm_saves_a_checkpoint_and_the_resumed_run_is_exact(tmp_path: Path) -> None:
    whole = train.run(compose_config("train", RESUME), run_dir=tmp_path / "whole")
    run_dir = tmp_path / "interrupted"
    with pytest.raises(TrainingInterrupted, match=f"stopped by SIGTERM after step {N}"):
        train.run(compose_config("train", RESUME + ["+callbacks.sig._target_=ddp_helpers.SignalAt",
                                                    f"+callbacks.sig.step={N}"]), run_dir=run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=False)
    assert state["global_step"] == N and state["resume"]["batches_trained"] == N
    first_seconds = state["callbacks"]["MetricsCSV"]["train_seconds"]

    # re-run into the same directory, as a requeued SLURM job does: it resumes from checkpoints/last.ckpt
    # (ckpt_path=<run>/checkpoints/last.ckpt into a new Hydra directory continues in <run>: test_train.py)
    resumed = train.run(compose_config("train", RESUME), run_dir=run_dir)
    assert Path(resumed["run_dir"]) == run_dir
    expected, got = _losses(Path(whole["run_dir"])), _losses(run_dir)
    assert sorted(got) == list(range(1, 2 * N + 1))  # each step once, in the run's own metrics.csv
    for step in range(N + 1, 2 * N + 1):
        assert got[step] == pytest.approx(expected[step], rel=1e-6, abs=1e-7), step
    assert resumed["curriculum_level"] == whole["curriculum_level"]
    assert resumed["accuracy"] == whole["accuracy"]
    assert resumed["train_seconds"] > first_seconds > 0  # accumulated over both parts


def test_slurm_launcher_takes_its_tasks_and_gpus_from_the_trainer() -> None:
    from hydra import compose, initialize_config_dir

    from conftest import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "trainer.devices=4", "trainer.num_nodes=2",
                                          "trainer.strategy=ddp"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    assert launcher._target_.endswith("SlurmLauncher") and launcher.max_num_timeout >= 1
    assert "SIGUSR2" in cfg.callbacks.checkpoint_on_signal.signals  # submitit's requeue signal


def test_lightning_uses_the_slurm_environment_for_ranks(monkeypatch) -> None:
    """Inside a SLURM job (srun tasks), the Trainer built from the config takes its ranks from SLURM and
    starts no processes itself."""
    import lightning as L
    from lightning.fabric.utilities import rank_zero as fabric_rank_zero
    from lightning.pytorch.plugins.environments import SLURMEnvironment
    from lightning_utilities.core import rank_zero as utils_rank_zero

    # the Trainer sets the process-wide rank (3 here): put it back after the test
    for module in (fabric_rank_zero, utils_rank_zero):
        monkeypatch.setattr(module.rank_zero_only, "rank", module.rank_zero_only.rank)

    for key, value in {"SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "2", "SLURM_PROCID": "3", "SLURM_LOCALID": "1",
                       "SLURM_NODEID": "1", "SLURM_NNODES": "2", "SLURM_JOB_NAME": "odelm", "SLURM_JOB_ID": "7",
                       "SLURM_NODELIST": "node[1-2]"}.items():
        monkeypatch.setenv(key, value)
    cfg = compose_config("train", ["trainer.devices=2", "trainer.num_nodes=2", "trainer.strategy=ddp",
                                   "trainer.accelerator=cpu"])
    trainer = L.Trainer(**{k: v for k, v in train.trainer_kwargs(cfg).items() if k != "_target_"})
    env = trainer.strategy.cluster_environment
    assert isinstance(env, SLURMEnvironment) and env.creates_processes_externally
    assert (trainer.global_rank, trainer.local_rank, trainer.node_rank, trainer.world_size) == (3, 1, 1, 4)


def test_old_trainer_keys_still_work_and_bad_ones_are_named(tmp_path: Path) -> None:
    kwargs = train.trainer_kwargs(compose_config("train", ["trainer.max_time_minutes=2"]))
    assert kwargs["max_time"] == {"minutes": 2} and "max_time_minutes" not in kwargs
    with pytest.raises(train.ConfigError, match="trainer.max_time_minutes or trainer.max_time"):
        train.trainer_kwargs(compose_config("train", ["trainer.max_time_minutes=2", "trainer.max_time=00:00:05:00"]))
    with pytest.raises(train.ConfigError, match="trainer.use_distributed_sampler must stay false"):
        train.trainer_kwargs(compose_config("train", ["trainer.use_distributed_sampler=true"]))
    with pytest.raises(train.ConfigError, match="trainer.no_such_option is not an argument of .*Trainer"):
        train.run(compose_config("train", SMALL + ["+trainer.no_such_option=1"]), run_dir=tmp_path / "r")
    # any Lightning option is an override: accumulate two batches per optimiser step
    record = train.run(compose_config("train", SMALL + ["+trainer.accumulate_grad_batches=2",
                                                        "trainer.max_steps=3"]), run_dir=tmp_path / "acc")
    assert record["train_steps"] == 3


def test_non_finite_gradients_stop_before_the_optimiser_step(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cfg = compose_config("train", SMALL + ["+callbacks.poison._target_=ddp_helpers.PoisonGradients",
                                           "+callbacks.poison.step=13"])
    with pytest.raises(NonFiniteGradientError, match="non-finite gradients at step 12.*the loss was finite"):
        train.run(cfg, run_dir=run_dir)
    for ckpt in (run_dir / "checkpoints").glob("*.ckpt"):
        state = torch.load(ckpt, weights_only=False)
        assert state["global_step"] <= 12
        assert all(torch.isfinite(v).all() for v in state["state_dict"].values())
    assert not (run_dir / "metrics.json").exists()


def test_adjoint_backward_failure_becomes_a_solver_error() -> None:
    """The forward solve fits its step budget; the field then stiffens, so the adjoint's backward solve
    exceeds it inside torchdiffeq's backward (a raw AssertionError there before)."""
    from odelm.depth import ODESolve
    from odelm.lit import LitLM

    from conftest import LinearField

    class Stiffening(LinearField):
        stiffness = 1.0  # a plain number: changing it leaves autograd's saved tensors alone

        def forward(self, tau, h, e):
            return super().forward(tau, h, e) * self.stiffness

    field = Stiffening(a=-1.0)
    solve = ODESolve(method="dopri5", rtol=1e-6, atol=1e-6, t_end=1.0, adjoint=True, max_num_steps=100)
    h0 = torch.ones(2, 3, 4, dtype=torch.float64, requires_grad=True)
    out = solve(field, h0, torch.zeros_like(h0))  # fits the budget
    holder = torch.nn.Module()
    holder.integrator = solve
    lit = LitLM(holder, objective=None, lr=1e-3, weight_decay=0.0, betas=(0.9, 0.98), warmup_steps=1, max_steps=1)
    field.stiffness = 1e4  # stiff now: an explicit method needs thousands of steps backwards
    with pytest.raises(SolverError, match=r"in the backward pass \(adjoint solve\).*max_num_steps=100"):
        lit.backward(out.h.pow(2).sum())


def test_exit_solve_has_its_own_step_budget() -> None:
    from odelm.depth import ODESolve
    from odelm.exits.ode_exit import solve_until_exit

    from conftest import LinearField

    class Never:  # a criterion that never holds: the solve runs to t_max
        min_depth = 0.0

        def aux0(self, h, ctx):
            return None

        def margin(self, t, h, aux, f, ctx):
            return torch.ones(h.shape[0], dtype=h.dtype)

    solver = ODESolve(method="euler", step_size=0.01, t_end=1.0, max_num_steps=10)
    h0 = torch.ones(1, 2, 3, dtype=torch.float64)
    with pytest.raises(SolverError, match="max_num_steps=10"):
        solve_until_exit(LinearField(), h0, torch.zeros_like(h0), Never(), None, solver, t_max=1.0)


def test_model_compile_compiles_the_field_blocks_only() -> None:
    """model.compile=true: every block of the field is compiled in place (checkpoint keys unchanged);
    the integrator and the field's own forward (NFE counters) stay eager."""
    from odelm.build import build_integrator, build_model

    cfg = compose_config("train", ["model=ode", "model.compile=true", "model.field_blocks=2", "model.d_model=16",
                                   "model.pos_embedding=learned", "model.max_len=32", "model.n_heads=2"])
    model = build_model(cfg, 12, build_integrator(cfg))
    keys = list(model.state_dict())
    assert train.compile_blocks(model) == 2
    assert all(block._compiled_call_impl is not None for block in model.field.blocks)
    assert model.field._compiled_call_impl is None and list(model.state_dict()) == keys


def test_parameters_without_gradient_are_found_before_ddp(tmp_path: Path) -> None:
    """An exit gate under plain cross-entropy gets no gradient: DDP must be told (find_unused_parameters)."""
    from odelm.build import (build_curriculum, build_data, build_integrator, build_model, build_objective,
                             resolve_positions)
    from odelm.data import TaskDataModule
    from odelm.lit import LitLM

    def probe(*overrides: str) -> list[str]:
        cfg = compose_config("train", SMALL + list(overrides))
        data = build_data(cfg, 0)
        resolve_positions(cfg, data, data.tokenizer)
        model = build_model(cfg, data.tokenizer.vocab_size, build_integrator(cfg))
        dm = TaskDataModule(data.tokenizer, data.train, data.val, data.test, 4, 4, 0,
                            build_curriculum(cfg, data.train, data.val))
        lit = LitLM(model, build_objective(cfg), lr=1e-3, weight_decay=0.0, betas=(0.9, 0.98), warmup_steps=1,
                    max_steps=1, log_every_n_steps=1)
        state = torch.get_rng_state()
        names = train.unused_parameters(lit, dm)
        assert torch.equal(torch.get_rng_state(), state)  # the probe leaves the RNG as it found it
        assert all(p.grad is None for p in model.parameters())
        return names

    assert probe("model.exit_gate=true") and all("exit_gate" in n for n in probe("model.exit_gate=true"))
    assert probe("model.exit_gate=true", "objective=ouro_stage1") == []
