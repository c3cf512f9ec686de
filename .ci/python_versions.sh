#!/usr/bin/env bash
# CI step: the package installs and imports on the other Python versions it supports (3.10-3.12),
# beside the 3.11 the test suite runs on. For each other interpreter found on this machine (PATH,
# pyenv's versions; set DEAI_PYTHONS to choose), in a fresh venv:
#   1. every module of the product compiles (syntax of that version);
#   2. pip resolves the package's metadata for it (python_requires, the pins and their markers);
#   3. on the first one only, the package and its dependencies but torch install, and every module
#      imports; modules that need torch are listed, not failed: torch's CPU wheel for another
#      Python is not on the registries this machine reaches (PyPI's Linux torch is a CUDA build).
# Bounded: each step has a timeout, the whole run DEAI_PYVER_BUDGET seconds (default 900).
# No other interpreter: says so and passes. Exit 1 on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
BUDGET=${DEAI_PYVER_BUDGET:-900}
START=$SECONDS
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

find_pythons() {
  local minor candidate
  for minor in 3.10 3.12; do
    for candidate in "python$minor" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$minor".*/bin/"python$minor"; do
      if [[ -x $candidate || -n $(command -v "$candidate" 2>/dev/null) ]] \
        && "$candidate" -c 'import sys, venv' > /dev/null 2>&1; then
        command -v "$candidate" 2>/dev/null || echo "$candidate"
        break
      fi
    done
  done
}

left() { echo $(( BUDGET - (SECONDS - START) )); }

step() {  # step NAME SECONDS COMMAND...: run with a timeout within the budget
  local name=$1 limit=$2
  shift 2
  (( limit > $(left) )) && limit=$(left)
  if (( limit <= 0 )); then
    echo "FAIL $name: the ${BUDGET} s budget is spent"
    return 1
  fi
  local began=$SECONDS
  if timeout "$limit" "$@" > "$WORK/step.log" 2>&1; then
    echo "ok   $name ($(( SECONDS - began )) s)"
  else
    echo "FAIL $name (exit $?, $(( SECONDS - began )) s):"
    tail -20 "$WORK/step.log"
    return 1
  fi
}

mapfile -t PYTHONS < <(if [[ -n ${DEAI_PYTHONS:-} ]]; then tr ' ' '\n' <<< "$DEAI_PYTHONS"; else find_pythons; fi)
if (( ${#PYTHONS[@]} == 0 )); then
  echo "python_versions: no Python 3.10 or 3.12 on this machine; nothing to check"
  exit 0
fi

# pip builds from a copy: nothing (build/, *.egg-info) lands in the checkout.
mkdir -p "$WORK/src" && cp -r setup.py protocol simnet template neurons "$WORK/src/"
failed=0
imported=0
for python in "${PYTHONS[@]}"; do
  version=$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
  echo "== Python $version ($python)"
  venv="$WORK/venv-$version"
  step "venv" 120 "$python" -m venv "$venv" || { failed=1; continue; }
  PYTHONPYCACHEPREFIX="$WORK/pycache" step "compile every module" 120 "$venv/bin/python" -m compileall -q -f \
    "$REPO/protocol" "$REPO/simnet" "$REPO/template" "$REPO/neurons" "$REPO/scripts" || failed=1
  step "pip resolves the metadata" 300 "$venv/bin/python" -m pip install --quiet --dry-run --ignore-installed \
    --report "$WORK/report-$version.json" "$WORK/src[test]" || { failed=1; continue; }
  if (( imported )); then
    continue
  fi
  imported=1
  # Everything the resolver chose but torch and the CUDA libraries that come with PyPI's torch.
  "$venv/bin/python" - "$WORK/report-$version.json" > "$WORK/requirements-$version.txt" <<'EOF'
import json, sys
for item in json.load(open(sys.argv[1]))["install"]:
    name, version = item["metadata"]["name"], item["metadata"]["version"]
    if name.lower() not in ("deai-subnet", "torch", "triton") and not name.lower().startswith(("nvidia-", "cuda-")):
        print(f"{name}=={version}")
EOF
  step "install the dependencies but torch" 600 "$venv/bin/python" -m pip install --quiet \
    -r "$WORK/requirements-$version.txt" || { failed=1; continue; }
  step "install the package" 120 "$venv/bin/python" -m pip install --quiet --no-deps "$WORK/src" \
    || { failed=1; continue; }
  (cd "$WORK" && step "import every module" 300 "$venv/bin/python" - "$REPO" <<'EOF'
import importlib, pathlib, sys
repo = pathlib.Path(sys.argv[1])
needs_torch, failures, ok = [], [], 0
for package in ("protocol", "simnet", "template", "neurons"):
    for path in sorted((repo / package).rglob("*.py")):
        parts = list(path.relative_to(repo).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        try:
            importlib.import_module(name)
            ok += 1
        except ModuleNotFoundError as exc:
            (needs_torch if exc.name == "torch" or (exc.name or "").startswith("torch.") else failures).append(
                f"{name}: {exc}")
        except Exception as exc:
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
print(f"{ok} modules imported; {len(needs_torch)} need torch (not installable here for this Python)")
for line in failures:
    print("  FAILED", line)
sys.exit(1 if failures else 0)
EOF
  ) || failed=1
  grep -v '^\[transformers\]' "$WORK/step.log" | head -3
done
echo "python_versions: $(( SECONDS - START )) s, $([[ $failed == 0 ]] && echo passed || echo FAILED)"
exit $failed
