"""Training runs on the compose inventory (stages 4-5): the actors' compose projects on the
learner hosts' engines, found again by label, read, copied from and removed. The contract both
backends keep (compose here, swarm in ``swarm_training.py``) is ``TrainingBackend``.

Decision: everything about a run is found from Docker by its name (the label ``flops.run`` on
every container and network of it), never kept only in memory, so a restarted reconciler
follows the run it started and removes every piece of it, on every engine. The aggregator's
output is copied out of its container after it exits (`docker cp`), which works for an engine
on another machine too; nothing of the reconciler's disk is mounted into an actor but a
learner host's own data directory, read-only.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException

from reconciler.core.config import Config, HostConfig
from reconciler.core.training import NO_LEARNER_HOST, Placement, learner_service
from reconciler.edges.backend import BackendError, Output, split_lines
from reconciler.edges.docker_errors import last_line

RUN_LABEL = "flops.run"
ROLE_LABEL = "flops.role"
LIST_TAGS = ("import os; d = '/flops/data'; "
              "print(*sorted(t for t in os.listdir(d) if os.path.isdir(os.path.join(d, t))), "
              "sep='\\n')")


@dataclass(frozen=True)
class Actor:
    """One actor container of a run, as its engine reports it now."""

    role: str  # aggregator | learner
    service: str
    host: HostConfig  # a host of the inventory on the actor's engine
    ref: str  # the container id
    running: bool
    exit_code: int | None  # once it has ended
    # Ended without running its program, for a reason that is not the project's (a swarm
    # task rejected, orphaned by a lost node, or placed on no node): an infrastructure failure
    infrastructure: str | None = None


class TrainingBackend(Protocol):
    """What the trainer needs of the engines its runs' actors run on."""

    no_learner_host: str  # the placement reason when there is no learner host at all

    def learner_hosts(self) -> list[HostConfig]: ...

    def place_aggregator(self, placement: Placement) -> Placement: ...

    def swarm_nodes(self) -> dict[str, str] | None: ...

    def data_tags(self, host: HostConfig, image: str) -> frozenset[str]: ...

    def deploy(self, host: HostConfig, name: str, spec_text: str) -> None: ...

    def published_port(self, actor: Actor) -> int: ...

    def actors(self, run: str) -> list[Actor]: ...

    def output(self, actor: Actor, since: datetime | None = None) -> list[Output]: ...

    def copy_out(self, actor: Actor, source: str, destination: Path) -> None: ...

    def remove(self, run: str) -> None: ...


class ComposeTraining:
    """The compose inventory's side of training runs."""

    no_learner_host = NO_LEARNER_HOST

    def __init__(self, config: Config, spec_dir_for: Callable[[str], Path]) -> None:
        self.config = config
        self._spec_dir_for = spec_dir_for

    def learner_hosts(self) -> list[HostConfig]:
        """The [[hosts]] entries with the FLOps-learner addon and a data_dir."""
        return self.config.learner_hosts()

    def place_aggregator(self, placement: Placement) -> Placement:
        """The aggregator stays on the first learner host (see core/training.py)."""
        return placement

    def swarm_nodes(self) -> dict[str, str] | None:
        """None: hosts are engines here, not swarm nodes."""
        return None

    def engines(self) -> list[HostConfig]:
        """One inventory host per engine that may hold actors (the learner hosts')."""
        seen: dict[str, HostConfig] = {}
        for host in self.config.learner_hosts():
            seen.setdefault(host.docker_host, host)
        return list(seen.values())

    def data_tags(self, host: HostConfig, image: str) -> frozenset[str]:
        """The tag folders in the host's data directory, as its learners will see them (a
        short container of the learner image with the directory mounted read-only)."""
        assert host.data_dir is not None
        try:
            out = DockerClient(host=host.docker_host).run(
                image, ["-c", LIST_TAGS], entrypoint="python3", remove=True,
                networks=["none"], labels={ROLE_LABEL: "data-probe"},
                volumes=[(host.data_dir, "/flops/data", "ro")])
        except DockerException as error:
            raise BackendError(f"cannot read the data directory {host.data_dir} of "
                               f"{host.name}: {last_line(error)}") from None
        return frozenset(line.strip() for line in str(out or "").splitlines() if line.strip())

    def deploy(self, host: HostConfig, name: str, spec_text: str) -> None:
        spec_dir = self._spec_dir_for(name)
        spec_dir.mkdir(parents=True, exist_ok=True)
        spec_file = spec_dir / "compose.yaml"
        spec_file.write_text(spec_text, encoding="utf-8")
        client = DockerClient(host=host.docker_host, compose_files=[spec_file],
                              compose_project_name=name)
        try:  # a learner host on another engine pulls the images from the registry
            client.compose.up(detach=True, quiet=True, pull="missing")
        except DockerException as error:
            raise BackendError(f"docker compose up of {name} on {host.name} failed: "
                               f"{last_line(error)}") from None

    def published_port(self, actor: Actor) -> int:
        """The host port the aggregator's 8080 is published on."""
        try:
            ports = DockerClient(host=actor.host.docker_host).container.inspect(
                actor.ref).network_settings.ports or {}
        except DockerException as error:
            raise BackendError(f"cannot inspect the aggregator: {last_line(error)}") from None
        bindings = ports.get("8080/tcp") or []
        if not bindings or not bindings[0].get("HostPort"):
            raise BackendError("the aggregator's port 8080 is not published")
        return int(str(bindings[0]["HostPort"]))

    def actors(self, run: str) -> list[Actor]:
        """Every actor container of the run on every engine (BackendError when an engine
        does not answer)."""
        found: list[Actor] = []
        for host in self.engines():
            try:
                containers = DockerClient(host=host.docker_host).container.list(
                    all=True, filters={"label": f"{RUN_LABEL}={run}"})
            except DockerException as error:
                raise BackendError(f"Docker host {host.name} did not answer: "
                                   f"{last_line(error)}") from None
            by_service = {learner_service(h.name): h for h in self.config.learner_hosts()
                          if h.docker_host == host.docker_host}
            for container in containers:
                labels = container.config.labels or {}
                state = container.state
                ended = not state.running and state.status not in ("created", "restarting")
                service = labels.get("com.docker.compose.service", container.name)
                found.append(Actor(
                    role=labels.get(ROLE_LABEL, "?"), service=service,
                    host=by_service.get(service, host), ref=container.id,
                    running=bool(state.running),
                    exit_code=int(state.exit_code or 0) if ended else None))
        return found

    def output(self, actor: Actor, since: datetime | None = None) -> list[Output]:
        """The actor's output lines (timestamped), all of them or from ``since`` on."""
        docker = DockerClient(host=actor.host.docker_host)
        try:
            chunks = docker.container.logs(actor.ref, stream=True, timestamps=True,
                                           since=since)
            return list(split_lines(chunks))  # type: ignore[arg-type]
        except DockerException as error:
            raise BackendError(f"cannot read {actor.service}'s output: "
                               f"{last_line(error)}") from None

    def copy_out(self, actor: Actor, source: str, destination: Path) -> None:
        """Copy ``source`` (a directory in the actor's container) to ``destination``."""
        destination.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=destination.parent) as tmp:
            target = Path(tmp) / "copy"
            try:
                DockerClient(host=actor.host.docker_host).container.copy(
                    (actor.ref, source), target)
            except DockerException as error:
                raise BackendError(f"cannot copy {source} out of {actor.service}: "
                                   f"{last_line(error)}") from None
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(destination)
            target.rename(destination)

    def remove(self, run: str) -> None:
        """Every container and network of the run, on every engine; its spec files."""
        problems = []
        for host in self.engines():
            docker = DockerClient(host=host.docker_host)
            try:
                ids = docker.container.list(all=True, filters={"label": f"{RUN_LABEL}={run}"})
                if ids:
                    docker.container.remove(ids, force=True, volumes=True)
                for network in docker.network.list(filters={"label": f"{RUN_LABEL}={run}"}):
                    docker.network.remove(network)
            except DockerException as error:
                problems.append(f"{host.name}: {last_line(error)}")
        for spec_dir in self._spec_dir_for(run).parent.glob(f"{run}-*"):
            shutil.rmtree(spec_dir, ignore_errors=True)
        if problems:
            raise BackendError(f"cannot remove training run {run} everywhere: "
                               + "; ".join(problems))
