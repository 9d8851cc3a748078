"""Regenerate every figure and table of the study from nothing, in one command:

    python experiments/reproduce.py                       # smoke scale, 2 local jobs (2-core CPU)
    python experiments/reproduce.py --scale cpu --studies core,regularisers,mano_iso   # F1-F7 + T1, models trained
    python experiments/reproduce.py --scale cpu --studies flow --arms looped,ode_grid,random_solver
    python experiments/reproduce.py --scale paper --launcher slurm --jobs 64
    python experiments/reproduce.py --stages figures      # redraw from the run directories only

Three stages, each a plain command you can also run by hand (every command is printed first):
1. train: one Hydra multirun per study, `python -m odelm.train -m experiment=<study> scale=<scale>`
   (conf/experiment/: core, regularisers, mano_iso, constraint, flow), jobs through the joblib launcher.
2. eval: the test-time sweeps of the trained checkpoints, `python -m odelm.eval -m ckpt=A,B,...`
   with the settings of EVAL_PLANS below (loops, horizons, tolerances, solvers, exits, logit lens).
3. figures: experiments/f1_*.py ... f10_*.py and t1_summary.py read the run directories and write
   PNG, PDF and CSV into --figures.

Stages 1 and 2 skip work that is already complete (a study whose jobs all wrote a successful
metrics.json, an eval plan whose jobs did), so an interrupted reproduction resumes at the first
incomplete study or plan, which is run again as a whole. A job that fails writes why in its
metrics.json, the sweep goes on, and the figures use the jobs that succeeded.
"""
from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from figlib import load_runs  # noqa: E402

STUDIES = ("core", "regularisers", "mano_iso", "constraint", "flow")
FIGURES = ("f1_test_time_compute", "f2_solver_tolerance", "f3_nfe_over_training", "f4_exit_strategies",
           "f5_logit_lens", "f6_iso_param_flop", "f7_depth_generalisation", "f8_solver_independence",
           "f9_depth_extrapolation", "f10_constraint_compute", "t1_summary")


@dataclass
class EvalPlan:
    """One `python -m odelm.eval -m` call over the final checkpoints of some arms of a study."""

    name: str
    arms: tuple[str, ...]
    overrides: list[str]
    per_example: bool = False  # one solve per example: a smaller test set below paper scale (PER_EXAMPLE_N_TEST)
    study: str = "core"


# Test examples per difficulty of the per-example (event-stopped) ODE plans below paper scale: one
# solve per example is too dear for the full set on a CPU. Each difficulty's test examples are seeded
# on their own, so the smaller set is a subset of the full one that the batched plans use.
PER_EXAMPLE_N_TEST = {"smoke": 20, "cpu": 50}

LOOP_ARMS = ("looped", "looped_ouro")
ODE_ARMS = ("ode", "ode_grid")
TOLERANCES = "[1e-1,1e-2,1e-3,1e-4]"
EVAL_PLANS = [
    # F1 / F5 / F7: more (or fewer) loops than trained, and the logit lens at every loop step
    EvalPlan("loops", LOOP_ARMS, ["sweep.key=model.loops", "sweep.values=[1,2,3,4,5,6,8]", "lens.depths=[0,1,2,3,4]"]),
    # F1 / F5 / F7: the ODE models solved adaptively (dopri5 1e-3) to other horizons; lens along tau
    EvalPlan("horizon", ODE_ARMS, ["solver=dopri5", "sweep.key=solver.t_end", "sweep.values=[1,2,3,4,6,8]",
                                   "lens.depths=[0,0.5,1,2,3,4]"]),
    # F1 / F2: adaptive methods x tolerance grid, with the NFE backward of a training step
    EvalPlan("tolerance", ODE_ARMS, ["solver=dopri5,bosh3,adaptive_heun", "sweep.key=[solver.rtol,solver.atol]",
                                     f"sweep.values={TOLERANCES}", "probe_backward=true"]),
    # F2: fixed-grid methods x step size
    EvalPlan("fixed_grid", ODE_ARMS, ["solver=euler,rk4", "sweep.key=solver.step_size", "sweep.values=[1.0,0.5,0.25]",
                                      "probe_backward=true"]),
    # F4: exit strategies of the looped family (per example; the loop is batched, so full test sets)
    EvalPlan("exit_loop_state_change", LOOP_ARMS, ["exit=state_change", "sweep.key=exit.threshold",
                                                   "sweep.values=[1.0,0.6,0.4,0.2,0.1]"]),
    EvalPlan("exit_loop_kl", LOOP_ARMS, ["exit=kl", "sweep.key=exit.threshold", "sweep.values=[1.0,0.3,0.1,0.01,0.001]"]),
    EvalPlan("exit_loop_q", ("looped_ouro",), ["exit=q_exit", "sweep.key=exit.q", "sweep.values=[0.3,0.5,0.7,0.9,0.99]"]),
    # F4: the looped family's convergence stop (‖h_k − h_{k−1}‖/‖h_k‖ < ε), up to 8 loops
    EvalPlan("exit_loop_converged", LOOP_ARMS, ["exit=converged", "exit.max_t_end=8", "sweep.key=exit.threshold",
                                                "sweep.values=[0.3,0.1,0.03,0.01]"]),
    # F4: event-stopped ODE solves, one per example (dopri5 1e-3): smaller test sets below paper scale.
    # The static baseline is solved per example too, on the same examples (each difficulty's test
    # examples are seeded on their own, so the smaller set is a subset of the larger one), with no
    # padding in any NFE count.
    EvalPlan("exit_ode_static", ODE_ARMS, ["solver=dopri5", "exit=static", "exit.mode=per_example",
                                           "sweep.key=exit.max_depth", "sweep.values=[1.0,2.0,3.0,4.0]"],
             per_example=True),
    EvalPlan("exit_ode_converged", ODE_ARMS, ["solver=dopri5", "exit=converged", "exit.max_t_end=8",
                                              "sweep.key=exit.threshold", "sweep.values=[0.3,0.1,0.03,0.01]"],
             per_example=True),
    EvalPlan("exit_ode_state_change", ODE_ARMS, ["solver=dopri5", "exit=state_change", "sweep.key=exit.threshold",
                                                 "sweep.values=[1.0,0.4,0.1]"], per_example=True),
    EvalPlan("exit_ode_kl", ODE_ARMS, ["solver=dopri5", "exit=kl", "sweep.key=exit.threshold",
                                       "sweep.values=[1.0,0.1,0.01]"], per_example=True),
    # F10: Sudoku (study "constraint"): constraint satisfaction vs test-time compute, per difficulty
    EvalPlan("constraint_loops", ("looped",), ["sweep.key=model.loops", "sweep.values=[1,2,4,8,12,16,24,32]"],
             study="constraint"),
    EvalPlan("constraint_exit", ("looped",), ["exit=state_change", "exit.max_depth=32", "sweep.key=exit.threshold",
                                              "sweep.values=[0.3,0.1,0.03,0.01]"], study="constraint"),
    EvalPlan("constraint_horizon", ("ode_grid",), ["sweep.key=solver.t_end", "sweep.values=[0.5,1,2,4,6,8,12,16]"],
             study="constraint"),
    EvalPlan("constraint_tolerance", ("ode_grid",), ["solver=dopri5", "sweep.key=[solver.rtol,solver.atol]",
                                                     "sweep.values=[1e-1,1e-2,1e-3]"], study="constraint"),
]


# Study "flow" (F8, F9): every arm solved as an ODE (the looped one too: Loop(T) = Euler step 1)
FLOW_ARMS = ("looped", "ode_grid", "random_solver", "shortcut", "horizons", "progressive", "fixed_point", "flow")
EVAL_PLANS += [
    # F8: fixed grids (euler 1 / 0.5, rk4 1 / 0.5) and dopri5 at three tolerances
    EvalPlan("flow_fixed_grid", FLOW_ARMS, ["model.integrator=ode", "solver=euler,rk4", "sweep.key=solver.step_size",
                                            "sweep.values=[1.0,0.5]"], study="flow"),
    EvalPlan("flow_tolerance", FLOW_ARMS, ["model.integrator=ode", "solver=dopri5", "sweep.key=[solver.rtol,solver.atol]",
                                           "sweep.values=[1e-2,1e-3,1e-5]"], study="flow"),
    # F9: horizons x1, x2, x4 the trained t_end = 4, on the training grid (euler 1) and adaptively
    EvalPlan("flow_horizon", FLOW_ARMS, ["model.integrator=ode", "solver=euler,dopri5", "solver.step_size=1.0",
                                         "sweep.key=solver.t_end", "sweep.values=[4.0,8.0,16.0]"], study="flow"),
    # F9: the convergence stop (dopri5 1e-3, per example), up to x4 the trained horizon
    EvalPlan("flow_converged", FLOW_ARMS, ["model.integrator=ode", "solver=dopri5", "exit=converged",
                                           "exit.max_t_end=16", "sweep.key=exit.threshold", "sweep.values=[1e-2,1e-3]"],
             per_example=True, study="flow"),
]


def run(cmd: list[str], env: dict) -> int:
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, env=env).returncode


def launcher_overrides(launcher: str, jobs: int) -> list[str]:
    if launcher == "local":
        return ["hydra/launcher=local", f"hydra.launcher.n_jobs={jobs}"]
    if launcher == "slurm":
        return ["hydra/launcher=slurm", f"hydra.launcher.array_parallelism={jobs}"]
    return []  # basic: one job after another in this process


def sweep_size(overrides: list[str]) -> int:
    """Jobs that Hydra makes of these overrides: the product of their comma-separated choices
    (a bracketed list is one value)."""
    n = 1
    for item in overrides:
        value = item.split("=", 1)[1]
        if not value.startswith("[") and "," in value:
            n *= len(value.split(","))
    return n


def complete(sweep_dir: Path, expected_jobs: int) -> bool:
    done = load_runs(sweep_dir.parent, sweep_dir.name)  # the jobs that succeeded
    return (sweep_dir / "multirun.yaml").exists() and len(done) >= expected_jobs


def study_jobs(study: str, arms: list[str] | None = None) -> int:
    """Jobs of a study's sweep (arms x seeds), from its config; `arms` replaces its list of arms."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(HERE.parent / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={study}"], return_hydra_config=True)
    params = dict(cfg.hydra.sweeper.params)
    if arms:
        params["arm"] = arm_override(study, arms).split("=", 1)[1]
    return sweep_size([f"{key}={value}" for key, value in params.items()])


def arm_override(study: str, arms: list[str]) -> str:
    """The sweep override that trains only `arms` of `study` (a command-line sweep replaces the
    study's own `hydra.sweeper.params.arm`); an arm that the study does not have fails here."""
    missing = [a for a in arms if not (HERE.parent / "conf" / "arm" / study / f"{a}.yaml").exists()]
    if missing:
        known = sorted(p.stem for p in (HERE.parent / "conf" / "arm" / study).glob("*.yaml"))
        raise SystemExit(f"reproduce: study {study!r} has no arm {missing}; its arms: {known}")
    return "arm=" + ",".join(f"{study}/{a}" for a in arms)


def train_stage(args, env: dict) -> None:
    for study in args.studies:
        sweep_dir = Path(args.out) / study
        if complete(sweep_dir, study_jobs(study, args.arms)):
            print(f"== {study}: complete, skipped ({sweep_dir})", flush=True)
            continue
        start = time.time()
        arms = [arm_override(study, args.arms)] if args.arms else []
        run([sys.executable, "-m", "odelm.train", "-m", f"experiment={study}", f"scale={args.scale}",
             f"hydra.sweep.dir={sweep_dir}", *arms, *launcher_overrides(args.launcher, args.jobs),
             *args.train_overrides], env)
        print(f"== {study}: {time.time() - start:.0f} s", flush=True)


def eval_stage(args, env: dict) -> None:
    for plan in EVAL_PLANS:
        if plan.study not in args.studies:
            continue
        runs = [r for r in load_runs(args.out, plan.study) if r.get("arm") in plan.arms]
        ckpts = [r["checkpoint"] for r in runs]
        if not ckpts:
            print(f"== eval {plan.name}: no finished checkpoints of arms {plan.arms}, skipped", flush=True)
            continue
        sweep_dir = Path(args.out) / "eval" / plan.name
        if complete(sweep_dir, len(ckpts) * sweep_size(plan.overrides)):
            print(f"== eval {plan.name}: complete, skipped", flush=True)
            continue
        start = time.time()
        small = PER_EXAMPLE_N_TEST.get(args.scale) if plan.per_example else None
        extra = [f"task.n_test_per_difficulty={small}"] if small else []
        run([sys.executable, "-m", "odelm.eval", "-m", f"ckpt={','.join(ckpts)}", *plan.overrides, *extra,
             f"hydra.sweep.dir={sweep_dir}", "hydra.sweep.subdir=${hydra.job.num}",
             *launcher_overrides(args.launcher, args.jobs)], env)
        print(f"== eval {plan.name}: {time.time() - start:.0f} s", flush=True)


def figures_stage(args) -> None:
    for name in FIGURES:
        module = importlib.import_module(name)
        start = time.time()
        try:
            module.main(["--root", str(args.out), "--out", str(args.figures)])
        except Exception as err:  # one figure's missing data must not cost the others
            print(f"== {name} failed: {type(err).__name__}: {err}", flush=True)
            continue
        print(f"== {name}: {time.time() - start:.1f} s", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="smoke", choices=("smoke", "cpu", "paper"))
    parser.add_argument("--out", default=None, help="run directories (default outputs/reproduce/<scale>)")
    parser.add_argument("--figures", default=None,
                        help="where PNG, PDF and CSV go (default: experiments/figures, the committed ones, "
                             "for the default --out; <out>/figures when --out is given)")
    parser.add_argument("--stages", default="train,eval,figures")
    parser.add_argument("--studies", default=",".join(STUDIES))
    parser.add_argument("--arms", default=None,
                        help="train only these arms of each study, e.g. looped,ode_grid,random_solver (default: all)")
    parser.add_argument("--launcher", default="local", choices=("local", "slurm", "basic"))
    parser.add_argument("--jobs", type=int, default=2, help="parallel jobs (local: processes; slurm: array size)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job (local launcher)")
    parser.add_argument("train_overrides", nargs="*", help="extra overrides for every training job")
    args = parser.parse_args(argv)
    if args.figures is None:
        args.figures = f"{args.out}/figures" if args.out else "experiments/figures"
    args.out = args.out or f"outputs/reproduce/{args.scale}"
    args.studies = [s for s in args.studies.split(",") if s]
    args.arms = [a for a in args.arms.split(",") if a] if args.arms else None
    unknown = [s for s in args.studies if s not in STUDIES]
    if unknown:
        parser.error(f"unknown study {unknown}; choose from {STUDIES}")
    stages = [s for s in args.stages.split(",") if s]
    if any(s not in ("train", "eval", "figures") for s in stages):
        parser.error(f"--stages takes train, eval, figures; got {args.stages!r}")
    if args.arms and "train" in stages:
        for study in args.studies:
            arm_override(study, args.arms)  # an unknown arm fails before any training
    env = dict(os.environ)
    if args.launcher == "local":
        env["OMP_NUM_THREADS"] = str(args.threads)
    env.setdefault("WANDB_MODE", "offline")
    start = time.time()
    if "train" in stages:
        train_stage(args, env)
    if "eval" in stages:
        eval_stage(args, env)
    if "figures" in stages:
        figures_stage(args)
    print(f"== reproduce ({args.scale}): {time.time() - start:.0f} s; runs in {args.out}, figures in {args.figures}")


if __name__ == "__main__":
    main()
