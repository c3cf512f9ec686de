#!/usr/bin/env bash
# Stop the localnet node that scripts/localnet/start_node.sh started: the docker container
# ($LOCALNET_CONTAINER, local_chain) and/or the node-subtensor processes listed in
# $LOCALNET_DIR/pids (~/.deai/localnet/node/pids). Only those processes are signalled.
#
#   scripts/localnet/stop_node.sh [--purge]     --purge also deletes the binary node's chain state
set -euo pipefail

CONTAINER=${LOCALNET_CONTAINER:-local_chain}
NODE_DIR=${LOCALNET_DIR:-$HOME/.deai/localnet/node}
PURGE=0
for arg in "$@"; do
  case "$arg" in
    --purge) PURGE=1 ;;
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "stop_node.sh: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done

log() { echo "[localnet] $*" >&2; }
stopped=0

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  if [[ -n $(docker ps -aq --filter "name=^/${CONTAINER}$") ]]; then
    docker stop "$CONTAINER" >/dev/null 2>&1 || true
    docker rm -f "$CONTAINER" >/dev/null 2>&1 || true
    log "stopped docker container $CONTAINER"
    stopped=1
  fi
fi

pidfile="$NODE_DIR/pids"
if [[ -f $pidfile ]]; then
  pids=()
  while read -r pid name; do
    [[ -n $pid ]] || continue
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
      log "stopping $name (pid $pid)"
    fi
  done <"$pidfile"
  for _ in $(seq 1 20); do
    alive=()
    for pid in "${pids[@]+"${pids[@]}"}"; do
      kill -0 "$pid" 2>/dev/null && alive+=("$pid")
    done
    [[ ${#alive[@]} -eq 0 ]] && break
    sleep 0.5
  done
  for pid in "${alive[@]+"${alive[@]}"}"; do
    kill -KILL "$pid" 2>/dev/null || true
    log "killed pid $pid (did not stop on TERM)"
  done
  rm -f "$pidfile"
  stopped=1
fi

if [[ $PURGE -eq 1 && -d $NODE_DIR ]]; then
  rm -rf "${NODE_DIR:?}/one" "${NODE_DIR:?}/two" "${NODE_DIR:?}/three" "${NODE_DIR:?}/alice" "${NODE_DIR:?}/bob"
  log "deleted the chain state under $NODE_DIR"
fi

if [[ $stopped -eq 0 ]]; then
  log "no localnet node from start_node.sh is running (no container $CONTAINER, no $pidfile)"
fi
