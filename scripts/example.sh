#!/usr/bin/env bash
# The README's first command: set up this machine, make the example ML repository, then
# reconcile the bundled example (desired/, reconciler.toml: the local engine as the one
# image-builder host, registry "local") until it is ready, and show its status and log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
bash scripts/example-repo.sh
.venv/bin/reconciler apply --wait
.venv/bin/reconciler status
echo
echo "observer log (state/observers/toy-regression.log):"
cat state/observers/toy-regression.log
