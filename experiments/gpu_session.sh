#!/usr/bin/env bash
# One prepared GPU session (never part of CI), every step through odelm's own entry points:
#  1. experiments/gpu_flow.py: training-step time of each flow recipe at d_model 512 against the looped
#     model (alone on the GPU, before anything else starts);
#  2. the flow recipe (random discretisation + progressive + path independence) and the looped model,
#     d_model 512, trained 1.2 minutes each on the default task, then evaluated on test at 1x/2x/4x the
#     trained depth and with the convergence stop (accuracy and NFE per example; one solve per example,
#     so on the first 40 test prompts of each level);
#  3. beside 2, on the same GPU: 9x9 Sudoku at scale=paper on the hard-puzzle generator's data
#     (data/sudoku9_hard, 1000 training puzzles, experiments/export_task.py), the constraint study's arms
#     looped T=8, ODE grid and the 8-layer transformer, 3.5 minutes each, then test-time-compute sweeps.
#  4. beside 2 and 3: the F10 study (conf/experiment/constraint.yaml, 4x4 and 6x6 Sudoku, four arms,
#     three seeds, 1000 matched steps at smoke scale) and its eval plans, through experiments/reproduce.py
#     (8 jobs at a time); its figure is drawn afterwards from the returned run directories (f10_eval.tgz):
#     python experiments/reproduce.py --stages figures --studies constraint --out <unpacked f10>
# Every run shares the GPU with the others (five trainings at once): their steps per minute are not
# step times; step 1 measures those alone. Each evaluation is capped at EVAL_LIMIT seconds.
# Usage (results: gpu_flow.json, session.log, runs.tgz and f10_eval.tgz, the run directories without
# checkpoints; then python experiments/gpu_session_summary.py --dir <them>):
#   OUT=experiments/results/gpu_session bash experiments/gpu_session.sh     # on the GPU machine
#   DRY=1 OUT=/tmp/gpu_dry bash experiments/gpu_session.sh                  # on a CPU: toy budgets, checks the script
set -uo pipefail
OUT=${OUT:-experiments/results/gpu_session}
RUNS=${RUNS:-/tmp/gpu_session_runs}
rm -rf "$RUNS"
mkdir -p "$OUT" "$RUNS"
export PYTHONUNBUFFERED=1 WANDB_MODE=offline OMP_NUM_THREADS=2
if [ "${DRY:-0}" = 1 ]; then
  SUDOKU_BUDGET="trainer.max_steps=4 model.d_model=32 model.n_heads=2 trainer.val_check_interval=2 trainer.accelerator=cpu"
  FLOW_BUDGET="trainer.max_steps=4 model.d_model=32 model.n_heads=2 trainer.val_check_interval=2 trainer.accelerator=cpu"
  EVAL_DEVICE="device=cpu"
  MICRO="--device cpu --d-model 32 --steps 2 --warmup 1"
  F10="--arms looped,ode_grid trainer.max_steps=4 model.d_model=32 model.n_heads=2 trainer.accelerator=cpu"
else
  SUDOKU_BUDGET="trainer.max_steps=12000 trainer.max_time_minutes=3.5 data.batch_size=128"
  FLOW_BUDGET="trainer.max_steps=6000 trainer.max_time_minutes=1.2 model.d_model=512 model.n_heads=8"
  EVAL_DEVICE="device=cuda"
  MICRO=""
  F10=""
fi
EVAL_LIMIT=${EVAL_LIMIT:-120}
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/session.log"; }
pack() { tar -czf "$OUT/runs.tgz" -C "$RUNS" --exclude='*.ckpt' --exclude='wandb' --exclude='f10*' . ; }  # what is done so far
log "start: $(python3 -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")')"

# 1. step times, alone on the device
python3 experiments/gpu_flow.py --out "$OUT/gpu_flow.json" $MICRO >> "$OUT/session.log" 2>&1 || log "gpu_flow.py failed"
log "step times done"

# 3. Sudoku 9x9, three arms in parallel (background)
DATA=data/sudoku9_hard
SUDOKU="experiment=constraint scale=paper task=jsonl task.train=$DATA/train.jsonl task.val=$DATA/val.jsonl
  task.test=$DATA/test.jsonl task.layout=per_position task.checker=sudoku +task.params.box_rows=3
  +task.params.box_cols=3 trainer.enable_progress_bar=false"
SUDOKU_PIDS=""
for arm in looped ode_grid transformer8; do
  python3 -m odelm.train $SUDOKU arm=constraint/$arm $SUDOKU_BUDGET hydra.run.dir="$RUNS/sudoku9_$arm" \
    > "$RUNS/sudoku9_$arm.log" 2>&1 &
  SUDOKU_PIDS="$SUDOKU_PIDS $!"
done

# 4. the F10 study and its evaluations (background; capped so the session ends in time)
{ timeout "${F10_LIMIT:-400}" python3 experiments/reproduce.py --studies constraint --stages train,eval --jobs 8 \
    --threads 1 --out "$RUNS/f10" $F10 > "$RUNS/f10.log" 2>&1 || log "F10 stopped: rc $?"
  tar -czf "$OUT/f10_eval.tgz" -C "$RUNS" --exclude='*.ckpt' --exclude='wandb' f10 f10.log; log "F10 done"; } &

# 2. d_model 512, looped and the flow recipe (beside the Sudoku runs)
python3 -m odelm.train model=looped $FLOW_BUDGET trainer.enable_progress_bar=false hydra.run.dir="$RUNS/d512_looped" \
  > "$RUNS/d512_looped.log" 2>&1 &
LOOPED=$!
python3 -m odelm.train model=ode solver=euler solver.step_size=1.0 "objective=[random_solver,progressive,path_independence]" \
  $FLOW_BUDGET trainer.enable_progress_bar=false hydra.run.dir="$RUNS/d512_flow" > "$RUNS/d512_flow.log" 2>&1 \
  || log "d512 flow failed"
wait $LOOPED || log "d512 looped failed"
log "d512 training done"
ev() {  # ev NAME CKPT OVERRIDES...: one odelm.eval into $RUNS/eval_NAME (background; on failure again on the CPU)
  local name=$1 ckpt=$2; shift 2
  { timeout "$EVAL_LIMIT" python3 -m odelm.eval ckpt="$ckpt" $EVAL_DEVICE "$@" hydra.run.dir="$RUNS/eval_$name" \
      > "$RUNS/eval_$name.log" 2>&1
    rc=$?
    if [ $rc = 124 ]; then log "eval $name: over ${EVAL_LIMIT}s, stopped"
    elif [ $rc != 0 ]; then log "eval $name failed on $EVAL_DEVICE; again on the CPU"
      timeout "$EVAL_LIMIT" python3 -m odelm.eval ckpt="$ckpt" device=cpu "$@" hydra.run.dir="$RUNS/eval_${name}_cpu" \
        > "$RUNS/eval_${name}_cpu.log" 2>&1 || log "eval $name failed on the CPU too"
    fi; } &
}
L=$RUNS/d512_looped/checkpoints/final.ckpt
F=$RUNS/d512_flow/checkpoints/final.ckpt
ev d512_looped_depth "$L" sweep.key=model.loops "sweep.values=[4,8,16]"
ev d512_looped_converged "$L" exit=converged exit.max_t_end=16 task.n_test_per_difficulty=40 sweep.key=exit.threshold "sweep.values=[1e-2,1e-3]"
ev d512_flow_depth "$F" sweep.key=solver.t_end "sweep.values=[4,8,16]"
ev d512_flow_dopri5 "$F" solver=dopri5 sweep.key=solver.t_end "sweep.values=[4,8,16]"
ev d512_flow_converged "$F" exit=converged exit.max_t_end=16 task.n_test_per_difficulty=40 sweep.key=exit.threshold "sweep.values=[1e-2,1e-3]"
ev d512_flow_converged_dopri5 "$F" solver=dopri5 exit=converged exit.max_t_end=16 task.n_test_per_difficulty=40 sweep.key=exit.threshold "sweep.values=[1e-2,1e-3]"
wait $SUDOKU_PIDS
log "sudoku training done"
pack

SL=$RUNS/sudoku9_looped/checkpoints/final.ckpt
SO=$RUNS/sudoku9_ode_grid/checkpoints/final.ckpt
ev sudoku9_looped_loops "$SL" sweep.key=model.loops "sweep.values=[4,8,16,32]"
ev sudoku9_looped_converged "$SL" exit=converged exit.max_t_end=32 exit.threshold=1e-3 "task.test_difficulties=[56]"
ev sudoku9_ode_t_end "$SO" sweep.key=solver.t_end "sweep.values=[2,4,8,16]"
ev sudoku9_ode_dopri5 "$SO" solver=dopri5 sweep.key=solver.t_end "sweep.values=[4,8,16]"
ev sudoku9_ode_converged "$SO" exit=converged exit.max_t_end=32 exit.threshold=1e-3 "task.test_difficulties=[56]"
wait  # every evaluation and F10
log "evaluations done"
for f in "$RUNS"/*.log; do echo "== $f"; tail -n 3 "$f"; done >> "$OUT/session.log"
pack
log "end"
