"""Studies as config (conf/experiment/, conf/arm/), a real multirun with a failing job, the
reproduction's plumbing, and every figure script on fabricated run directories."""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from odelm.tasks import TASKS
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from odelm.build import ConfigError, build_integrator, build_model, build_objective, check_training_config

from conftest import CONF_DIR, SMALL

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import reproduce  # noqa: E402
from fabricate import fabricate  # noqa: E402

STUDIES = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


def compose_hydra(overrides: list[str]):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def study_arms(study: str) -> list[str]:
    params = compose_hydra([f"experiment={study}"]).hydra.sweeper.params
    return str(params["arm"]).split(",") if "arm" in params else []


@pytest.mark.parametrize("scale", ["smoke", "cpu", "paper"])
@pytest.mark.parametrize("study", STUDIES)
def test_every_study_and_arm_composes_and_builds(study: str, scale: str) -> None:
    arms = study_arms(study) or [None]
    for arm in arms:
        overrides = [f"experiment={study}", f"scale={scale}"] + ([f"arm={arm}"] if arm else [])
        cfg = compose_hydra(overrides)
        assert cfg.study == study
        if arm:  # each arm names itself, and the job directory carries that name
            assert cfg.arm == arm.split("/")[-1]
        check_training_config(cfg)
        integrator = build_integrator(cfg)
        if cfg.model.pos_embedding == "auto":  # odelm.train resolves it from the data
            cfg.model.pos_embedding, cfg.model.max_len = "learned", 32
        build_model(cfg, 16, integrator)
        build_objective(cfg)
        if study != "hparam_search":
            assert cfg.trainer.max_steps >= 1 and cfg.hydra.sweeper.params["seed"] == "0,1,2"  # >= 3 seeds


def test_studies_state_their_arms_as_config() -> None:
    cfg = compose_hydra(["experiment=core", "arm=core/ode_grid"])
    assert (cfg.model.integrator, cfg.solver.method, cfg.solver.step_size) == ("ode", "euler", 0.5)
    assert dict(cfg.objective.terms) == {"ce": 1.0, "kinetic_energy": 0.1}
    cfg = compose_hydra(["experiment=mano_iso", "arm=mano_iso/transformer2"])
    assert (cfg.task.name, cfg.model.family, cfg.model.n_layers) == ("mano", "transformer", 2)
    cfg = compose_hydra(["experiment=regularisers", "arm=regularisers/adjoint_default"])
    assert cfg.solver.adjoint and cfg.solver.adjoint_norm == "default"
    # the scale picks the budget; the wandb group is the study
    smoke, paper = compose_hydra(["experiment=core"]), compose_hydra(["experiment=core", "scale=paper"])
    assert smoke.trainer.max_time_minutes == 1.0 and paper.trainer.max_time_minutes is None
    assert paper.model.d_model == 256 and smoke.model.d_model == 128
    # the cpu scale trains each arm until 0.9 validation accuracy or its budget (recorded per run)
    cpu = compose_hydra(["experiment=core", "scale=cpu"])
    assert cpu.target_accuracy == 0.9 and smoke.target_accuracy is None and cpu.trainer.max_time_minutes == 8.0
    assert compose_hydra(["experiment=core", "logger=wandb"]).logger.wandb.group == "core"


def test_an_unknown_scale_fails_naming_it() -> None:
    cfg = compose_hydra(["experiment=core", "scale=huge"])
    with pytest.raises(ConfigError, match="scale='huge' is not a budget of study 'core'"):
        check_training_config(cfg)


@pytest.mark.parametrize("launcher,target", [("local", "JoblibLauncher"), ("slurm", "SlurmLauncher")])
def test_launcher_configs_compose(launcher: str, target: str) -> None:
    cfg = compose_hydra(["experiment=core", f"hydra/launcher={launcher}"])
    assert cfg.hydra.launcher._target_.endswith(target)


def test_optuna_search_composes_with_its_space() -> None:
    cfg = compose_hydra(["experiment=hparam_search"])
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper") and cfg.hydra.sweeper.direction == "maximize"
    assert set(cfg.hydra.sweeper.params) == {"optim.lr", "optim.warmup_steps", "model.loops"}


def test_a_two_job_multirun_completes_and_a_failing_job_loses_nothing(tmp_path: Path) -> None:
    """experiment=core with the joblib launcher, two jobs in parallel; the second has a bad learning
    rate. The sweep exits 0, the good job writes its full record, the bad one a failure record."""
    sweep_dir = tmp_path / "sweep"
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "odelm.train", "-m", "experiment=core", "arm=core/looped", "seed=0",
           "optim.lr=1e-3,-1", *SMALL, "trainer.max_steps=6", "trainer.max_time_minutes=null", "model.d_model=32",
           "hydra/launcher=local", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep_dir}"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    records = {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/metrics.json")}
    assert set(records) == {"0_looped_s0", "1_looped_s0"}
    good, bad = records["0_looped_s0"], records["1_looped_s0"]
    assert good["status"] == "ok" and good["study"] == "core" and good["arm"] == "looped" and good["train_steps"] == 6
    assert Path(good["checkpoint"]).is_file() and good["flops_per_token"] > 0
    assert bad["status"] == "failed" and "optim.lr must be > 0, got -1" in bad["error"]
    assert OmegaConf.load(sweep_dir / "0_looped_s0" / "config.yaml").arm == "looped"
    # the summary table reads the real records (the failed job is left out)
    out = tmp_path / "figures"
    (tmp_path / "core").symlink_to(sweep_dir)
    paths = importlib.import_module("t1_summary").main(["--root", str(tmp_path), "--out", str(out)])
    rows = (out / "t1_summary.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("core,looped,") and all(p.exists() for p in paths)


def test_optuna_search_runs_two_trials_and_reports_the_best(tmp_path: Path) -> None:
    """The pinned Optuna sweeper plugin drives odelm.train (which returns validation accuracy) end to end."""
    sweep_dir = tmp_path / "search"
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "odelm.train", "-m", "experiment=hparam_search", "hydra.sweeper.n_trials=2", *SMALL,
           "trainer.max_steps=5", "trainer.max_time_minutes=null", f"hydra.sweep.dir={sweep_dir}"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert set(result.best_params) == {"optim.lr", "optim.warmup_steps", "model.loops"}
    trials = [json.loads(p.read_text()) for p in sweep_dir.glob("*/metrics.json")]
    assert len(trials) == 2 and result.best_value == max(t["val_accuracy"] for t in trials)


def test_reproduce_counts_the_jobs_of_a_sweep() -> None:
    assert reproduce.sweep_size(["solver=dopri5,bosh3", "sweep.values=[1,2,3]", "arm=a,b,c"]) == 6
    assert reproduce.study_jobs("core") == 15 and reproduce.study_jobs("regularisers") == 21
    assert reproduce.study_jobs("flow", ["looped", "random_solver"]) == 6  # --arms: 2 arms x 3 seeds


def test_reproduce_arms_restrict_a_study_and_an_unknown_arm_fails_before_training() -> None:
    assert reproduce.arm_override("flow", ["looped", "ode_grid"]) == "arm=flow/looped,flow/ode_grid"
    with pytest.raises(SystemExit, match="no arm \\['nope'\\].*random_solver"):
        reproduce.main(["--studies", "flow", "--arms", "looped,nope", "--stages", "train", "--out", "/nonexistent"])


def test_every_eval_plan_names_arms_its_study_trains() -> None:
    for plan in reproduce.EVAL_PLANS:
        trained = {arm.split("/")[-1] for arm in study_arms(plan.study)}
        assert set(plan.arms) <= trained, plan.name


@pytest.fixture(scope="module")
def fabricated(tmp_path_factory) -> Path:
    return fabricate(tmp_path_factory.mktemp("runs") / "root")


@pytest.mark.parametrize("name", reproduce.FIGURES)
def test_figure_script_writes_its_files(name: str, fabricated: Path, tmp_path: Path) -> None:
    paths = importlib.import_module(name).main(["--root", str(fabricated), "--out", str(tmp_path)])
    assert paths and all(Path(p).exists() and Path(p).stat().st_size > 0 for p in paths)
    assert {Path(p).name for p in paths} >= {f"{name}.csv"}
    if not name.startswith("t1"):
        assert {Path(p).suffix for p in paths} == {".png", ".pdf", ".csv"}


@pytest.mark.parametrize("name", reproduce.FIGURES)
def test_figure_script_without_its_runs_says_what_is_missing(name: str, tmp_path: Path) -> None:
    from figlib import NoData

    with pytest.raises(NoData, match="reproduce"):
        importlib.import_module(name).main(["--root", str(tmp_path / "empty"), "--out", str(tmp_path / "out")])


def test_trained_range_of_a_task_trained_on_every_difficulty() -> None:
    """JSONL tasks train on every difficulty of their file (train_difficulties null): no 'harder' split."""
    from figlib import split_difficulties

    record = {"task": {"train_difficulties": None}, "accuracy_by_difficulty": {"0": 0.5, "2": 0.1}}
    assert split_difficulties(record) == (["0", "2"], [])
    record["task"]["train_difficulties"] = [1, 2]
    record["accuracy_by_difficulty"] = {"1": 1.0, "2": 0.9, "3": 0.2}
    assert split_difficulties(record) == (["1", "2"], ["3"])


def _as_hydra_job(tmp_path: Path, mode: str):
    """Registers a composed config as the running Hydra job (output dir tmp_path/job, given mode)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    cfg = compose_hydra(["experiment=core", "arm=core/looped"])
    out = tmp_path / "job"
    out.mkdir()
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(out)
        cfg.hydra.mode = RunMode[mode]
    HydraConfig.instance().set_config(cfg)
    return cfg, out


def test_any_failure_inside_a_multirun_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    """A bug (not bad input) in one job of a sweep: its metrics.json says so with the traceback, and
    the job returns NaN instead of raising, so Hydra runs the remaining jobs."""
    from odelm.runs import run_cli

    cfg, out = _as_hydra_job(tmp_path, "MULTIRUN")

    def broken(_cfg):
        raise RuntimeError("kernel exploded")

    value = run_cli(broken, cfg, (ConfigError,))
    record = json.loads((out / "metrics.json").read_text())
    assert value != value and record["status"] == "failed" and record["arm"] == "looped"
    assert record["error"] == "RuntimeError: kernel exploded" and "broken" in record["traceback"]


def test_an_unexpected_failure_of_a_single_run_keeps_its_traceback(tmp_path: Path) -> None:
    from odelm.runs import run_cli

    cfg, out = _as_hydra_job(tmp_path, "RUN")

    def broken(_cfg):
        raise RuntimeError("kernel exploded")

    with pytest.raises(RuntimeError, match="kernel exploded"):
        run_cli(broken, cfg, (ConfigError,))
    assert not (out / "metrics.json").exists()


def test_split_overlap_reports_every_test_level_unseen(tmp_path: Path) -> None:
    """experiments/split_overlap.py: every built-in task that builds has all of its test prompts unseen in
    training and validation, and the JSONL files' shared prompts are dropped and counted."""
    split_overlap = importlib.import_module("split_overlap")
    rows = split_overlap.main(["--out", str(tmp_path / "split.json"), "task.n_train=2000",
                               "task.n_test_per_difficulty=20", "data.n_val_per_difficulty=10"])
    assert {r["task"].split(" ")[0] for r in rows} == set(TASKS)  # every built-in task, and JSONL
    assert all(r["status"] == "ok" for r in rows)
    assert all(v == 1.0 for r in rows for v in r["unseen_by_difficulty"].values())
    jsonl = next(r for r in rows if r["task"].startswith("jsonl"))
    assert jsonl["split_overlap_dropped"]["train"] > 0 and jsonl["legacy_unseen_by_difficulty"]["1"] < 0.5
    assert (tmp_path / "split.md").exists()


def test_bench_exits_chooses_on_validation_not_test():
    """The adaptive setting bench_exits reports (and generates with) is the one validation favours,
    even when another setting has the better test numbers."""
    import bench_exits

    def row(strategy, setting, acc, depth, val_acc, val_cost):
        return {"family": "loop", "strategy": strategy, "setting": setting, "accuracy": acc, "accuracy_1_3": acc,
                "depth": depth, "depth_1_3": depth, "val_accuracy": val_acc, "val_cost": val_cost}

    rows = [row("static", "default", 0.80, 4.0, 0.90, 4.0),
            row("kl", "eps=1", 0.80, 1.0, 0.50, 1.0),  # best on test, poor on validation
            row("kl", "eps=0.01", 0.60, 2.0, 0.90, 2.0)]  # chosen: validation matches static at half cost
    assert bench_exits.pick_on_val(rows, "loop")["setting"] == "eps=0.01"
    targets = bench_exits.target_check(rows, "loop", "depth")
    assert {t["best"] for t in targets} == {"kl eps=0.01"}
    assert all(t["chosen_on"] == "validation" and not t["met"] for t in targets)  # judged on its test numbers


def test_t1_counts_the_seeds_that_reached_the_target() -> None:
    t1 = importlib.import_module("t1_summary")
    base = {"study": "core", "arm": "looped", "seed": 0, "params": 1, "accuracy": 0.5, "nfe_forward": 4.0,
            "train_seconds": 1.0, "train_steps": 10, "accuracy_by_difficulty": {"1": 0.5},
            "task": {"train_difficulties": [1]}}
    rows = [t1.run_row({**base, "seed": s, "target_accuracy": 0.9, "target_reached_at_step": at})
            for s, at in enumerate([100, None, 250])]
    from figlib import aggregate
    assert t1.reached(aggregate(rows, ["study", "arm"], t1.VALUES)[0]) == "2/3"
    no_target = aggregate([t1.run_row(base)], ["study", "arm"], t1.VALUES)[0]
    assert t1.reached(no_target) == "-"


def test_pointer_chase_guess_is_one_over_the_distinct_letters(tmp_path: Path) -> None:
    guess = importlib.import_module("pointer_chase_guess")
    assert guess.guess_accuracy("4a1jb0c2dc:7") == 1 / 5  # a, j, b, c, d
    result = guess.main(["--out", str(tmp_path / "g.json"), "--difficulties", "1,6", "--n", "500"])
    by = result["guess_by_difficulty"]
    assert result["chance"] < by["1"] < by["6"] < 1  # fewer distractor letters on longer chains


def test_figures_read_a_sweep_record_whose_solver_and_levels_are_per_setting() -> None:
    """odelm.eval keeps at the top level of a sweep's metrics.json only what every setting shares, so a
    sweep over solver keys has no top-level solver and no accuracy_by_difficulty: the figures read them
    from the settings."""
    import figlib

    row = {"key": "solver.rtol", "value": 1e-3, "accuracy": 0.5, "accuracy_d1": 0.6, "accuracy_d4": 0.4}
    record = {"task": {"train_difficulties": [1, 2, 3], "test_difficulties": [1, 4]},
              "sweep": {"rows": [row], "records": [{"solver": {"method": "bosh3", "rtol": 1e-3}}]}}
    assert figlib.eval_solver(record)["method"] == "bosh3"
    assert figlib.split_difficulties(record) == (["1"], ["4"])
    assert figlib.eval_solver({"solver": {"method": "rk4"}, **record})["method"] == "rk4"


def test_collect_runs_records_every_finished_run_of_the_studies(fabricated: Path, tmp_path: Path) -> None:
    collect = importlib.import_module("collect_runs")
    rows = collect.main(["--root", str(fabricated), "--studies", "core", "--out", str(tmp_path / "runs.json")])
    assert rows and {r["study"] for r in rows} == {"core"}
    assert json.loads((tmp_path / "runs.json").read_text()) == json.loads(json.dumps(rows))
    with pytest.raises(SystemExit, match="no finished runs"):
        collect.main(["--root", str(tmp_path / "empty"), "--studies", "core", "--out", str(tmp_path / "x.json")])


def test_parity_error_profile_locates_a_two_back_rule() -> None:
    """A predictor that applies p[i] = p[i-2] ^ x[i-1] ^ x[i] with p[-1] taken as x[0] (the edge case
    of a rule with a gap) is wrong exactly where x[0] = 1, first at position 1; exact predictions
    give exact match 1 and no first error."""
    import parity_errors

    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    bits = torch.randint(0, 2, (200, 9), generator=g)
    reference = bits.cumsum(1) % 2
    exact = parity_errors.error_profile(bits, reference)
    assert exact["exact"] == 1.0 and exact["first_error_position"] == {"-1": 200}
    gap = reference.clone()
    gap[:, 1] = bits[:, 1]  # p[1] = p[-1] ^ x[0] ^ x[1] with the missing p[-1] read as x[0]: wrong when x[0] = 1
    for i in range(2, 9):  # the two-back rule from there on: every odd position inherits that error
        gap[:, i] = gap[:, i - 2] ^ bits[:, i - 1] ^ bits[:, i]
    profile = parity_errors.error_profile(bits, gap)
    assert profile["wrong_share_by_first_bit"] == {"0": 0.0, "1": 1.0}
    assert set(profile["first_error_position"]) <= {"-1", "1"}
    assert profile["error_by_position"][0] == 0.0 and all(v == 0.0 for v in profile["error_by_position"][0::2])


def test_maze_error_buckets_split_by_distance_with_the_last_bucket_open() -> None:
    import maze_errors

    from odelm.tasks import Maze

    assert maze_errors.shortest_paths(Maze(), "#####|#S..#|#.#.#|#..G#|#####|") == 2  # around the wall, either way
    assert maze_errors.shortest_paths(Maze(), "#####|#S..#|###.#|#..G#|#####|") == 1
    assert maze_errors.shortest_paths(Maze(), "#####|#S..#|#...#|#..G#|#####|") == 6  # open 3x3: C(4, 2)

    distances = [3, 9, 10, 19, 20, 55]
    valid = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    rows = maze_errors.by_distance(distances, valid, [0, 10, 20, 30])
    assert rows == [
        {"distance_from": 0, "distance_below": 10, "mazes": 2, "valid_shortest_path": 0.5},
        {"distance_from": 10, "distance_below": 20, "mazes": 2, "valid_shortest_path": 1.0},
        {"distance_from": 20, "distance_below": 30, "mazes": 1, "valid_shortest_path": 0.0},
        {"distance_from": 30, "distance_below": None, "mazes": 1, "valid_shortest_path": 0.0},
    ]


def test_maze_errors_diagnoses_test_mazes_and_describes_the_training_distribution() -> None:
    """A run trained with task.train_params (far goals) is diagnosed on the standard mazes, while its
    trained-range statistics describe the mazes it trained on."""
    import maze_errors

    cfg = OmegaConf.create({"task": {"params": {"extra_openings": 0}, "train_params": {"far_goal": 1}}})
    task, train_task = maze_errors.maze_tasks(cfg)
    assert (task.far_goal, train_task.far_goal) == (0.0, 1.0)
    assert train_task.extra_openings == task.extra_openings == 0.0
    plain, _ = maze_errors.maze_tasks(OmegaConf.create({"task": {"params": {"extra_openings": 0}}}))
    assert plain.far_goal == 0.0


def test_maze_errors_dead_end_depth_and_error_kinds_on_hand_built_mazes() -> None:
    """Dead-end depth is the farthest open cell's distance from the path (the rounds dead-end filling
    needs); error kinds count marked cells off the reference path and path cells left unmarked."""
    import maze_errors

    from odelm.tasks import Maze

    maze = Maze()
    # 5x5 grid, S top-left, G top-right; a dead end hangs down the left column and along the bottom row
    prompt = "#####|#S.G#|#.###|#...#|#####|"
    answer = "#####|#***#|#.###|#...#|#####|"
    path = maze_errors.marked_cells(answer)
    assert path == {6, 7, 8}
    assert maze_errors.dead_end_depth(maze, prompt, path) == 4  # (3,3): down 2, right 2 from S at (1,1)
    assert maze_errors.dead_end_depth(maze, "#####|#S.G#|#####|#####|#####|", path) == 0
    assert maze_errors.error_kinds(maze, prompt, answer, answer) == (0, 0)
    assert maze_errors.error_kinds(maze, prompt, answer, "#####|#***#|#*###|#...#|#####|") == (1, 0)
    assert maze_errors.error_kinds(maze, prompt, answer, "#####|#*.*#|#.###|#...#|#####|") == (0, 1)
    assert maze_errors.error_kinds(maze, prompt, answer, "#####|#*") == (0, 2)  # cut short: the rest unmarked


def test_bench_flow_in_distribution_is_the_mean_over_the_trained_levels_the_test_split_holds() -> None:
    """A test split of 16/32/64 bits for a model trained on 8/12/16 holds one trained level: its
    in-distribution accuracy is that level's, not a third of it; a split of longer inputs only has none."""
    bench_flow = importlib.import_module("bench_flow")
    rec = {"task": {"train_difficulties": [8, 12, 16]}, "accuracy_by_difficulty": {"16": 1.0, "32": 0.5, "64": 0.25},
           "nfe_forward": 24.0, "n_examples": 300}
    row = bench_flow.summary(rec)
    assert row["accuracy_trained"] == 1.0
    assert row["accuracy_beyond"] == {"32": 0.5, "64": 0.25}
    rec["accuracy_by_difficulty"] = {"32": 0.5, "64": 0.25}
    assert bench_flow.summary(rec)["accuracy_trained"] is None
    rec["task"]["train_difficulties"] = None  # JSONL trained on every level of its file
    assert bench_flow.summary(rec)["accuracy_trained"] == 0.375 and bench_flow.summary(rec)["accuracy_beyond"] == {}
    assert "n/a" in bench_flow.fmt(None)


def test_bench_flow_solver_spread_is_over_the_six_settings_at_the_trained_horizon() -> None:
    """Rows at other horizons (x4) or with the convergence stop never enter the spread; a missing or
    failed solver setting leaves it undefined rather than narrower."""
    bench_flow = importlib.import_module("bench_flow")
    evals = {name: {"accuracy_trained": 0.9} for name in bench_flow.SIX_SOLVERS}
    evals["rk4 0.5 x1"] = {"accuracy_trained": 0.85}
    evals["dopri5 1e-3 x4"] = {"accuracy_trained": 0.1}  # not a solver setting at the trained horizon
    assert bench_flow.solver_spread(evals) == 0.05
    evals["dopri5 1e-5 x1"] = {"error": "SolverError: too many steps"}
    assert bench_flow.solver_spread(evals) is None


def test_select_on_val_chooses_on_validation_and_reads_test_only_for_the_choice(tmp_path: Path) -> None:
    """Two trained runs: the one with the higher validation accuracy (at a validation level beyond
    training) is chosen, and only it is evaluated on test."""
    import select_on_val
    from conftest import compose_config
    from odelm import train

    ckpts = []
    for seed in (0, 1):
        cfg = compose_config("train", [*SMALL, "model=looped", "model.loops=2", f"seed={seed}", "trainer.max_steps=30"])
        ckpts.append(train.run(cfg, run_dir=tmp_path / f"seed{seed}")["checkpoint"])
    result = select_on_val.main([f"--checkpoint=a={ckpts[0]}", f"--checkpoint=b={ckpts[1]}", "--val-difficulties=3,4",
                                 "--n-val=16", "--level=3", f"--runs={tmp_path / 'sel'}",
                                 f"--out={tmp_path / 'sel.json'}", "model.loops=3"])
    val = {name: r["accuracy_by_difficulty"]["3"] for name, r in result["validation"].items()}
    assert all(r["split"] == "val" and r["n_examples"] == 32 for r in result["validation"].values())
    assert result["chosen"] == ("a" if val["a"] >= val["b"] else "b")
    assert result["test_of_chosen"]["split"] == "test"
    assert sorted(p.parent.name for p in (tmp_path / "sel").glob("*/test")) == [result["chosen"]]
    assert json.loads((tmp_path / "sel.json").read_text())["chosen"] == result["chosen"]
    with pytest.raises(SystemExit, match=r"\['split=test'\]: the script sets split"):
        select_on_val.main([f"--checkpoint=a={ckpts[0]}", "--val-difficulties=2", f"--out={tmp_path / 'x.json'}",
                            "split=test"])
    with pytest.raises(SystemExit, match="--level 7 is not a validation level"):
        select_on_val.main([f"--checkpoint=a={ckpts[0]}", "--val-difficulties=3", "--level=7",
                            f"--runs={tmp_path / 'bad'}", f"--out={tmp_path / 'bad.json'}"])


def test_select_on_val_chooses_the_test_time_setting_on_validation_and_tests_it_under_that_setting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With --setting, each (checkpoint, setting) pair is a candidate, a setting's overrides win over the
    shared ones, the pair that validates best (here the second, by construction) is read on test under
    its own overrides (its NFE is its loop count), and no other pair reads test."""
    import select_on_val
    from conftest import compose_config
    from odelm import train

    cfg = compose_config("train", [*SMALL, "model=looped", "model.loops=2", "trainer.max_steps=30"])
    ckpt = train.run(cfg, run_dir=tmp_path / "run")["checkpoint"]
    real_evaluate, seen = select_on_val.evaluate, []

    def evaluate(path: str, overrides: list[str], run_dir: Path) -> dict:  # the real one; validation rigged
        record = real_evaluate(path, overrides, run_dir)
        seen.append((overrides[0], record["nfe_forward"]))
        if "split=val" in overrides:  # the more loops, the better on validation
            record["accuracy"] = record["nfe_forward"] / 10
        return record

    monkeypatch.setattr(select_on_val, "evaluate", evaluate)
    result = select_on_val.main([f"--checkpoint=a={ckpt}", "--setting=l1=model.loops=1", "--setting=l3=model.loops=3",
                                 "--val-difficulties=3", "--n-val=16", f"--runs={tmp_path / 'sel'}",
                                 f"--out={tmp_path / 'sel.json'}", "model.loops=2"])
    assert seen == [("split=val", 1.0), ("split=val", 3.0), ("split=test", 3.0)]  # test read once, for the choice
    assert result["chosen"] == "a@l3" and result["chosen_overrides"] == ["model.loops=2", "model.loops=3"]
    assert result["test_of_chosen"]["split"] == "test" and result["test_of_chosen"]["nfe_forward"] == 3
    assert sorted(p.parent.name for p in (tmp_path / "sel").glob("*/test")) == ["a@l3"]
    own = json.loads((tmp_path / "run" / "metrics.json").read_text())  # the run's test at its trained setting
    assert result["run_test_record_of_chosen"]["accuracy"] == own["accuracy"] and own["nfe_forward"] == 2
    for bad in ("--setting=t=split=test", "--setting=empty=", "--setting=solver.t_end=4"):
        with pytest.raises(SystemExit, match=r"the script sets split|--setting must be NAME=OVERRIDES"):
            select_on_val.main([f"--checkpoint=a={ckpt}", bad, "--val-difficulties=2", f"--out={tmp_path / 'x.json'}"])


def test_exported_splits_are_the_runs_splits_and_train_from_files(tmp_path: Path) -> None:
    """experiments/export_task.py writes exactly the splits a run draws; those files, read back as JSONL
    with the task as checker, give the same examples (the hard-puzzle data of the GPU session)."""
    import export_task
    from conftest import compose_config
    from odelm.build import build_data

    given = ["task=sudoku", "task.n_train=40", "task.n_test_per_difficulty=4", "data.n_val_per_difficulty=3",
             "task.params.min_guesses=0", "seed=3"]
    record = export_task.main(["--out", str(tmp_path), *given])
    drawn = build_data(compose_config("train", given), seed=3)
    assert drawn.train != build_data(compose_config("train", given), seed=0).train  # the seed matters
    back = build_data(compose_config("train", record["train_with"]), seed=3)
    for split in ("train", "val", "test"):
        rows = [json.loads(line) for line in (tmp_path / f"{split}.jsonl").read_text().splitlines()]
        assert [(r["prompt"], r["answer"], r["difficulty"]) for r in rows] == \
            [(e.prompt, e.answer, e.difficulty) for e in getattr(drawn, split)]
        assert getattr(back, split) == getattr(drawn, split)
    assert back.layout == "per_position" and back.task.name == "sudoku"
    assert not {e.prompt for e in drawn.test} & {e.prompt for e in drawn.train + drawn.val}
    assert record["counts"] == {"train": 40, "val": 18, "test": 24}
    with pytest.raises(SystemExit, match="already files"):
        export_task.main(["--out", str(tmp_path / "x"), "task=jsonl", "task.train=a", "task.test=b"])


def test_gpu_session_summary_is_reproduced_from_the_committed_archives(tmp_path: Path) -> None:
    """Every GPU number in the READMEs comes from summary.json, which the summary script rebuilds exactly
    from the session's returned files (gpu_flow.json, runs.tgz, f10_eval.tgz)."""
    import shutil

    import gpu_session_summary

    committed = ROOT / "experiments" / "results" / "gpu_session"
    for name in ("gpu_flow.json", "runs.tgz", "f10_eval.tgz"):
        shutil.copy(committed / name, tmp_path / name)
    summary = gpu_session_summary.main(["--dir", str(tmp_path), "--figures", str(tmp_path / "figures")])
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads((committed / "summary.json").read_text())
    assert (tmp_path / "figures" / "f10_constraint_compute.png").is_file()
    f10 = {(r["grid"], r["arm"]): r for r in summary["f10"]["table"] if r["series"] == "trained"}
    assert f10[("6x6", "ode_grid")]["n"] == "3" and len(f10) == 8


def test_second_gpu_session_summary_is_reproduced_from_the_committed_archive(tmp_path: Path) -> None:
    """The second session's numbers (d_model 512 on pointer chasing, the convergence stop's NFE per
    example) come from its summary.json, which --session 2 rebuilds exactly from runs.tgz and f10_eval.tgz."""
    import shutil

    import gpu_session_summary

    committed = ROOT / "experiments" / "results" / "gpu_session2"
    for name in ("runs.tgz", "f10_eval.tgz"):
        shutil.copy(committed / name, tmp_path / name)
    summary = gpu_session_summary.main(["--session", "2", "--dir", str(tmp_path)])
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads((committed / "summary.json").read_text())
    assert set(summary["d512"]["runs"]) == {"looped", "grid", "flow"} and not summary["d512"]["missing_evals"]
    stop = summary["d512"]["evals"]["flow_converged"][0]
    n_stopped = sum(c for level in stop["nfe_histogram_by_difficulty"].values() for c in level.values())
    assert n_stopped == stop["n_examples"] == 240


@pytest.mark.parametrize("folder", ["gpu_sudoku9", "gpu_sudoku9_seed1"])
def test_sudoku9_gpu_summary_is_reproduced_from_the_committed_archive(tmp_path: Path, folder: str) -> None:
    """The 9x9 numbers of the READMEs (experiments/gpu_sudoku9.sh) come from its summary.json, which
    --session 3 rebuilds exactly from runs.tgz; each sweep covers every setting the script asked for."""
    import shutil

    import gpu_session_summary

    committed = ROOT / "experiments" / "results" / folder
    for name in ("runs.tgz", "session.log"):
        shutil.copy(committed / name, tmp_path / name)
    summary = gpu_session_summary.main(["--session", "3", "--dir", str(tmp_path)])
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads((committed / "summary.json").read_text())
    assert set(summary["runs"]) == {"looped", "ode_grid"} and not summary["missing_evals"] + summary["missing_runs"]
    assert summary["device"].endswith("NVIDIA H200")
    assert [r["value"] for r in summary["evals"]["looped_loops"]] == [8, 16, 32]
    assert [r["value"] for r in summary["evals"]["ode_t_end"]] == [4, 8, 16]
    assert [r["value"] for r in summary["evals"]["ode_dopri5"]] == [4, 8]
    # the trained setting of each sweep is the run's own test record
    for arm, sweep in (("looped", "looped_loops"), ("ode_grid", "ode_t_end")):
        assert summary["evals"][sweep][0]["accuracy"] == summary["runs"][arm]["accuracy"]


def test_gpu_extrapolation_maze_table_is_the_committed_results() -> None:
    """experiments/README's maze table of the GPU extrapolation session: every cell (steps, and valid
    shortest paths per size at each swept depth) is the committed JSON's, each run's command asks for the
    time-run cosine and ordered rows are the ordered runs."""
    readme = (ROOT / "experiments" / "README.md").read_text()
    results = ROOT / "experiments" / "results" / "gpu_extrapolation"
    rows = {"ODE grid (Euler 0.5, horizon 12), random tie-breaking": "maze_ode_random",
            "the same, ordered tie-breaking": "maze_ode_ordered",
            "the same, ordered, seed 1": "maze_ode_ordered_seed1",
            "looped T = 24, ordered": "maze_looped_ordered"}
    for label, name in rows.items():
        line = next(l for l in readme.splitlines() if l.startswith(f"| {label} |"))
        cells = [c.strip() for c in line.strip("|").split("|")][1:]
        record = json.loads((results / f"{name}.json").read_text())
        assert int(cells[0]) == record["train_steps"]
        sweep = record["loop_sweep"]
        assert cells[1] == " / ".join(str(int(r["nfe_forward"])) for r in sweep)
        for size, cell in zip((3, 4, 5, 6, 7), cells[2:]):
            assert [float(v) for v in cell.split(" / ")] == [round(r[f"valid_shortest_path_d{size}"], 3) for r in sweep]
        assert "optim.schedule=time" in record["overrides"]
        assert ("tie_break=random" in record["command"]) == (name == "maze_ode_random")


def test_a_result_files_command_carries_the_thread_count_only_when_one_was_set(monkeypatch) -> None:
    from odelm.runs import command_line

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert command_line("experiments/x.py", ["--n", "a b"]) == "python experiments/x.py --n 'a b'"
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert command_line("experiments/x.py", ["--n", "1"]) == "OMP_NUM_THREADS=2 python experiments/x.py --n 1"


def test_state_norms_follow_the_closed_form_of_a_pure_leak(tmp_path: Path) -> None:
    """A checkpoint whose blocks are the identity (output projections zeroed) has the field −λh, so
    the looped state's rms at depth t is (1 − λ)^t times its rms at depth 0, at every position."""
    import state_norms
    import torch

    from conftest import compose_config
    from odelm import train

    cfg = compose_config("train", [*SMALL, "model=looped", "model.loops=2", "model.state_decay=0.5",
                                   "trainer.max_steps=5"])
    ckpt = Path(train.run(cfg, run_dir=tmp_path / "run")["checkpoint"])
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    for key in checkpoint["state_dict"]:
        if key.endswith(("attn.proj.weight", "mlp.down.weight")):
            checkpoint["state_dict"][key].zero_()
    torch.save(checkpoint, tmp_path / "leak.ckpt")
    result = state_norms.main([f"--ckpt={tmp_path / 'leak.ckpt'}", "--difficulty=3", "--depths=0,1,3", "--n=12",
                               "--block=4", f"--out={tmp_path / 'norms.json'}"])
    assert result["state_decay"] == 0.5 and result["trained_depth"] == 2
    assert json.loads((tmp_path / "norms.json").read_text())["depths"] == result["depths"]
    start = result["depths"][0]
    assert [row["depth"] for row in result["depths"]] == [0.0, 1.0, 3.0]
    for row in result["depths"][1:]:
        factor = 0.5 ** row["depth"]
        for got, at_zero in zip(row["rms_q10_q50_q90"] + row["rms_by_block"], start["rms_q10_q50_q90"] + start["rms_by_block"]):
            assert got == pytest.approx(factor * at_zero, rel=2e-3, abs=2e-3)
