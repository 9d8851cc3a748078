"""Objectives benchmark (CPU, 1 thread): what each training recipe does to evaluation NFE, accuracy
and training time on the default task, and trajectory distillation against truncating the teacher.

    python experiments/bench_objectives.py --teacher RUN/checkpoints/final.ckpt            # reduced run
    python experiments/bench_objectives.py --steps 7750 --distill-steps 2000               # full run (hours)

(a) From scratch, the same step budget (--steps) for every recipe: the looped model (reference) and
    the ODE model (dopri5, rtol=atol=1e-3, t_end=4) trained with plain CE, CE+fm_reflow, CE+kinetic,
    CE+RNODE (kinetic+Jacobian), CE+STEER, and CE+kinetic trained on a fixed grid (euler, step 0.5)
    then evaluated adaptively. Every ODE model is evaluated by dopri5 at the same tolerance.
(b) Distillation from a trained looped teacher (--teacher; trained here for --teacher-steps if not
    given): fm_distill and fm_endpoint students (--distill-steps, initialised from the teacher).
    At equal NFE k the student solved by Euler with k steps is compared with the teacher's loop
    truncated to k steps: KL(teacher ‖ model) on the answer positions and accuracy. The student
    with no distillation steps (= the teacher's field) is reported too.
Writes <out>/objectives.json and <out>/objectives.md; run directories (checkpoints) under --runs.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from odelm import train  # noqa: E402
from odelm.build import build_data, build_integrator, build_model  # noqa: E402
from odelm.data import IGNORE, EncodedExamples, collate  # noqa: E402
from odelm.depth import Loop, ODESolve  # noqa: E402
from odelm.eval import load_checkpoint  # noqa: E402
from odelm.evaluation import EvalAccumulator  # noqa: E402
from odelm.tasks import CharTokenizer  # noqa: E402
from odelm.precision import configure_arithmetic  # noqa: E402

CONF = str(Path(__file__).resolve().parents[1] / "conf")
TOL = dict(method="dopri5", rtol=1e-3, atol=1e-3, t_end=4.0)
SCRATCH = {  # name → train overrides (the step budget and the rest are shared)
    "looped ce": ["model=looped", "objective=ce"],
    "ode ce": ["model=ode", "objective=ce"],
    "ode ce+fm_reflow": ["model=ode", "objective=fm_reflow"],
    "ode ce+kinetic": ["model=ode", "objective=kinetic"],
    "ode ce+rnode": ["model=ode", "objective=rnode"],
    "ode ce+steer": ["model=ode", "objective=steer"],
    "ode euler0.5 ce+kinetic": ["model=ode", "solver=euler", "solver.step_size=0.5", "objective=kinetic"],
}


def compose_train(overrides: list[str]):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def current_checkpoint(path: str, out: Path) -> str:
    """A copy of a checkpoint written before newer model keys existed (e.g. model.exit_gate), with
    those keys filled from today's conf/model defaults; the path itself when nothing is missing."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    stored = checkpoint["odelm"]["config"]["model"]
    defaults = OmegaConf.to_container(compose_train([f"model={stored['name']}"]).model, resolve=True)
    missing = {k: v for k, v in defaults.items() if k not in stored}
    if not missing:
        return path
    stored.update(missing)
    out.mkdir(parents=True, exist_ok=True)
    copy = out / f"{Path(path).stem}_current.ckpt"
    torch.save(checkpoint, copy)
    print(f"teacher {path}: filled model keys {missing} from conf/ into {copy}", flush=True)
    return str(copy)


def load(ckpt: str, integrator=None):
    """A trained model from its checkpoint, optionally with another integrator, and its test batches."""
    checkpoint = load_checkpoint(ckpt)
    cfg = OmegaConf.create(checkpoint["odelm"]["config"])
    tokenizer = CharTokenizer.from_dict(checkpoint["odelm"]["tokenizer"])
    model = build_model(cfg, tokenizer.vocab_size, integrator or build_integrator(cfg))
    model.load_state_dict({k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items()
                           if k.startswith("model.")})
    data = build_data(cfg, cfg.seed, tokenizer=tokenizer, train=False)
    test = EncodedExamples(data.test, tokenizer, "test")
    batches = [collate([test[i] for i in range(s, min(s + 250, len(test)))]) for s in range(0, len(test), 250)]
    return model.eval(), batches, cfg


@torch.no_grad()
def evaluate(model, batches, trained: list[int], reference: list[torch.Tensor] | None = None) -> dict:
    """Accuracy (all / trained difficulties), mean NFE, and KL(reference ‖ model) on answer positions."""
    acc, kl_sum, n_tok, logits_out = EvalAccumulator(), 0.0, 0, []
    for i, batch in enumerate(batches):
        out = model(batch.tokens)
        acc.add(batch, out.logits, out.depth.nfe_forward)
        logits_out.append(out.logits)
        if reference is not None:
            mask = batch.targets != IGNORE
            kl = F.kl_div(out.logits[mask].log_softmax(-1), reference[i][mask].log_softmax(-1), log_target=True,
                          reduction="sum")
            kl_sum, n_tok = kl_sum + kl.item(), n_tok + int(mask.sum())
    s = acc.summary()
    inside = [s["accuracy_by_difficulty"][str(d)] * s["n_by_difficulty"][str(d)] for d in trained]
    row = {"accuracy": s["accuracy"], "acc_trained": sum(inside) / sum(s["n_by_difficulty"][str(d)] for d in trained),
           "nfe": s["nfe_forward"]}
    if reference is not None:
        row["kl_to_teacher"] = kl_sum / n_tok
    return row | {"_logits": logits_out}


def train_run(name: str, overrides: list[str], runs: Path, steps: int, seed: int) -> dict:
    cfg = compose_train(overrides + [f"trainer.max_steps={steps}", "trainer.enable_progress_bar=false",
                                     f"seed={seed}", "trainer.checkpoint_every_n_steps=100000"])
    start = time.perf_counter()
    record = train.run(cfg, run_dir=runs / name.replace(" ", "_").replace("+", "_"))
    print(f"[{name}] trained {record['train_steps']} steps in {record['train_seconds']:.0f}s "
          f"(wall {time.perf_counter() - start:.0f}s)", flush=True)
    return record


def fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def table(rows: list[dict]) -> str:
    keys = [k for k in rows[0] if not k.startswith("_")]
    return "\n".join(["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
                     + ["| " + " | ".join(fmt(r.get(k, "-")) for k in keys) + " |" for r in rows])


def scratch_section(args, out: Path) -> list[dict]:
    rows = []
    for name, overrides in SCRATCH.items():
        if args.only and name not in args.only:
            continue
        record = train_run(name, overrides, Path(args.runs), args.steps, args.seed)
        model, batches, cfg = load(record["checkpoint"], None if name.startswith("looped") else ODESolve(**TOL))
        row = evaluate(model, batches, list(cfg.task.train_difficulties))
        row.pop("_logits")
        rows.append({"recipe": name, "steps": record["train_steps"], "train_s": record["train_seconds"],
                     "ms_per_step": 1000 * record["train_seconds"] / max(record["train_steps"], 1), **row})
        print(table(rows[-1:]), flush=True)
    return rows


def distill_section(args, out: Path, teacher_ckpt: str) -> list[dict]:
    teacher, batches, cfg = load(teacher_ckpt)
    trained = list(cfg.task.train_difficulties)
    loops = teacher.integrator.loops
    full = evaluate(teacher, batches, trained)
    reference = full.pop("_logits")
    rows = [{"model": f"teacher loop {loops}", "nfe": full["nfe"], "kl_to_teacher": 0.0,
             "accuracy": full["accuracy"], "acc_trained": full["acc_trained"]}]
    for k in range(1, loops):  # truncating the teacher's loop
        model, _, _ = load(teacher_ckpt, Loop(k))
        r = evaluate(model, batches, trained, reference)
        rows.append({"model": f"teacher truncated to {k} loops", "nfe": r["nfe"], "kl_to_teacher": r["kl_to_teacher"],
                     "accuracy": r["accuracy"], "acc_trained": r["acc_trained"]})
    students = {"teacher field (0 distill steps)": teacher_ckpt}
    for term in ("fm_distill", "fm_endpoint"):
        overrides = ["model=ode", f"objective={term}", f"objective.teacher={teacher_ckpt}", *args.student_overrides]
        record = train_run(f"student {term}", overrides, Path(args.runs), args.distill_steps, args.seed)
        label = f"student {term} ({record['train_steps']} steps, {record['train_seconds']:.0f}s)"
        students[label] = record["checkpoint"]
    t_end = float(loops)
    for label, ckpt in students.items():
        solvers = [(f"euler {k} steps", ODESolve("euler", step_size=t_end / k, t_end=t_end)) for k in (1, 2, loops)]
        solvers.append(("dopri5 1e-3", ODESolve(**TOL)))
        for solver_name, solver in solvers:
            model, _, _ = load(ckpt, solver)
            r = evaluate(model, batches, trained, reference)
            rows.append({"model": f"{label}, {solver_name}", "nfe": r["nfe"], "kl_to_teacher": r["kl_to_teacher"],
                         "accuracy": r["accuracy"], "acc_trained": r["acc_trained"]})
            print(table(rows[-1:]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="training steps of every from-scratch recipe")
    parser.add_argument("--distill-steps", type=int, default=1000)
    parser.add_argument("--teacher", default=None, help="trained looped checkpoint (default: train one)")
    parser.add_argument("--teacher-steps", type=int, default=7750)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None, help="subset of the from-scratch recipes")
    parser.add_argument("--student-overrides", nargs="*", default=[],
                        help="extra train overrides of the distilled students, e.g. model.depth_conditioned=true")
    parser.add_argument("--skip-scratch", action="store_true")
    parser.add_argument("--skip-distill", action="store_true")
    parser.add_argument("--out", default="experiments/results/bench_objectives")
    parser.add_argument("--runs", default="outputs/bench_objectives/runs", help="run directories (checkpoints)")
    args = parser.parse_args()
    configure_arithmetic()  # the one arithmetic of every entry point (odelm/precision.py)
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"args": vars(args), "threads": torch.get_num_threads(), "torch": torch.__version__}
    if not args.skip_distill:
        teacher = args.teacher
        if teacher is None:
            record = train_run("teacher looped", ["model=looped"], Path(args.runs), args.teacher_steps, args.seed)
            teacher = record["checkpoint"]
        teacher = current_checkpoint(teacher, Path(args.runs))
        result["distill"] = distill_section(args, out, teacher)
        (out / "objectives.json").write_text(json.dumps(result, indent=2) + "\n")
    if not args.skip_scratch:
        result["scratch"] = scratch_section(args, out)
    (out / "objectives.json").write_text(json.dumps(result, indent=2) + "\n")
    text = ""
    if "scratch" in result:
        text += f"## (a) from scratch, {args.steps} steps each\n\n" + table(result["scratch"]) + "\n\n"
    if "distill" in result:
        text += f"## (b) distillation from {args.teacher}\n\n" + table(result["distill"]) + "\n"
    (out / "objectives.md").write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
