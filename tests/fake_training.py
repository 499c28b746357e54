"""A training backend for unit tests of the trainer: runs are "deployed" from their rendered
compose specs (parsed, so the services the trainer asked for are the actors that exist), and
the test says what the aggregator prints and how each actor ends.

It keeps the real backend's contract (``edges/training_backend.py``): actors are found by the
run's name, output lines carry Docker-style timestamps, a copy out of the aggregator writes
`result.json` and an MLflow-looking `model/`, and removing a run removes all of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from reconciler.core.config import HostConfig
from reconciler.core.times import parse_utc
from reconciler.core.training import NO_LEARNER_HOST, NO_LEARNER_NODE, Placement
from reconciler.edges.backend import BackendError, Output
from reconciler.edges.training_backend import Actor


@dataclass
class FakeActor:
    actor: Actor
    run: str
    lines: list[Output] = field(default_factory=list)


class FakeTraining:
    """``hosts``: the learner hosts (None: the configuration's, as the compose backend);
    ``nodes`` (host name -> node id): act as a swarm, whose aggregator goes on ``manager``."""

    def __init__(self, tags: dict[str, set[str]], *, hosts: list[HostConfig] | None = None,
                 nodes: dict[str, str] | None = None, manager: str = "manager") -> None:
        self.tags = tags  # learner host -> the tag folders of its data directory
        self.hosts = hosts
        self.nodes = nodes
        self.manager = manager
        self.no_learner_host = NO_LEARNER_NODE if nodes is not None else NO_LEARNER_HOST
        self.config_hosts: list[HostConfig] = []  # set by the bed: the configuration's
        self.deployed: list[tuple[str, str, dict[str, Any]]] = []  # (host, name, spec)
        self.removed: list[str] = []
        self.actors_of: dict[str, list[FakeActor]] = {}
        self.down = False  # every engine call fails (an outage)
        self._tick = 0

    # -- the contract --------------------------------------------------------------------

    def learner_hosts(self) -> list[HostConfig]:
        self._check()
        if self.hosts is not None:
            return self.hosts
        return [h for h in self.config_hosts if h.runs_learners]

    def place_aggregator(self, placement: Placement) -> Placement:
        return replace(placement, aggregator=self.manager) if self.nodes is not None \
            else placement

    def swarm_nodes(self) -> dict[str, str] | None:
        return self.nodes

    def data_tags(self, host: HostConfig, image: str) -> frozenset[str]:
        self._check()
        return frozenset(self.tags.get(host.name, set()))

    def deploy(self, host: HostConfig, name: str, spec_text: str) -> None:
        self._check()
        spec = yaml.safe_load(spec_text)
        self.deployed.append((host.name, name, spec))
        for service, body in spec["services"].items():
            labels = body["labels"]
            actor = Actor(role=labels["flops.role"], service=service, host=host,
                          ref=f"{name}-{service}", running=True, exit_code=None)
            self.actors_of.setdefault(labels["flops.run"], []).append(
                FakeActor(actor, labels["flops.run"]))

    def published_port(self, actor: Actor) -> int:
        return 32768

    def actors(self, run: str) -> list[Actor]:
        self._check()
        return [fake.actor for fake in self.actors_of.get(run, [])]

    def output(self, actor: Actor, since: datetime | None = None) -> list[Output]:
        self._check()
        lines = self._fake(actor).lines
        return [line for line in lines if since is None or parse_utc(line.at) >= since]

    def copy_out(self, actor: Actor, source: str, destination: Path) -> None:
        self._check()
        events = [json.loads(o.line) for o in self._fake(actor).lines]
        rounds = [{k: v for k, v in e.items() if k != "type"} for e in events
                  if e["type"] == "round"]
        best = next((e["best_round"] for e in events if e["type"] == "finished"), None)
        (destination / "model").mkdir(parents=True)
        (destination / "model" / "MLmodel").write_text("flavors: {}\n")
        (destination / "result.json").write_text(json.dumps(
            {"rounds": rounds, "best_round": best, "flavor": "sklearn", "model": "model"}))

    def remove(self, run: str) -> None:
        self._check()
        self.removed.append(run)
        self.actors_of.pop(run, None)

    # -- what the test says happens ------------------------------------------------------

    def only_run(self) -> str:
        [run] = self.actors_of
        return run

    def say(self, run: str, *events: dict[str, Any], role: str = "aggregator",
            service: str | None = None) -> None:
        """The actor(s) of ``role`` (or the one ``service``) print these events (one line
        each, later timestamps)."""
        for fake in self.actors_of[run]:
            if fake.actor.role == role and service in (None, fake.actor.service):
                for event in events:
                    self._tick += 1
                    at = f"2026-11-30T12:00:{self._tick % 60:02d}.{self._tick:03d}Z"
                    fake.lines.append(Output("stdout", json.dumps(event), at))

    def end(self, run: str, code: int = 0, *, role: str = "aggregator",
            service: str | None = None, infrastructure: str | None = None) -> None:
        """The actors of ``role`` (or the one ``service``) end with ``code`` (and, when
        their program did not end them, the ``infrastructure`` reason)."""
        for fake in self.actors_of[run]:
            if fake.actor.role == role and service in (None, fake.actor.service):
                fake.actor = replace(fake.actor, running=False, exit_code=code,
                                     infrastructure=infrastructure)

    def _fake(self, actor: Actor) -> FakeActor:
        return next(f for fakes in self.actors_of.values() for f in fakes
                    if f.actor.ref == actor.ref)

    def _check(self) -> None:
        if self.down:
            raise BackendError("Docker host site-a did not answer: connection refused")


def round_event(number: int, accuracy: float = 0.5, loss: float = 1.0) -> dict[str, Any]:
    return {"type": "round", "round": number, "loss": loss, "accuracy": accuracy,
            "learners": 2, "seconds": 0.1}


class FakeServing:
    """The model server of ``edges/serving.py``: one per project, on a host, answering at once
    (the real one waits for ``/health``)."""

    def __init__(self) -> None:
        self.serving: dict[str, tuple[str, str]] = {}  # project -> (host, image)
        self.served: list[tuple[str, str, str]] = []  # every serve: (host, project, image)
        self.down = False

    def serve(self, project: str, image: str, aggregator: str) -> str:
        if self.down:
            raise BackendError(f"Docker host {aggregator} did not answer: connection refused")
        self.served.append((aggregator, project, image))
        self.serving[project] = (aggregator, image)
        return f"http://{aggregator}:32771"

    def remove(self, project: str, aggregator: str) -> None:
        if self.down:
            raise BackendError(f"Docker host {aggregator} did not answer: connection refused")
        self.serving.pop(project, None)

    def healthy(self, url: str) -> bool:
        return any(url == f"http://{host}:32771" for host, _ in self.serving.values())
