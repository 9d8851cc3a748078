#!/usr/bin/env bash
# The second prepared GPU session (never part of CI): what the first one (gpu_session.sh) left open,
# with the lesson it taught (time-budgeted runs get the GPU alone; a task that is learnable in minutes).
#  1. d_model 512 on pointer chasing (task=pointer_chase, learnable in minutes), ALONE on the GPU, one
#     after the other: the looped model, the ODE default (Euler grid) and the flow recipe (random
#     discretisation + progressive + path independence), each stopped at 0.9 validation accuracy or
#     its wall-clock budget. Then, on test: depth sweeps (1x / 2x / 4x the trained depth) and the
#     convergence-stopped solve (exit=converged, one solve per example, so on the first 40 test prompts
#     of each level), with its NFE per example: issue "the continuous-depth model as a real flow", item 5.
#  2. After 1, F10 again in full (conf/experiment/constraint.yaml, 4x4 and 6x6 Sudoku, four arms, three
#     seeds, 1000 matched steps) with every eval plan, the dopri5 tolerance plan included (the first
#     session's cap cut it), alone on the GPU but for the step-1 evaluations.
# Usage (results: session.log, runs.tgz and f10_eval.tgz, run directories without checkpoints; then
# python experiments/gpu_session_summary.py --session 2 --dir <them>):
#   OUT=experiments/results/gpu_session2 bash experiments/gpu_session2.sh     # on the GPU machine
#   DRY=1 OUT=/tmp/gpu_dry2 bash experiments/gpu_session2.sh                  # on a CPU: toy budgets, checks the script
set -uo pipefail
OUT=${OUT:-experiments/results/gpu_session2}
RUNS=${RUNS:-/tmp/gpu_session2_runs}
rm -rf "$RUNS"
mkdir -p "$OUT" "$RUNS"
export PYTHONUNBUFFERED=1 WANDB_MODE=offline OMP_NUM_THREADS=2
if [ "${DRY:-0}" = 1 ]; then
  D512="model.d_model=32 model.n_heads=2 trainer.val_check_interval=2 trainer.accelerator=cpu"
  LOOPED_BUDGET="trainer.max_steps=4"; GRID_BUDGET="trainer.max_steps=4"; FLOW_BUDGET="trainer.max_steps=4"
  EVAL_DEVICE="device=cpu"
  F10="--arms looped,ode_grid trainer.max_steps=4 model.d_model=32 model.n_heads=2 trainer.accelerator=cpu"
  JOBS=2
else
  D512="model.d_model=512 model.n_heads=8 target_accuracy=0.9"
  LOOPED_BUDGET="trainer.max_steps=20000 trainer.max_time_minutes=0.6"
  GRID_BUDGET="trainer.max_steps=20000 trainer.max_time_minutes=0.9"
  FLOW_BUDGET="trainer.max_steps=20000 trainer.max_time_minutes=1.1"
  EVAL_DEVICE="device=cuda"
  F10=""
  JOBS=12
fi
EVAL_LIMIT=${EVAL_LIMIT:-150}
F10_LIMIT=${F10_LIMIT:-320}
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/session.log"; }
pack() { tar -czf "$OUT/runs.tgz" -C "$RUNS" --exclude='*.ckpt' --exclude='wandb' --exclude='f10*' . ; }
log "start: $(python3 -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")')"

# 1. d_model 512 on pointer chasing, one run at a time
COMMON="task=pointer_chase $D512 trainer.enable_progress_bar=false data.curriculum.enabled=false"  # as measured
python3 -m odelm.train model=looped $COMMON $LOOPED_BUDGET hydra.run.dir="$RUNS/d512_looped" \
  > "$RUNS/d512_looped.log" 2>&1 || log "d512 looped failed"
python3 -m odelm.train model=ode $COMMON $GRID_BUDGET hydra.run.dir="$RUNS/d512_grid" \
  > "$RUNS/d512_grid.log" 2>&1 || log "d512 grid failed"
python3 -m odelm.train model=ode solver=euler solver.step_size=1.0 "objective=[random_solver,progressive,path_independence]" \
  $COMMON $FLOW_BUDGET hydra.run.dir="$RUNS/d512_flow" > "$RUNS/d512_flow.log" 2>&1 || log "d512 flow failed"
log "d512 training done"
pack

# 2. F10 (background, capped so that the session ends in time)
{ timeout "$F10_LIMIT" python3 experiments/reproduce.py --studies constraint --stages train,eval --jobs $JOBS \
    --threads 1 --out "$RUNS/f10" $F10 > "$RUNS/f10.log" 2>&1 || log "F10 stopped: rc $?"
  tar -czf "$OUT/f10_eval.tgz" -C "$RUNS" --exclude='*.ckpt' --exclude='wandb' f10 f10.log; log "F10 done"; } &
F10_PID=$!

# 1b. the d512 evaluations, one at a time beside F10
ev() {  # ev NAME CKPT OVERRIDES...: one odelm.eval into $RUNS/eval_NAME, capped at EVAL_LIMIT seconds
  local name=$1 ckpt=$2; shift 2
  timeout "$EVAL_LIMIT" python3 -m odelm.eval ckpt="$ckpt" $EVAL_DEVICE "$@" hydra.run.dir="$RUNS/eval_$name" \
    > "$RUNS/eval_$name.log" 2>&1 || log "eval $name: rc $?"
}
L=$RUNS/d512_looped/checkpoints/final.ckpt
G=$RUNS/d512_grid/checkpoints/final.ckpt
F=$RUNS/d512_flow/checkpoints/final.ckpt
CONV="exit=converged task.n_test_per_difficulty=40 sweep.key=exit.threshold sweep.values=[1e-2,1e-3]"
ev d512_looped_converged "$L" $CONV exit.max_t_end=16
ev d512_grid_converged "$G" $CONV exit.max_t_end=16
ev d512_flow_converged "$F" $CONV exit.max_t_end=16
ev d512_looped_depth "$L" sweep.key=model.loops "sweep.values=[4,8,16]"
ev d512_grid_depth "$G" sweep.key=solver.t_end "sweep.values=[4,8,16]"
ev d512_flow_depth "$F" sweep.key=solver.t_end "sweep.values=[4,8,16]"
ev d512_grid_dopri5 "$G" solver=dopri5 sweep.key=solver.t_end "sweep.values=[4,8,16]"
ev d512_flow_dopri5 "$F" solver=dopri5 sweep.key=solver.t_end "sweep.values=[4,8,16]"
log "d512 evaluations done"
pack
wait $F10_PID
for f in "$RUNS"/*.log; do echo "== $f"; tail -n 3 "$f"; done >> "$OUT/session.log"
pack
log "end"
