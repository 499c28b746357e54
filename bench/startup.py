"""Benchmark: how fast the read commands start, against a bare ``python -c pass``.

Writes N ready project records (images, digests, timings, a repair with its diff: what a
real build leaves) into a temporary state directory, then times, in the same run and
alternating, the median wall time of: ``python -c pass``, ``reconciler status --json``,
``reconciler status`` (piped: plain lines), ``reconciler logs PROJECT`` and
``reconciler plan --offline`` over N SLA files. Each command is a fresh interpreter, as a user
or a script runs it. Prints the seconds and the ratio to ``python -c pass``. Goal (issue 11):
``status --json`` on 100 projects under 0.12 s.

    python bench/startup.py [--projects 100] [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from timing import median_seconds

from reconciler.builder.repairs import Repair
from reconciler.core.project import Phase, ProjectRecord
from reconciler.edges.observer import ObserverLog
from reconciler.edges.state import StateStore

COMMIT = "0123456789abcdef0123456789abcdef01234567"
GOAL_SECONDS = 0.12


def write_state(root: Path, projects: int) -> None:
    store = StateStore(root / "state")
    log = ObserverLog(store.observer_path)
    (root / "desired").mkdir()
    for i in range(projects):
        name = f"project-{i:03d}"
        images = {role: f"registry.example.org:5000/org{i % 7}/model-{i}/{role}:{COMMIT}"
                  for role in ("learner", "aggregator")}
        store.save(ProjectRecord(
            project=name, phase=Phase.ready, sla_file=f"desired/{name}.yaml",
            sla={"ml_repo_url": f"https://git.example.org/org{i % 7}/model-{i}.git",
                 "ml_model_flavor": "sklearn"},
            sla_digest="1" * 64, image_digest="2" * 64, commit=COMMIT, images=images,
            digests={role: "sha256:" + "3" * 64 for role in images},
            timings={"clone": 0.4, "check": 0.01, "dependencies": 0.02,
                     "build:learner": 31.0, "build:aggregator": 12.5},
            repairs=["learner: removed mlflow==2.9.2"],
            repair_diffs=[Repair(("learner",), "learner: removed mlflow==2.9.2",
                                 ("- mlflow==2.9.2  # conda.yaml:8", "+ (removed)"))],
            served_by="k" * 16, updated_at="2026-11-30T12:00:00.000Z"))
        for n in range(40):
            log.write(name, "INFO", "build:learner", f"step {n} of the build")
        (root / "desired" / f"{name}.yaml").write_text(
            f"ml_repo_url: https://git.example.org/org{i % 7}/model-{i}.git\n"
            f"ml_repo_ref: {COMMIT}\nml_model_flavor: sklearn\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    with tempfile.TemporaryDirectory(prefix="flops-startup-") as tmp:
        root = Path(tmp)
        write_state(root, args.projects)
        reconciler = [sys.executable, "-m", "reconciler", "--state", str(root / "state"),
                      "--desired", str(root / "desired")]
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "status --json": [*reconciler, "status", "--json"],
            "status (piped)": [*reconciler, "status"],
            "logs PROJECT": [*reconciler, "logs", "project-000"],
            "plan --offline": [*reconciler, "plan", "--offline"],
        }

        def run(command: list[str]) -> None:
            subprocess.run(command, stdout=subprocess.DEVNULL, check=False, env=env, cwd=tmp)

        for command in commands.values():  # warm the file cache and the bytecode
            run(command)
        seconds = {name: median_seconds(lambda c=command: run(c), args.rounds)  # type: ignore[misc]
                   for name, command in commands.items()}
    bare = seconds["python -c pass"]
    print(f"start-up over {args.projects} projects, median of {args.rounds} runs each")
    for name, value in seconds.items():
        print(f"  {name:<16} {value * 1000:7.1f} ms  {value / bare:5.1f}x python -c pass")
    verdict = "meets" if seconds["status --json"] < GOAL_SECONDS else "misses"
    print(f"status --json {verdict} the goal of {GOAL_SECONDS:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
