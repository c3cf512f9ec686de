#!/usr/bin/env bash
# Keep a running subnet checkout current: fetch its branch, fast-forward, and when the code
# version (CODE_VERSION in template/utils/versions.py) changed, reinstall and restart the neurons.
#   scripts/auto_update.sh               # check once
#   scripts/auto_update.sh --every 600   # check every 10 minutes (ecosystem.config.js runs this under PM2)
# A checkout with local changes, or one that has diverged from its remote, is left alone (said once
# per check). What reinstalls and restarts can be changed for docker, systemd or tests:
#   DEAI_INSTALL  default: .venv/bin/python -m pip install --quiet -e .
#   DEAI_RESTART  default: pm2 restart each of DEAI_PM2_APPS that PM2 runs
#   DEAI_PM2_APPS default: "deai-validator deai-miner"
set -euo pipefail
cd "$(dirname "$0")/.."

every=0
if [[ ${1:-} == --every ]]; then
  every=${2:?--every needs seconds}
  [[ $every =~ ^[0-9]+$ && $every -ge 60 ]] || { echo "--every takes whole seconds, at least 60" >&2; exit 2; }
elif [[ -n ${1:-} ]]; then
  echo "usage: $0 [--every SECONDS]" >&2
  exit 2
fi

log() { echo "$(date -u +%FT%TZ) auto-update: $*"; }

code_version() { sed -n 's/^CODE_VERSION = "\(.*\)"$/\1/p' template/utils/versions.py; }

restart_pm2_apps() {
  local app
  for app in ${DEAI_PM2_APPS:-deai-validator deai-miner}; do
    if pm2 describe "$app" > /dev/null 2>&1; then
      pm2 restart "$app" --update-env
    fi
  done
}

check_once() {
  local before after branch
  before=$(code_version)
  branch=$(git rev-parse --abbrev-ref HEAD)
  if ! timeout 120 git fetch --quiet origin "$branch"; then
    log "git fetch failed; trying again later"
    return 0
  fi
  if [[ $(git rev-parse HEAD) == $(git rev-parse FETCH_HEAD) ]]; then
    log "up to date (version $before)"
    return 0
  fi
  if ! git diff --quiet HEAD || ! git merge --ff-only --quiet FETCH_HEAD; then
    log "local changes or a diverged branch: not updating (git status says what)"
    return 0
  fi
  after=$(code_version)
  if [[ $before == "$after" ]]; then
    log "pulled $(git rev-parse --short HEAD); version still $after: no restart"
    return 0
  fi
  log "version $before -> $after: reinstalling and restarting"
  eval "${DEAI_INSTALL:-.venv/bin/python -m pip install --quiet -e .}"
  if [[ -n ${DEAI_RESTART:-} ]]; then
    eval "$DEAI_RESTART"
  else
    restart_pm2_apps
  fi
  log "now at version $after"
}

main() {
  local head
  while true; do
    head=$(git rev-parse HEAD)
    check_once || log "check failed; trying again later"
    (( every > 0 )) || return 0
    # A pull may have changed this very script: go on with the new one.
    [[ $(git rev-parse HEAD) == "$head" ]] || exec bash "$0" --every "$every"
    sleep "$every"
  done
}

# One line: bash has read all of it before a pull can rewrite this file under it.
main; exit $?
