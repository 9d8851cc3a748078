#!/usr/bin/env bash
# F10's ODE arm again, alone on the GPU, with its two eval plans (horizon, dopri5 tolerance): the first
# GPU session's cap cut the tolerance plan, and its checkpoints stayed on that machine. F10 training is
# deterministic on the GPU (gpu_session2.sh retrained 21 of its 24 runs to the same test numbers), so
# these are the fields of the committed figure. (Its one run so far ended in the tolerance plan, at the
# device budget: experiments/results/gpu_f10_ode/f10_ode.tgz holds the training and horizon records.)
#   OUT=experiments/results/gpu_f10_ode bash experiments/gpu_f10_ode.sh    # on the GPU machine
#   DRY=1 OUT=/tmp/f10_ode_dry bash experiments/gpu_f10_ode.sh             # on a CPU: toy budgets
set -uo pipefail
OUT=${OUT:-experiments/results/gpu_f10_ode}
RUNS=${RUNS:-/tmp/gpu_f10_ode_runs}
rm -rf "$RUNS"; mkdir -p "$OUT" "$RUNS"
export PYTHONUNBUFFERED=1 WANDB_MODE=offline OMP_NUM_THREADS=2
EXTRA=""; [ "${DRY:-0}" = 1 ] && EXTRA="trainer.max_steps=4 model.d_model=32 model.n_heads=2 trainer.accelerator=cpu"
timeout "${LIMIT:-200}" python3 experiments/reproduce.py --studies constraint --arms ode_grid --stages train,eval \
  --jobs 6 --threads 1 --out "$RUNS/f10" $EXTRA > "$RUNS/f10.log" 2>&1; echo "rc $?" >> "$RUNS/f10.log"
tar -czf "$OUT/f10_ode.tgz" -C "$RUNS" --exclude='*.ckpt' --exclude='wandb' f10 f10.log
tail -n 5 "$RUNS/f10.log"
