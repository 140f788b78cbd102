#!/usr/bin/env bash
# GPU session for the continual Pareto goals (issue 14): do later tasks reach the stand-alone PHN's HV
# when trained longer? 5 permuted Multi-MNIST tasks, all images, MLP target, STEPS per task, each
# task's test HV recorded after the step counts in EVAL_AT (hv_curve). In parallel on the one GPU:
# for each seed in SEEDS, the parts in PARTS (beta0.5: regularized, beta 0.5, phn_cl's former default;
# beta2: regularized, beta 2; noreg: no regularizer; standalone: one PHN per task alone).
# START: the continual model's start (random, the default: a fresh draw; phn: as the stand-alone PHN
# of the same seed, bench/results/gpu_h100_issue14/cp_long_*_phn.json); TAG: a suffix for file names.
# Each finished task is written at once, so a process cut by the budget keeps what it did.
# Results: $OUT/cp_long_*.json and logs. Packages and data on a bare machine: bench/gpu_env.sh.
# (CPU dry run: DEVICE=cpu PY=.venv/bin/python WHEELS=0 STEPS=4 EVAL_AT="2 4" TRAIN=300 TEST=200 OUT=/tmp/dry bash bench/gpu_continual_long.sh)
set -u
SEEDS=${SEEDS:-0} PARTS=${PARTS:-"beta0.5 beta2 noreg standalone"}
DEVICE=${DEVICE:-cuda} STEPS=${STEPS:-6000} EVAL_AT=${EVAL_AT:-"1000 2000 3000 4000 6000"} TRAIN=${TRAIN:-0} TEST=${TEST:-0}
BUDGET=${BUDGET:-500}
. bench/gpu_env.sh
COMMON="--device $DEVICE --tasks 5 --train $TRAIN --test $TEST --steps $STEPS --lr 1e-3 --init xavier --target mlp
  --emb-std 0.1 --eval-at $EVAL_AT --start ${START:-random}"
LEFT=$(( BUDGET - ($(date +%s) - T0) ))
part() {  # part NAME bench-args...
  local name=$1; shift
  [ "$SEED" != 0 ] && name=${name}_seed$SEED
  [ -n "${TAG:-}" ] && name=${name}_$TAG
  timeout "$LEFT" $PY -m benchmarks.experiments.continual_pareto_bench $COMMON "$@" --seed "$SEED" --out "$OUT/cp_long_$name.json" \
    > "$OUT/cp_long_$name.log" 2>&1
  stamp "$name exit $?"
}
for SEED in $SEEDS; do
  for p in $PARTS; do
    case $p in
      beta0.5) part beta0.5 --parts regularized --beta 0.5 & ;;
      beta2) part beta2 --parts regularized --beta 2.0 & ;;
      noreg) part noreg --parts no_regularizer & ;;
      standalone) part standalone --parts standalone & ;;
      *) echo "unknown part $p"; exit 1 ;;
    esac
  done
done
wait
stamp "all done"
for f in "$OUT"/cp_long_*.log; do echo "== $f"; grep -v Warning "$f" | tail -6; done
