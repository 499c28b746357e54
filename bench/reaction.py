"""Benchmark: reaction latency of `watch`, SLA file written -> builder container created.

For each run a new SLA file for a new commit of a local ML repository is written while a
real `reconciler watch` runs (registry "local", the local engine); the time until Docker's
event log shows the builder container's `create` is one sample. The baseline is `docker
compose up -d` of the very spec the reconciler rendered for that run (kept from the state
dir while the builder runs), started by this script: invocation -> the same `create` event.
Prints p50 and p95 of both and their difference. Needs the engine, compose plugin and the
base image (`bash scripts/setup.sh`).

    python bench/reaction.py [--runs 20] [--base-image flops-base:bookworm]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

GIT_ENV = {
    **os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "toy-regression"


class CreateEvents:
    """Docker's own `create` events of builder containers: name -> time (epoch seconds)."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self._cond = threading.Condition()
        self._proc = subprocess.Popen(
            ["docker", "events", "--format", "{{json .}}", "--filter", "type=container",
             "--filter", "event=create", "--filter", "label=flops.role=image-builder"],
            stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            event = json.loads(line)
            with self._cond:
                self.seen[event["Actor"]["Attributes"]["name"]] = event["timeNano"] / 1e9
                self._cond.notify_all()

    def wait_for(self, prefix: str, timeout: float = 60) -> tuple[str, float]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for name, at in self.seen.items():
                    if name.startswith(prefix):
                        return name, at
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no builder container {prefix}* was created")
                self._cond.wait(remaining)

    def close(self) -> None:
        self._proc.kill()


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True,
                          capture_output=True, text=True).stdout.strip()


def new_commit(repo: Path, index: int) -> None:
    (repo / "RUN").write_text(f"{index} {time.time_ns()}\n")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", f"run {index}", cwd=repo)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def is_ready(record: Path) -> bool:
    return record.exists() and '"phase": "ready"' in record.read_text()


def wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--base-image", default="flops-base:bookworm")
    args = parser.parse_args()
    events = CreateEvents()
    tmp = Path(tempfile.mkdtemp(prefix="flops-bench-"))
    repo = tmp / "ml" / "bench-model"
    shutil.copytree(EXAMPLE, repo)
    git("init", "-q", "-b", "main", cwd=repo)
    desired, state = tmp / "desired", tmp / "state"
    desired.mkdir()
    config = tmp / "reconciler.toml"
    config.write_text(
        'registry = "local"\nallow_file_repos = true\nmax_concurrent_builds = 1\n'
        f'[builder]\nbase_image = "{args.base_image}"\n'
        f'[images]\nbase_image = "{args.base_image}"\n')
    watch = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "--desired", str(desired), "--state", str(state),
         "--config", str(config), "watch"], stdout=subprocess.DEVNULL)
    ours: list[float] = []
    baseline: list[float] = []
    images: list[str] = []
    try:
        for index in range(args.runs):
            new_commit(repo, index)
            project = f"bench-{index:03d}"
            sla = desired / f"{project}.yaml"
            written = time.time()
            sla.write_text(f"ml_repo_url: {repo}\nml_model_flavor: sklearn\n")
            _, created = events.wait_for(f"flops-build-{project}-")
            ours.append(created - written)
            spec = next((state / "builds").glob(f"flops-build-{project}-*/compose.yaml"))
            spec_copy = tmp / f"baseline-{index}.yaml"
            shutil.copyfile(spec, spec_copy)
            record = state / "projects" / f"{project}.json"
            wait_for(functools.partial(is_ready, record), 300)
            images += json.loads(record.read_text())["images"].values()
            # Baseline: the same spec, straight to `docker compose up -d`.
            baseline_name = f"flops-build-baseline-{index:03d}"
            started = time.time()
            subprocess.run(["docker", "compose", "-p", baseline_name, "-f", str(spec_copy),
                            "up", "-d", "--quiet-pull"], check=True, capture_output=True)
            _, created = events.wait_for(baseline_name)
            baseline.append(created - started)
            subprocess.run(["docker", "compose", "-p", baseline_name, "-f", str(spec_copy),
                            "down", "-v", "-t", "0"], check=True, capture_output=True)
    finally:
        watch.send_signal(signal.SIGTERM)
        watch.wait(timeout=60)
        events.close()
        if images:
            subprocess.run(["docker", "image", "rm", "-f", *set(images)], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"(a) reaction latency over {args.runs} runs (SLA written -> builder created)")
    for label, samples in (("baseline: docker compose up -d", baseline), ("watch", ours)):
        print(f"    {label:<32} p50 {percentile(samples, 0.5) * 1000:7.1f} ms   "
              f"p95 {percentile(samples, 0.95) * 1000:7.1f} ms")
    print(f"    watch above baseline              p50 "
          f"{(percentile(ours, 0.5) - percentile(baseline, 0.5)) * 1000:+7.1f} ms   p95 "
          f"{(percentile(ours, 0.95) - percentile(baseline, 0.95)) * 1000:+7.1f} ms   "
          f"(median ratio {statistics.median(ours) / statistics.median(baseline):.2f}x)")


if __name__ == "__main__":
    main()
