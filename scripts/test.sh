#!/usr/bin/env bash
# Set up the machine (scripts/setup.sh), then lint, type-check and test.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/unit -x`.
# Runs every step even when one fails, so CI shows all problems; exits non-zero on any failure.
# pytest's exit 5 ("no tests collected") counts as a failure.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

# The platform tests build linux/arm64 images under QEMU: ask setup.sh for that emulation.
bash scripts/setup.sh --platforms "${FLOPS_PLATFORMS:-linux/arm64}"

VENV_BIN="$REPO_ROOT/.venv/bin"
export PATH="$VENV_BIN:$PATH"

failed=()
step() {
  local name=$1
  shift
  printf '\n=== %s: %s\n' "$name" "$*"
  local rc=0
  "$@" || rc=$?
  if ((rc != 0)); then
    if [[ $name == pytest && $rc -eq 5 ]]; then
      printf '=== pytest collected no tests (exit 5): counted as a failure\n' >&2
    else
      printf '=== %s failed (exit %d)\n' "$name" "$rc" >&2
    fi
    failed+=("$name")
  fi
}

step ruff "$VENV_BIN/ruff" check .
step mypy "$VENV_BIN/mypy"
step pytest "$VENV_BIN/python" -m pytest "$@"

if ((${#failed[@]})); then
  printf '\nFAILED: %s\n' "${failed[*]}" >&2
  exit 1
fi
printf '\nall checks passed\n'
