#!/usr/bin/env bash
# Start a subtensor localnet node (RPC ws://127.0.0.1:9944, what `--subtensor.network local` means).
#
#   scripts/localnet/start_node.sh [--slow] [--mode auto|docker|binary] [--tag TAG] [--no-purge] [--no-wait]
#
# Picks, in this order (--mode forces one):
#   docker  when a docker engine answers: ghcr.io/opentensor/subtensor-localnet:TAG, fast blocks
#           (250 ms) unless --slow; container "local_chain", ports 9944 and 9945.
#   binary  when node-subtensor is on PATH (or $NODE_SUBTENSOR): the three-authority localnet of
#           subtensor's scripts/localnet.sh (//One, //Two, //Three; RPC 9944/9945/9946, p2p
#           30334/30335/30336), state and logs under $LOCALNET_DIR. Fast or slow blocks are fixed
#           when the binary is built (feature fast-runtime).
# Otherwise it exits 1 and says how to get either. Stop the node with scripts/localnet/stop_node.sh.
#
# Environment: LOCALNET_IMAGE (ghcr.io/opentensor/subtensor-localnet), LOCALNET_TAG (devnet-ready),
# LOCALNET_CONTAINER (local_chain), LOCALNET_DIR (~/.deai/localnet/node), NODE_SUBTENSOR
# (node-subtensor), LOCALNET_WAIT (seconds to wait for the RPC, 180), LOCALNET_AUTHORITIES
# (one-two-three; alice-bob for binaries whose `--chain local` genesis has Alice/Bob authorities).
set -euo pipefail

IMAGE=${LOCALNET_IMAGE:-ghcr.io/opentensor/subtensor-localnet}
TAG=${LOCALNET_TAG:-devnet-ready}
CONTAINER=${LOCALNET_CONTAINER:-local_chain}
NODE_DIR=${LOCALNET_DIR:-$HOME/.deai/localnet/node}
NODE_BIN=${NODE_SUBTENSOR:-node-subtensor}
WAIT_S=${LOCALNET_WAIT:-180}
AUTHORITIES=${LOCALNET_AUTHORITIES:-one-two-three}
RPC_PORT=9944
MODE=auto
FAST=True
PURGE=1
WAIT=1

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --slow) FAST=False ;;
    --fast) FAST=True ;;
    --mode) MODE=${2:?--mode needs auto, docker or binary}; shift ;;
    --tag) TAG=${2:?--tag needs a value}; shift ;;
    --no-purge) PURGE=0 ;;
    --no-wait) WAIT=0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "start_node.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

log() { echo "[localnet] $*" >&2; }

docker_state() {  # prints: ok | no-cli | no-engine:<why>
  if ! command -v docker >/dev/null 2>&1; then
    echo no-cli
    return
  fi
  local why
  if why=$(docker info --format '{{.ServerVersion}}' 2>&1); then
    echo ok
  else
    why=$(printf '%s\n' "$why" | grep -v '^[[:space:]]*$' | head -n 1)
    echo "no-engine:${why:-docker info failed}"
  fi
}

rpc_ready() {  # the node answers chain_getHeader on the RPC port
  local body='{"id":1,"jsonrpc":"2.0","method":"chain_getHeader","params":[]}'
  if command -v curl >/dev/null 2>&1; then
    curl -sf -m 2 -H 'Content-Type: application/json' -d "$body" "http://127.0.0.1:$RPC_PORT" 2>/dev/null \
      | grep -q '"number"'
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$RPC_PORT") 2>/dev/null
  fi
}

wait_for_rpc() {
  [[ $WAIT -eq 1 ]] || return 0
  log "waiting for the RPC on ws://127.0.0.1:$RPC_PORT (up to ${WAIT_S}s)"
  local waited=0
  while ! rpc_ready; do
    if [[ $waited -ge $WAIT_S ]]; then
      log "ERROR: the node did not answer on port $RPC_PORT within ${WAIT_S}s; $1"
      log "stop it with scripts/localnet/stop_node.sh"
      exit 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  log "node is up: ws://127.0.0.1:$RPC_PORT (--subtensor.network local)"
}

start_docker() {
  if [[ -n $(docker ps -q --filter "name=^/${CONTAINER}$") ]]; then
    log "container $CONTAINER is already running (stop it with scripts/localnet/stop_node.sh)"
    wait_for_rpc "see: docker logs $CONTAINER"
    return
  fi
  if [[ -n $(docker ps -aq --filter "name=^/${CONTAINER}$") ]]; then
    docker rm -f "$CONTAINER" >/dev/null
  fi
  log "docker: $IMAGE:$TAG, fast blocks $FAST, ports 9944 9945, container $CONTAINER"
  docker run -d --rm --name "$CONTAINER" -p 9944:9944 -p 9945:9945 "$IMAGE:$TAG" "$FAST" >/dev/null
  wait_for_rpc "see: docker logs $CONTAINER"
}

start_binary() {
  local bin pidfile spec
  bin=$(command -v "$NODE_BIN")
  pidfile="$NODE_DIR/pids"
  spec="$NODE_DIR/specs/local.json"
  if [[ -f $pidfile ]]; then
    local pid
    while read -r pid _; do
      if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        log "a localnet node started from $NODE_DIR is already running (pid $pid); stop it with scripts/localnet/stop_node.sh"
        exit 1
      fi
    done <"$pidfile"
    rm -f "$pidfile"
  fi
  if [[ $FAST == False ]]; then
    log "note: --slow has no effect on a binary; its block time is fixed when it is built (fast-runtime feature)"
  fi
  mkdir -p "$NODE_DIR/specs" "$NODE_DIR/logs"
  log "binary: $bin, state in $NODE_DIR"
  "$bin" build-spec --disable-default-bootnode --raw --chain local >"$spec" 2>"$NODE_DIR/logs/build-spec.log"

  local names=() ports=() rpcs=() flags=()
  if [[ $AUTHORITIES == alice-bob ]]; then
    names=(alice bob); ports=(30334 30335); rpcs=(9944 9945); flags=(--alice --bob)
  else
    names=(one two three); ports=(30334 30335 30336); rpcs=(9944 9945 9946); flags=(--one --two "--name Three")
  fi
  local i name base
  for i in "${!names[@]}"; do
    name=${names[$i]}
    base="$NODE_DIR/$name"
    if [[ $PURGE -eq 1 ]]; then
      rm -rf "$base"
    fi
    mkdir -p "$base"
    "$bin" key generate-node-key --chain="$spec" --base-path "$base" >/dev/null 2>&1 || true
  done
  if [[ $AUTHORITIES != alice-bob ]]; then
    # There is no --three shorthand in Substrate: insert //Three's session keys.
    "$bin" key insert --base-path "$NODE_DIR/three" --chain="$spec" --scheme Sr25519 --suri //Three --key-type aura
    "$bin" key insert --base-path "$NODE_DIR/three" --chain="$spec" --scheme Sr25519 --suri //Three --key-type babe
    "$bin" key insert --base-path "$NODE_DIR/three" --chain="$spec" --scheme Ed25519 --suri //Three --key-type gran
  fi
  : >"$pidfile"
  for i in "${!names[@]}"; do
    name=${names[$i]}
    # shellcheck disable=SC2086  # flags[i] may hold two words (--name Three)
    nohup "$bin" --base-path "$NODE_DIR/$name" --chain="$spec" ${flags[$i]} --port "${ports[$i]}" \
      --rpc-port "${rpcs[$i]}" --validator --rpc-cors=all --allow-private-ipv4 --discover-local \
      --unsafe-force-node-key-generation >"$NODE_DIR/logs/$name.log" 2>&1 &
    echo "$! $name" >>"$pidfile"
    log "started $name (pid $!, rpc ${rpcs[$i]}, p2p ${ports[$i]}), log $NODE_DIR/logs/$name.log"
  done
  sleep 1
  local pid dead=0
  while read -r pid name; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "ERROR: node $name (pid $pid) exited at once; the end of $NODE_DIR/logs/$name.log:"
      tail -n 5 "$NODE_DIR/logs/$name.log" >&2 || true
      dead=1
    fi
  done <"$pidfile"
  if [[ $dead -eq 1 ]]; then
    log "(a port in use is the usual cause: 9944-9946, 30334-30336); stopping the others"
    LOCALNET_DIR=$NODE_DIR bash "$(dirname "$0")/stop_node.sh" || true
    exit 1
  fi
  wait_for_rpc "see the logs in $NODE_DIR/logs"
}

no_node_error() {
  local docker_why=$1
  cat >&2 <<EOF
ERROR: cannot start a subtensor localnet node on this machine.
  docker:         ${docker_why}
  node-subtensor: '$NODE_BIN' is not on PATH
Do one of these, then run scripts/localnet/start_node.sh again:
  1. Docker: install Docker and start its engine (docker info must work). This script then runs
       docker run -d --rm --name $CONTAINER -p 9944:9944 -p 9945:9945 $IMAGE:$TAG True
  2. Binary: build the node from https://github.com/opentensor/subtensor
       ./scripts/init.sh
       cargo build --workspace --profile=release --features "pow-faucet metadata-hash fast-runtime"
     and put target/release/node-subtensor on PATH (or set NODE_SUBTENSOR=/path/to/node-subtensor).
Without a node, the embedded simnet runs the same setup: see docs/localnet.md ("No docker, no binary").
EOF
  exit 1
}

state=$(docker_state)
case "$state" in
  ok) docker_why="engine available" ;;
  no-cli) docker_why="not installed" ;;
  *) docker_why="installed, but its engine is not reachable (${state#no-engine:})" ;;
esac
have_binary=0
command -v "$NODE_BIN" >/dev/null 2>&1 && have_binary=1

case "$MODE" in
  docker)
    [[ $state == ok ]] || { log "ERROR: --mode docker, but docker is $docker_why"; exit 1; }
    start_docker ;;
  binary)
    [[ $have_binary -eq 1 ]] || { log "ERROR: --mode binary, but '$NODE_BIN' is not on PATH"; exit 1; }
    start_binary ;;
  auto)
    if [[ $state == ok ]]; then
      start_docker
    elif [[ $have_binary -eq 1 ]]; then
      [[ $state == no-cli ]] || log "docker is $docker_why; using $NODE_BIN"
      start_binary
    else
      no_node_error "$docker_why"
    fi ;;
  *) echo "start_node.sh: --mode must be auto, docker or binary" >&2; exit 2 ;;
esac
