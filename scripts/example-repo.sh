#!/usr/bin/env bash
# Make examples/ml-repos/toy-regression, the git repository the example SLA points at, from
# examples/toy-regression. Fixed author and dates make the commit the same on every machine,
# so images built once are found again. Idempotent: commits only when the sources changed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/examples/toy-regression"
repo="$root/examples/ml-repos/toy-regression"
export GIT_AUTHOR_NAME="flops example" GIT_AUTHOR_EMAIL="example@flops.invalid"
export GIT_COMMITTER_NAME="flops example" GIT_COMMITTER_EMAIL="example@flops.invalid"
export GIT_AUTHOR_DATE="2026-01-01T00:00:00Z" GIT_COMMITTER_DATE="2026-01-01T00:00:00Z"
if [ ! -d "$repo/.git" ]; then
  mkdir -p "$repo"
  git -C "$repo" init -q -b main
fi
rsync_like() { find "$repo" -mindepth 1 -maxdepth 1 ! -name .git -exec rm -rf {} +; cp -R "$src"/. "$repo"/; }
rsync_like
git -C "$repo" add -A
if ! git -C "$repo" diff --cached --quiet 2>/dev/null || ! git -C "$repo" rev-parse -q --verify HEAD >/dev/null; then
  git -C "$repo" commit -q -m "toy-regression example"
fi
echo "example ML repository: $repo at $(git -C "$repo" rev-parse HEAD)"
