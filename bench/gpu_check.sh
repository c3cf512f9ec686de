#!/usr/bin/env bash
# The GPU measurements of bench/README.md "On a GPU" in one run, most important first, each
# phase under its own time limit so a slow compile cannot cost the rest. Figures go to $OUT
# (default bench/results/gpu): JSON per preset (rewritten after every row) and one log.
#   bash bench/gpu_check.sh [124m] [1b] [test]   # on a CUDA machine; no argument: all three
# Missing pure-Python requirements can travel as wheels in .whl/ (installed to /tmp/site).
set -u -o pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit 1
fi
PHASES=${*:-124m 1b test}
want() { [[ " $PHASES " == *" $1 "* ]]; }
LOG="$OUT/gpu_check.log"
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.version.cuda)"
  nproc; free -g | head -2; df -h /tmp | tail -1
} 2>&1 | tee "$LOG"

phase() {  # phase <seconds> <name> <command...>
  local limit=$1 name=$2; shift 2
  local t0=$SECONDS
  echo "=== $name (limit ${limit}s)" | tee -a "$LOG"
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  echo "=== $name: rc ${PIPESTATUS[0]} in $((SECONDS - t0)) s" | tee -a "$LOG"
}

# Baseline first, then the miner's default (order effects showed up as 0.1-0.2% before);
# the full model with the chunked loss forced; the quarter width shard (chunked loss).
want 124m && phase "${T_124M:-330}" "throughput 124m 32x1024" $PY -m bench.throughput \
  --presets 124m --batch 32 --seq 1024 --threads 8 --steps 60 \
  --rows hf-compiled,miner-full-comp,miner-full-chunked,miner-width,validator-eval \
  --out "$OUT/throughput_124m.json"
# H200, previous session: each compiled 1b row took 59-66 s of warm-up.
want 1b && phase "${T_1B:-300}" "throughput 1b 8x2048" $PY -m bench.throughput --presets 1b \
  --batch 8 --seq 2048 --threads 8 --steps 10 --warmup-steps 3 \
  --rows hf-compiled,miner-full-comp,miner-width,validator-eval,miner-full-chunked \
  --out "$OUT/throughput_1b.json"
want test && phase "${T_TEST:-120}" "pytest CUDA tests" $PY -m pytest -q -p no:cacheprovider \
  -p no:logging tests/test_train_step.py -k cuda
nvidia-smi --query-gpu=memory.used,temperature.gpu,clocks.sm --format=csv 2>&1 | tee -a "$LOG"
