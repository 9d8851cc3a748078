#!/usr/bin/env bash
# 9×9 Sudoku at scale=paper on the hard-puzzle generator's data (data/sudoku9_hard: 1000 training
# puzzles, augmented on the fly; 300 validation and 900 test puzzles at 52 / 54 / 56 blanks), with the
# GPU to these runs alone (never part of CI). The first GPU session gave its 9×9 runs 3.5 minutes on a
# GPU time-sliced by eleven processes (1460 steps, nothing solved); this script gives two arms of the
# constraint study, the looped model (T = 8) and the ODE model on the same field (Euler grid 0.5 over
# [0, 4], kinetic), the same number of training steps (MAX_STEPS, matched; a wall-clock cap guards the
# device budget and is reported when it fires) side by side on one GPU, and then sweeps test-time
# compute on test: loops 8 / 16 / 32; horizon 4 / 8 / 16 (Euler) and dopri5 at 4 and 8.
# Usage (results: session.log and runs.tgz, the run directories without checkpoints; then
# python experiments/gpu_session_summary.py --session 3 --dir <them>):
#   OUT=experiments/results/gpu_sudoku9 bash experiments/gpu_sudoku9.sh     # on the GPU machine
#   DRY=1 OUT=/tmp/gpu_sudoku9_dry bash experiments/gpu_sudoku9.sh          # on a CPU: toy budgets, checks the script
# EXTRA="seed=1" adds overrides to both trainings (another seed).
set -uo pipefail
OUT=${OUT:-experiments/results/gpu_sudoku9}
RUNS=${RUNS:-/tmp/gpu_sudoku9_runs}
rm -rf "$RUNS"; mkdir -p "$OUT" "$RUNS"
export PYTHONUNBUFFERED=1 WANDB_MODE=offline OMP_NUM_THREADS=4
if [ "${DRY:-0}" = 1 ]; then
  BUDGET="trainer.max_steps=4 model.d_model=32 model.n_heads=2 trainer.val_check_interval=2 trainer.accelerator=cpu"
  EVAL_DEVICE="device=cpu"
else
  BUDGET="trainer.max_steps=${MAX_STEPS:-7000} trainer.max_time_minutes=${MINUTES:-6.3} trainer.val_check_interval=500 ${EXTRA:-}"
  EVAL_DEVICE="device=cuda"
fi
EVAL_LIMIT=${EVAL_LIMIT:-75}
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/session.log"; }
pack() { tar -czf "$OUT/runs.tgz" -C "$RUNS" --exclude='*.ckpt' --exclude='wandb' . ; }
log "start: $(python3 -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")')"

DATA=data/sudoku9_hard
SUDOKU="experiment=constraint scale=paper task=jsonl task.train=$DATA/train.jsonl task.val=$DATA/val.jsonl
  task.test=$DATA/test.jsonl task.layout=per_position task.checker=sudoku +task.params.box_rows=3
  +task.params.box_cols=3 data.batch_size=128 trainer.enable_progress_bar=false"
PIDS=""
for arm in looped ode_grid; do
  python3 -m odelm.train $SUDOKU arm=constraint/$arm $BUDGET hydra.run.dir="$RUNS/sudoku9_$arm" \
    > "$RUNS/sudoku9_$arm.log" 2>&1 &
  PIDS="$PIDS $!"
done
for p in $PIDS; do wait "$p" || log "training $p failed: rc $?"; done
log "training done"
pack

ev() {  # ev NAME CKPT OVERRIDES...: one odelm.eval into $RUNS/eval_NAME (background, capped)
  local name=$1 ckpt=$2; shift 2
  { timeout "$EVAL_LIMIT" python3 -m odelm.eval ckpt="$ckpt" $EVAL_DEVICE "$@" hydra.run.dir="$RUNS/eval_$name" \
      > "$RUNS/eval_$name.log" 2>&1 || log "eval $name: rc $?"; } &
}
L=$RUNS/sudoku9_looped/checkpoints/final.ckpt
O=$RUNS/sudoku9_ode_grid/checkpoints/final.ckpt
ev looped_loops "$L" sweep.key=model.loops "sweep.values=[8,16,32]"
ev ode_t_end "$O" sweep.key=solver.t_end "sweep.values=[4,8,16]"
ev ode_dopri5 "$O" solver=dopri5 sweep.key=solver.t_end "sweep.values=[4,8]"
wait
log "evaluations done"
for f in "$RUNS"/*.log; do echo "== $f"; tail -n 3 "$f"; done >> "$OUT/session.log"
pack
log "end"
