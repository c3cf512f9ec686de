#!/usr/bin/env bash
# The GPU measurements of bench/README.md "On a GPU" in one run, most important first, each
# phase under its own time limit so a slow compile cannot cost the rest. Figures go to $OUT
# (default bench/results/gpu): JSON per preset (rewritten after every row) and one log.
#   bash bench/gpu_check.sh            # on a CUDA machine with this repo's requirements
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

phase "${T_124M:-230}" "throughput 124m 32x1024" $PY -m bench.throughput --presets 124m \
  --batch 32 --seq 1024 --threads 8 \
  --rows miner-full-comp,hf-compiled,miner-full,miner-width,validator-eval \
  --out "$OUT/throughput_124m.json"
# Measured on an H200: the 124m phase took 202 s; the two compiled 1b rows 59 s + 66 s of
# warm-up each, so the 1b eager row goes before the compiled shard row.
phase "${T_1B:-260}" "throughput 1b 8x2048" $PY -m bench.throughput --presets 1b \
  --batch 8 --seq 2048 --threads 8 --steps 10 --warmup-steps 3 \
  --rows miner-full-comp,hf-compiled,miner-full,miner-width,validator-eval \
  --out "$OUT/throughput_1b.json"
phase "${T_TEST:-60}" "pytest CUDA step" $PY -m pytest -q -p no:cacheprovider \
  tests/test_train_step.py -k cuda
nvidia-smi --query-gpu=memory.used,temperature.gpu,clocks.sm --format=csv 2>&1 | tee -a "$LOG"
