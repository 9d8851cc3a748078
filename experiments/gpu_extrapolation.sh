#!/usr/bin/env bash
# Size extrapolation (mazes, prefix parity) with a GPU to these runs alone (never part of CI): is the CPU
# miss (15×15 mazes at 0.35–0.42 after 45–85 CPU minutes, the trained 9×9 itself at 0.87; 64-bit parity
# at 0.05–0.29) a matter of training budget, or of the recipe? Six bench_extrapolation.py runs side by
# side on one GPU, each with a wall-clock budget (MINUTES) and the cosine run over that budget
# (optim.schedule=time), each then sweeping the horizon (loops) on test, 200 unseen examples a size:
#   maze_ode_ordered        the CPU maze recipe (grid ODE, Euler 0.5, horizon 12, zero-padded window 1 = a
#                           recurrent 3×3 convolution, progressive loss to 2×), at d 128, batch 128, 100 000
#                           training mazes, references with ordered tie-breaking (task.params.tie_break=ordered)
#   maze_ode_random         the same with random tie-breaking (the task's default; the CPU runs' references)
#   maze_ode_ordered_seed1  a second seed
#   maze_looped_ordered     the looped model at the same 24 evaluations (T = 24), loops swept 24 / 48 / 96
#   parity_looped, parity_ode   prefix parity, zero-padded window 2, d 128 (the CPU's widest, 0.245 at 64 bits)
# Candidate causes of the size-bound maze rule, on perfect mazes (one path, no ties; run when named in ARMS, or with ARMS=all):
#   perfect_ode             the maze ODE recipe above on perfect mazes (task.params.extra_openings=0)
#   perfect_ode_blocks2     two blocks per field evaluation (model.field_blocks=2; DeepThinking's recurrent
#                           block holds four 3×3 convolutions, ours one local attention)
#   perfect_ode_sigmoid     sigmoid window scores (model.attn_score=sigmoid): the window sums its keys, as a
#                           convolution does, where the softmax averages them
#   perfect_ode_blocks2_sigmoid  both
#   perfect_ode_horizon24   twice the trained horizon (24: 48 Euler steps), in case the trained one only just
#                           covers the trained sizes' longest paths (28 cells)
# Usage (results: one JSON per run, session.log, runs.tgz with the run directories minus checkpoints):
#   OUT=experiments/results/gpu_extrapolation bash experiments/gpu_extrapolation.sh   # on the GPU machine
#   DRY=1 OUT=/tmp/gpu_extrapolation_dry bash experiments/gpu_extrapolation.sh         # on a CPU: toy budgets
set -uo pipefail
OUT=${OUT:-experiments/results/gpu_extrapolation}
RUNS=${RUNS:-/tmp/gpu_extrapolation_runs}
MINUTES=${MINUTES:-6.5}
SIZE_ARMS="maze_ode_ordered maze_ode_random maze_ode_ordered_seed1 maze_looped_ordered parity_looped parity_ode"
CAUSE_ARMS="perfect_ode perfect_ode_blocks2 perfect_ode_sigmoid perfect_ode_blocks2_sigmoid perfect_ode_horizon24"
ARMS=${ARMS:-$SIZE_ARMS}  # e.g. ARMS="maze_ode_random": only these arms (one process alone on the GPU); all: every arm
[ "$ARMS" = all ] && ARMS="$SIZE_ARMS $CAUSE_ARMS"
for name in $ARMS; do
  [[ " $SIZE_ARMS $CAUSE_ARMS " == *" $name "* ]] || { echo "unknown arm '$name'; choose from: $SIZE_ARMS $CAUSE_ARMS (or all)" >&2; exit 2; }
done
rm -rf "$RUNS"; mkdir -p "$OUT" "$RUNS"
export PYTHONUNBUFFERED=1 WANDB_MODE=offline OMP_NUM_THREADS=2
if [ "${DRY:-0}" = 1 ]; then  # after the arm's own overrides, so these win
  TOY="trainer.max_steps=3 trainer.val_check_interval=2 task.n_train=64 task.n_test_per_difficulty=4 data.n_val_per_difficulty=4"
  TOY="$TOY model.d_model=32 model.n_heads=2 trainer.accelerator=cpu"
  MINUTES=1
else
  TOY=""
fi
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/session.log"; }
pack() { tar -czf "$OUT/runs.tgz" -C "$RUNS" --exclude='*.ckpt' --exclude='wandb' . ; }
# a timeout keeps what the runs wrote (metrics.csv): stop them, then pack
trap 'log "interrupted: packing what the runs wrote so far"; kill $(jobs -p) 2>/dev/null; wait; pack; exit 124' TERM INT
log "start: $(${PYTHON:-python3} -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")')"

MAZE="--task maze --minutes $MINUTES model.attn_window=1 model.window_padding=zeros model.d_model=128 model.n_heads=4
  data.batch_size=128 task.n_train=100000 objective.options.progressive.max_factor=2 optim.schedule=time"
PARITY="--task prefix_parity --minutes $MINUTES model.attn_window=2 model.window_padding=zeros model.d_model=128
  model.n_heads=4 data.batch_size=128 objective.options.progressive.max_factor=2 optim.schedule=time"
arm() {  # arm NAME ARGS...: one bench_extrapolation.py run in the background
  local name=$1; shift
  [[ " $ARMS " == *" $name "* ]] || return 0
  ${PYTHON:-python3} experiments/bench_extrapolation.py "$@" --run-dir "$RUNS/$name" --out "$OUT/$name.json" $TOY \
    > "$RUNS/$name.log" 2>&1 || log "$name: rc $?" &
}
ORDERED=task.params.tie_break=ordered  # the committed results ran when ordered was the default and did not name it
arm maze_ode_ordered $MAZE --model ode --loops 12 --sweep 12,24,48 $ORDERED
arm maze_ode_random $MAZE --model ode --loops 12 --sweep 12,24,48 task.params.tie_break=random
arm maze_ode_ordered_seed1 $MAZE --model ode --loops 12 --sweep 12,24,48 --seed 1 $ORDERED
arm maze_looped_ordered $MAZE --model looped --loops 24 --sweep 24,48,96 $ORDERED
arm parity_looped $PARITY --model looped --loops 12 --sweep 12,24,48,96
arm parity_ode $PARITY --model ode --loops 12 --sweep 12,24,48,96
PERFECT="$MAZE --model ode task.params.extra_openings=0"
arm perfect_ode $PERFECT --loops 12 --sweep 12,24,48
arm perfect_ode_blocks2 $PERFECT --loops 12 --sweep 12,24,48 model.field_blocks=2
arm perfect_ode_sigmoid $PERFECT --loops 12 --sweep 12,24,48 model.attn_score=sigmoid
arm perfect_ode_blocks2_sigmoid $PERFECT --loops 12 --sweep 12,24,48 model.field_blocks=2 model.attn_score=sigmoid
arm perfect_ode_horizon24 $PERFECT --loops 24 --sweep 24,48,96
wait
log "runs done"
for f in "$RUNS"/*.log; do echo "== $f"; tail -n 4 "$f"; done >> "$OUT/session.log"
pack
log "end"
