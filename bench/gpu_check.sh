#!/usr/bin/env bash
# The GPU measurements of bench/README.md "On a GPU" in one run, most important first, each
# phase under its own time limit so a slow compile cannot cost the rest. Figures go to $OUT
# (default bench/results/gpu): JSON per preset (rewritten after every row) and one log.
#   bash bench/gpu_check.sh [124m] [1b] [test] [fsdp]   # on a CUDA machine; no argument: all four
#   bash bench/gpu_check.sh fsdp                           # only the torchrun FSDP2 1b rows
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
PHASES=${*:-124m 1b test fsdp}
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
# FSDP2 across the host's GPUs (bench/team.py: the torchrun miner's own code), 1b at 8 x 2048 per
# process, against one process on one GPU. One GPU lent: two processes share it over gloo (NCCL
# refuses two ranks on one device), which shows sharding halves the per-process memory but not
# the speed of real multi-GPU training.
NGPU=$(nvidia-smi -L 2>/dev/null | wc -l)
TEAM="$PY -m torch.distributed.run --standalone"
want fsdp && phase "${T_TEAM1:-240}" "team 1b x1 (baseline)" $TEAM --nproc_per_node 1 -m bench.team --preset 1b \
  --engine ddp --batch 8 --steps 10 --threads 8 --out "$OUT/team_1b_x1.json"
if [[ $NGPU -ge 2 ]]; then
  want fsdp && phase "${T_TEAMN:-300}" "team 1b fsdp x$NGPU" $TEAM --nproc_per_node "$NGPU" -m bench.team \
    --preset 1b --engine fsdp --batch $((8 * NGPU)) --steps 10 --threads 4 --out "$OUT/team_1b_fsdp_x$NGPU.json"
else
  want fsdp && phase "${T_TEAMN:-300}" "team 1b fsdp x2 on one GPU (gloo)" $TEAM --nproc_per_node 2 -m bench.team \
    --preset 1b --engine fsdp --batch 16 --steps 10 --threads 4 --device cuda:0 --backend gloo \
    --out "$OUT/team_1b_fsdp_x2_one_gpu.json"
fi
nvidia-smi --query-gpu=memory.used,temperature.gpu,clocks.sm --format=csv 2>&1 | tee -a "$LOG"
