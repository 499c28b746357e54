"""Benchmark: a federation of the FL-actor images the reconciler built, run as the README says
(examples/federation/compose.yaml: 1 aggregator, 2 learners, their own network, 3 rounds).

The images are those of the sklearn test repository (model_manager.py and data_manager.py of
tests/fixtures/ml-repos/sklearn-mnist, conda.yaml with numpy, scikit-learn, mlflow-skinny),
built here with `reconciler apply --wait` (registry "local"; the runtime image and the builder
image flops-bench-builder:latest are made when missing), or given with --learner-image and
--aggregator-image. Each learner has a data directory of its own with one tag folder (`mnist`)
holding synthetic MNIST-shaped Parquet data (tests/actors_support.py write_mnist_parquet,
--rows rows each). The federation is run --runs times; per run:

- wall time: from the `docker compose up` call to the aggregator container's exit
  (State.FinishedAt), and to `compose up` returning;
- start-up: from the call to the start of round 1 (the aggregator's first `round` event, by
  its Docker log timestamp, minus that round's `seconds`), split into the engine's part (call
  -> the last container started), the aggregator's (-> its `listening` event) and the
  learners' (-> the last learner `connected`), and its share of the wall time, against the
  rounds themselves (the sum of the `round` events' `seconds`);
- per-round overhead: a `round` event's `seconds` minus the slowest learner's `fit` +
  `evaluate` `seconds` of that round (learner events from `docker compose logs
  --no-log-prefix learner-N`): what Flower, gRPC and the aggregator add to the training.

Prints medians (per-round figures over every round of every run). Every container, network,
image (built here) and directory made here is removed at the end. Needs the engine, the compose
plugin, the base image and, to build, PyPI. On a shared engine, hold the lock:

    flock /tmp/flops-integration.lock .venv/bin/python bench/federation.py [--runs 5]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from actor_images import BASE_IMAGE, BUILDER_IMAGE, TEST_REPO_DEPS, repository_files  # noqa: E402
from actors_support import write_mnist_parquet  # noqa: E402
from integration.harness import Workspace, sla_text  # noqa: E402
from support import make_ml_repo  # noqa: E402

COMPOSE_FILE = ROOT / "examples" / "federation" / "compose.yaml"
LEARNERS = ("learner-1", "learner-2")
Event = dict[str, Any]


def docker(*args: str, timeout: float = 600) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({done.returncode}):\n"
                           f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def image_refs(prefix: str) -> set[str]:
    out = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}")
    return {ref for ref in out.split() if ref.startswith(prefix) and not ref.endswith(":<none>")}


def epoch(stamp: str) -> float:
    """Docker's RFC 3339 time (nanoseconds, Z) as seconds since the epoch."""
    return datetime.datetime.fromisoformat(stamp).timestamp()


@dataclass(frozen=True)
class Images:
    learner: str
    aggregator: str
    built: tuple[str, ...]  # what this script made and removes at the end


def build_images(tmp: Path) -> Images:
    """The sklearn test repository's images, built by the reconciler (registry "local")."""
    files = repository_files(TEST_REPO_DEPS)
    before = image_refs("flops-runtime:") | image_refs(BUILDER_IMAGE)
    repo = "bench-owner/sklearn-mnist-federation"
    make_ml_repo(tmp / "work", repo, files, bare_dir=tmp / "remotes")
    ws = Workspace(tmp / "ws", "local", BASE_IMAGE, extra={"build_timeout": "60m"},
                   env={"RECONCILER_BUILDER_IMAGE": BUILDER_IMAGE})
    ws.sla("mnist.yaml", sla_text(str(tmp / "remotes" / f"{repo}.git")))
    result = ws.run("apply", "--wait", timeout=3600)
    row = ws.status().get("mnist") or {}
    if result.code != 0 or row.get("phase") != "ready":
        raise RuntimeError(f"apply --wait failed ({result.code}):\n{result.stdout[-3000:]}\n"
                           f"{result.stderr[-3000:]}")
    images: dict[str, str] = row["images"]
    made = (image_refs("flops-runtime:") | image_refs(BUILDER_IMAGE)) - before
    return Images(images["learner"], images["aggregator"],
                  (*sorted(images.values()), *sorted(made)))


def federation_env(images: Images, data: list[Path], output: Path, rounds: int
                   ) -> dict[str, str]:
    """What examples/federation/compose.yaml reads from the environment."""
    return {"LEARNER_IMAGE": images.learner, "AGGREGATOR_IMAGE": images.aggregator,
            "DATA_1": str(data[0]), "DATA_2": str(data[1]), "DATA_TAGS": "mnist",
            "OUTPUT": str(output), "ROUNDS": str(rounds)}


class Federation:
    """One compose project of examples/federation/compose.yaml."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.env = env

    def compose(self, *args: str, timeout: float = 900) -> str:
        done = subprocess.run(
            ["docker", "compose", "-f", str(COMPOSE_FILE), "-p", self.name, *args],
            env={**os.environ, **self.env}, capture_output=True, text=True, timeout=timeout,
            check=False)
        if done.returncode != 0:
            raise RuntimeError(f"docker compose {' '.join(args)} failed ({done.returncode}):\n"
                               f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done.stdout

    def containers(self) -> dict[str, dict[str, Any]]:
        """Service -> `docker inspect` of its container."""
        ids = self.compose("ps", "-a", "-q").split()
        found: list[dict[str, Any]] = json.loads(docker("inspect", *ids)) if ids else []
        return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in found}

    def events(self, service: str) -> list[Event]:
        """The service's JSON events, each with `_at`: Docker's log time (epoch seconds)."""
        found = []
        text = self.compose("logs", "--no-color", "--no-log-prefix", "--timestamps", service)
        for line in text.splitlines():
            stamp, _, rest = line.partition(" ")
            rest = rest.strip()
            if not rest.startswith("{"):
                continue
            try:
                event = json.loads(rest)
            except ValueError:
                continue
            if isinstance(event, dict) and "type" in event:
                event["_at"] = epoch(stamp)
                found.append(event)
        return found

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "5")


@dataclass(frozen=True)
class Run:
    wall: float  # compose up called -> aggregator exited
    up_returned: float  # compose up called -> it returned
    engine: float  # -> the last container started
    aggregator_listening: float  # -> the aggregator's `listening` event
    learners_ready: float  # -> the last learner's `ready` event (its data loaded)
    learners_connected: float  # -> the last learner's `connected` event
    startup: float  # -> round 1 began
    rounds: float  # the sum of the rounds' seconds
    after: float  # the last round event -> the aggregator exited
    saving: float  # of which saving the model and result.json (the `saved` event's seconds)
    round_seconds: list[float]
    training: list[float]  # per round: the slowest learner's fit + evaluate
    overhead: list[float]  # per round: round seconds - training


def one_run(tmp: Path, images: Images, data: list[Path], rounds: int, index: int) -> Run:
    output = tmp / f"output-{index}"
    output.mkdir()
    fed = Federation(f"flops-bench-fed-{uuid.uuid4().hex[:8]}",
                     federation_env(images, data, output, rounds))
    try:
        called = time.time()
        fed.compose("up", "--no-color")
        returned = time.time()
        containers = fed.containers()
        codes = {s: c["State"]["ExitCode"] for s, c in containers.items()}
        if codes != {"aggregator": 0, **dict.fromkeys(LEARNERS, 0)}:
            raise RuntimeError(f"federation {index}: exit codes {codes}\n"
                               + fed.compose("logs", "--no-color")[-4000:])
        aggregator = fed.events("aggregator")
        learners = {name: fed.events(name) for name in LEARNERS}
    finally:
        fed.down()
    round_events = [e for e in aggregator if e["type"] == "round"]
    if [e["round"] for e in round_events] != list(range(1, rounds + 1)):
        raise RuntimeError(f"federation {index}: round events {round_events}")
    training = []
    for event in round_events:
        per_learner = [sum(e["seconds"] for e in events if e["type"] in ("fit", "evaluate")
                           and e.get("round") == event["round"])
                       for events in learners.values()]
        training.append(max(per_learner))
    round_seconds = [float(e["seconds"]) for e in round_events]
    first_began = round_events[0]["_at"] - round_seconds[0]
    exited = epoch(containers["aggregator"]["State"]["FinishedAt"])
    started = max(epoch(c["State"]["StartedAt"]) for c in containers.values())
    [listening] = [e["_at"] for e in aggregator if e["type"] == "listening"]
    connected = max(e["_at"] for events in learners.values() for e in events
                    if e["type"] == "connected")
    ready = max(e["_at"] for events in learners.values() for e in events
                if e["type"] == "ready")
    [saved] = [float(e["seconds"]) for e in aggregator if e["type"] == "saved"]
    return Run(
        wall=exited - called, up_returned=returned - called, engine=started - called,
        aggregator_listening=listening - called, learners_ready=ready - called,
        learners_connected=connected - called, saving=saved,
        startup=first_began - called, rounds=sum(round_seconds),
        after=exited - round_events[-1]["_at"], round_seconds=round_seconds,
        training=training, overhead=[r - t for r, t in zip(round_seconds, training,
                                                           strict=True)])


def median(values: list[float]) -> float:
    return statistics.median(values)


def report(runs: list[Run], rounds: int, rows: int) -> None:
    def m(attribute: str) -> float:
        return median([getattr(run, attribute) for run in runs])

    wall, startup, in_rounds = m("wall"), m("startup"), m("rounds")
    overhead = [o for run in runs for o in run.overhead]
    training = [t for run in runs for t in run.training]
    seconds = [s for run in runs for s in run.round_seconds]
    print(f"federation: 1 aggregator + 2 learners, {rounds} rounds, {rows} rows of data per "
          f"learner; {len(runs)} runs, medians")
    print(f"  wall: docker compose up -> aggregator exited        {wall:7.2f} s   "
          f"(compose up returned at {m('up_returned'):.2f} s)")
    print(f"  start-up: compose up -> round 1 began                {startup:7.2f} s   "
          f"{startup / wall:5.1%} of the wall time, {startup / in_rounds:.2f}x the rounds")
    print(f"      -> last container started {m('engine'):.2f} s, aggregator listening "
          f"{m('aggregator_listening'):.2f} s, last learner's data loaded "
          f"{m('learners_ready'):.2f} s, last learner connected {m('learners_connected'):.2f} s")
    print(f"  the rounds (sum of the round events' seconds)        {in_rounds:7.2f} s   "
          f"{in_rounds / wall:5.1%} of the wall time")
    print(f"  last round -> aggregator exited                      {m('after'):7.2f} s   "
          f"(saving the model and result.json {m('saving'):.2f} s)")
    print(f"  per round: round {median(seconds):.3f} s, slowest learner's fit + evaluate "
          f"{median(training):.3f} s, overhead {median(overhead):.3f} s "
          f"({median([o / s for o, s in zip(overhead, seconds, strict=True)]):.1%} of the "
          f"round; min {min(overhead):.3f}, max {max(overhead):.3f})")
    for index, run in enumerate(runs, 1):
        print(f"  run {index}: wall {run.wall:.2f}, start-up {run.startup:.2f}, rounds "
              f"{run.rounds:.2f}, overhead per round "
              + ", ".join(f"{o:.3f}" for o in run.overhead))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1000, help="data rows per learner")
    parser.add_argument("--learner-image")
    parser.add_argument("--aggregator-image")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="flops-bench-federation-"))
    images: Images | None = None
    try:
        if args.learner_image and args.aggregator_image:
            images = Images(args.learner_image, args.aggregator_image, ())
        else:
            start = time.perf_counter()
            images = build_images(tmp / "build")
            print(f"images built by `reconciler apply --wait` in "
                  f"{time.perf_counter() - start:.1f} s: {images.learner}, {images.aggregator}")
        data = [tmp / "data-1", tmp / "data-2"]
        for seed, directory in enumerate(data, 1):
            write_mnist_parquet(directory / "mnist" / "part-0.parquet", rows=args.rows,
                                seed=seed)
        runs = [one_run(tmp, images, data, args.rounds, i) for i in range(args.runs)]
    finally:
        if images is not None and images.built:
            subprocess.run(["docker", "image", "rm", "--force", *images.built],
                           capture_output=True, check=False)
            docker("image", "prune", "--force")
        shutil.rmtree(tmp, ignore_errors=True)
    report(runs, args.rounds, args.rows)


if __name__ == "__main__":
    main()
