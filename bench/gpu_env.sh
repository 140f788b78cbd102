# Sourced by the GPU session scripts (bench/gpu_*.sh), from the project root on the device machine.
# Machines without the project's Python packages: wheels in .whl/ are installed to /tmp/site, the data
# in .gpu/data becomes CL_MOO_DATA, and .gpu/stubs may hold an empty `wandb` package (avalanche's
# metrics import it at module level; cl_moo never uses it, and the real wheel exceeds the transfer
# limit). Sets OUT (results folder), RUNS (scratch folder), PY, T0 and stamp().
OUT=${OUT:-/tmp/cl_moo_gpu}
mkdir -p "$OUT"
ROOT=$PWD
if [ -d .whl ] && [ "${WHEELS:-1}" = 1 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$ROOT/.gpu/stubs:$ROOT
fi
[ -d .gpu/data ] && export CL_MOO_DATA=$ROOT/.gpu/data
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
RUNS=${RUNS:-/tmp/cl_moo_gpu_runs}
mkdir -p "$RUNS"
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"
$PY -c "import torch, avalanche, pymoo.indicators.hv, hydra, cl_moo, strategies, benchmarks.runners.cl_runner, benchmarks.runners.pareto_runner; \
print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" >> "$OUT/gpu.txt" 2>&1 || { tail -5 "$OUT/gpu.txt"; exit 1; }
tail -1 "$OUT/gpu.txt"
