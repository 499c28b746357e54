#!/usr/bin/env bash
# The README's first command: set up this machine, make the example ML repository, reconcile
# the bundled example (desired/, reconciler.toml: the local engine as the image-builder host
# and two learner sites, registry "local") until it is trained, its model image built and
# served, and show its status, log and one prediction of the served model; then train it by
# hand with the built images (README: "Train with the built images") and show the metrics.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
bash scripts/example-repo.sh
.venv/bin/reconciler apply --wait
.venv/bin/reconciler status
echo
echo "observer log (state/observers/toy-regression.log):"
cat state/observers/toy-regression.log

serving="$(.venv/bin/reconciler status --json | .venv/bin/python -c '
import json, sys
[row] = [r for r in json.load(sys.stdin) if r["project"] == "toy-regression"]
print(row["serving"] or "")')"
echo
echo "the served model (${serving}/invocations), y = 2x + 1 for x = 1, 2, 3:"
.venv/bin/python - "$serving" <<'PY'
import sys, httpx
answer = httpx.post(f"{sys.argv[1]}/invocations", json={"inputs": [[1.0], [2.0], [3.0]]},
                    timeout=30)
answer.raise_for_status()
print(answer.json())
PY

echo
echo "by hand: a 3-round federation of the built images: 1 aggregator, 2 learners"
images="$(.venv/bin/reconciler status --json | .venv/bin/python -c '
import json, sys
[row] = [r for r in json.load(sys.stdin) if r["project"] == "toy-regression"]
print(row["images"]["learner"], row["images"]["aggregator"])')"
read -r learner aggregator <<<"$images"
run="$(mktemp -d /tmp/flops-example-run.XXXXXX)"
mkdir -p "$run/data-1/dev" "$run/data-2/dev" "$run/out"  # the example makes its own data
export LEARNER_IMAGE="$learner" AGGREGATOR_IMAGE="$aggregator" DATA_TAGS=dev \
       DATA_1="$run/data-1" DATA_2="$run/data-2" OUTPUT="$run/out" FEDERATION=flops-example
compose=(docker compose -f examples/federation/compose.yaml)
"${compose[@]}" up --no-color 2>&1 | grep '"type": "round"' || true
codes="$("${compose[@]}" ps -a --format '{{.Service}}={{.ExitCode}}' | sort | tr '\n' ' ')"
"${compose[@]}" down --volumes >/dev/null 2>&1
echo "exit statuses: $codes"
echo "$run/out/result.json:"
cat "$run/out/result.json"
[[ "$codes" == "aggregator=0 learner-1=0 learner-2=0 " ]]
