#!/usr/bin/env bash
# GPU session for the image Pareto benchmarks, run from the project root on a CUDA machine; results
# (JSON, logs) in $OUT/runs.tgz. In parallel on the one GPU, each process time-boxed to the budget:
#   * python -m benchmarks.experiments.multimnist_bench for Multi-MNIST, Multi-Fashion and Multi-(Fashion+MNIST)
#     (one process per data set: PHN-LS, PHN-EPO, then 5 separately trained LS models), all training
#     images (108,000 after PHN's 10 % validation split) and all 20,000 test images;
#   * the Chebyshev and smooth Chebyshev solvers on Multi-MNIST (same settings), then HVI;
#   * python -m benchmarks.experiments.continual_pareto_bench: 5 permuted Multi-MNIST tasks (regularized, without
#     the regularizer, one PHN per task alone);
#   * the device tests of the Pareto strategies.
# Each result is written as soon as it exists, so a process cut by the budget keeps what it finished.
# Sizes (a CPU dry run: DEVICE=cpu PY=.venv/bin/python WHEELS=0 TESTS=0 EPOCHS=1 TRAIN=300 TEST=200 CP_STEPS=3 \
#   CP_TRAIN=300 OUT=/tmp/dry RUNS=/tmp/dry_runs bash bench/gpu_issue14.sh)
set -u
DEVICE=${DEVICE:-cuda} EPOCHS=${EPOCHS:-30} TRAIN=${TRAIN:-0} TEST=${TEST:-0} LR=${LR:-1e-3} INIT=${INIT:-xavier}
CP_STEPS=${CP_STEPS:-3000} CP_TRAIN=${CP_TRAIN:-0} BUDGET=${BUDGET:-470}
. bench/gpu_env.sh

if [ "${TESTS:-1}" = 1 ]; then
  timeout 240 $PY -m pytest -q -p no:cacheprovider tests/test_device_placement.py tests/test_multimnist.py \
    tests/test_continual_pareto.py tests/test_phn.py > "$RUNS/tests.log" 2>&1 &
fi
LEFT=$(( BUDGET - ($(date +%s) - T0) ))
COMMON="--device $DEVICE --train $TRAIN --test $TEST --epochs $EPOCHS --lr $LR --init $INIT"
for kind in mnist fashion fashion_mnist; do
  ( timeout "$LEFT" $PY -m benchmarks.experiments.multimnist_bench --kinds $kind $COMMON --k-separate 5 \
      --out "$RUNS/multimnist_$kind.json" > "$RUNS/multimnist_$kind.log" 2>&1; stamp "multimnist $kind exit $?" ) &
done
( timeout "$LEFT" $PY -m benchmarks.experiments.multimnist_bench --kinds mnist $COMMON --methods phn_tch phn_stch \
    --out "$RUNS/multimnist_solvers_mnist.json" > "$RUNS/multimnist_solvers.log" 2>&1
  stamp "solvers exit $?"
  LEFT2=$(( BUDGET - ($(date +%s) - T0) ))
  timeout "$LEFT2" $PY -m benchmarks.experiments.multimnist_bench --kinds mnist $COMMON --methods phn_hvi --rays-per-step 4 \
    --out "$RUNS/multimnist_hvi_mnist.json" > "$RUNS/multimnist_hvi.log" 2>&1
  stamp "hvi exit $?" ) &
# the settings of bench/results/gpu_h200_issue14/continual_pareto.json, pinned when the bench's defaults changed
( timeout "$LEFT" $PY -m benchmarks.experiments.continual_pareto_bench --device $DEVICE --tasks 5 --train $CP_TRAIN --test $TEST \
    --target lenet --beta 0.05 --emb-std 1.0 \
    --steps $CP_STEPS --lr $LR --init $INIT --out "$RUNS/continual_pareto.json" > "$RUNS/continual_pareto.log" 2>&1
  stamp "continual pareto exit $?" ) &
wait
stamp "all done"
tail -3 "$RUNS/tests.log" 2>/dev/null
tar czf "$OUT/runs.tgz" -C "$RUNS" .
for f in "$RUNS"/*.log; do echo "== $f"; grep -v Warning "$f" | tail -4; done
