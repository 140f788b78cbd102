#!/usr/bin/env bash
# One GPU session, run from the project root on a CUDA machine (all results under $OUT):
#   1. the device tests (tests/test_device_placement.py runs both strategies on cuda) and the core
#      strategy tests, beside
#   2. solo step timings on the GPU (python -m benchmarks.experiments.speed --device cuda), then
#   3. in parallel, sharing the one GPU: the PMNIST-10 paper preset (MLP 1000-1000, 5000 iterations
#      per task), PMNIST-100 with fewer iterations per task (per-task train time and peak memory in
#      its log), and the fairness benchmark (one process per data set).
# Packages and data on a bare machine: see bench/gpu_env.sh. Budget: about 9 minutes in all.
set -u
# Sizes (a CPU dry run: DEVICE=cpu PY=.venv/bin/python WHEELS=0 TESTS=0 IT10=3 IT100=2 NT100=3 FAIR=0 SPEED=0 bash bench/gpu_session.sh)
DEVICE=${DEVICE:-cuda} IT10=${IT10:-5000} IT100=${IT100:-300} NT100=${NT100:-100} FAIR=${FAIR:-1} SPEED=${SPEED:-1}
BUDGET=${BUDGET:-480}
. bench/gpu_env.sh

stamp "tests (background)"
[ "${TESTS:-1}" = 1 ] && timeout 300 $PY -m pytest -q -p no:cacheprovider tests/test_device_placement.py tests/test_cl_strategy.py \
  tests/test_cl_plugins.py tests/test_phn.py tests/test_phn_solvers.py tests/test_target.py \
  > "$OUT/tests.log" 2>&1 &
TESTS=$!

if [ "$SPEED" = 1 ]; then
  stamp "solo step timings"
  timeout 100 $PY -m benchmarks.experiments.speed --device "$DEVICE" --only overhead compile regularizer phn --warmup 5 --reps 20 \
    --tasks 1 10 100 > "$RUNS/speed.log" 2>&1
  stamp "speed exit $?"
  for f in overhead compile regularizer phn; do cp "bench/results/speed_$f.json" "$RUNS/speed_${f}_$DEVICE.json" 2>/dev/null; done
fi

run() {  # run NAME SECONDS overrides...
  local name=$1 limit=$2; shift 2
  timeout "$limit" $PY -m cl_moo.run "$@" device="$DEVICE" progress=false run_dir="$RUNS/$name" > "$RUNS/$name.out" 2>&1
  stamp "$name exit $?"
}
LEFT=$(( BUDGET - ($(date +%s) - T0) ))
run pmnist10-large "$LEFT" benchmark=pmnist preset=paper train.iterations=$IT10 seed=0 &
run pmnist10-large-xavier-lookahead "$LEFT" benchmark=pmnist preset=paper hnet.init=xavier strategy.lookahead=true \
  train.iterations=$IT10 seed=0 &
run pmnist100-short "$LEFT" benchmark=pmnist preset=paper benchmark.n_tasks=$NT100 'hnet.hidden=[200,250,350]' \
  hnet.emb_dim=128 hnet.chunk_emb_dim=12 hnet.chunk_size=7500 hnet.activation=relu strategy.beta=0.01 \
  train.iterations=$IT100 train.eval_tasks=current seed=0 &
if [ "$FAIR" = 1 ]; then
  for b in adult default bank; do
    ( timeout "$LEFT" $PY -m benchmarks.experiments.fairness_bench --benchmarks $b --out "$RUNS/fairness_$b.json" \
        > "$RUNS/fairness_$b.log" 2>&1; stamp "fairness $b exit $?" ) &
  done
fi
wait
stamp "all done"
wait $TESTS 2>/dev/null
tail -3 "$OUT/tests.log"
find "$RUNS" -name checkpoint.pt -delete
tar czf "$OUT/runs.tgz" -C "$RUNS" .
ls -la "$OUT"
for f in "$RUNS"/*/log.txt; do echo "== $f"; tail -2 "$f"; done
