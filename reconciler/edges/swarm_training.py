"""Training runs on a swarm (stages 4-5): one stack per run, deployed through the manager the
reconciler talks to, found again by label, read, copied from and removed.

Decision: the swarm, not the reconciler, is the inventory. A node may run learners when it is
labelled ``flops-learner=true`` and names its data directory with the label
``flops-data-dir=PATH`` (both set where nodes are managed: ``docker node update``); the data
tags a node holds are read by a one-shot service constrained to that node. Each learner
service is constrained to its node (and to the label, so a node that loses it takes no
learner); the aggregator is constrained to the manager's own node, so its output is copied
out of its exited container through the engine the reconciler already talks to.
"""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from python_on_whales import DockerClient
from python_on_whales.components.task.models import TaskInspectResult as Task
from python_on_whales.exceptions import DockerException
from python_on_whales.utils import run

from reconciler.core.config import LEARNER_ADDON, Config, HostConfig
from reconciler.core.training import (
    DATA_DIR_NODE_LABEL,
    LEARNER_NODE_LABEL,
    NO_LEARNER_NODE,
    Placement,
    stack_name,
)
from reconciler.edges.backend import BackendError, Output, split_lines
from reconciler.edges.docker_errors import last_line
from reconciler.edges.swarm_backend import (
    ENDED,
    NO_EXIT_STATUS,
    latest_task,
    poll_pauses,
    task_ending,
    task_reason,
    task_state,
    unplaced,
)
from reconciler.edges.training_backend import LIST_TAGS, ROLE_LABEL, RUN_LABEL, Actor

STACK_LABEL = "com.docker.stack.namespace"
REMOVE_WITHIN = 60.0  # seconds for the swarm to let go of a run's network after its services


class SwarmTraining:
    """A swarm's side of training runs (``backend = "swarm"``)."""

    no_learner_host = NO_LEARNER_NODE

    def __init__(self, config: Config, spec_dir_for: Callable[[str], Path]) -> None:
        self.config = config
        self.manager = config.swarm_manager
        self._spec_dir_for = spec_dir_for
        self._names: dict[str, str] = {}  # node id -> the host name the reconciler shows

    def _docker(self) -> DockerClient:
        return DockerClient(host=self.manager.docker_host)

    # -- the nodes ------------------------------------------------------------------------

    def _read_nodes(self) -> list[tuple[str, str, dict[str, str], bool]]:
        """(id, name, labels, ready and active) of every node; a name is the node's hostname
        (with its id's start when two nodes share one)."""
        try:
            nodes = self._docker().node.list()
        except DockerException as error:
            raise BackendError(f"swarm manager {self.manager.name} did not answer: "
                               f"{last_line(error)}") from None
        hostnames = [str(node.description.hostname) if node.description else node.id
                     for node in nodes]
        found = []
        for node, hostname in zip(nodes, hostnames, strict=True):
            name = hostname if hostnames.count(hostname) == 1 else f"{hostname}-{node.id[:8]}"
            self._names[node.id] = name
            usable = (node.status is not None and node.status.state == "ready"
                      and node.spec is not None and node.spec.availability == "active")
            labels = dict(node.spec.labels or {}) if node.spec is not None else {}
            found.append((node.id, name, labels, usable))
        return found

    def learner_hosts(self) -> list[HostConfig]:
        """The ready nodes labelled flops-learner=true that name their data directory."""
        return [HostConfig(name=name, docker_host=self.manager.docker_host,
                           addons=(LEARNER_ADDON,), data_dir=labels[DATA_DIR_NODE_LABEL])
                for _id, name, labels, usable in self._read_nodes()
                if usable and labels.get(LEARNER_NODE_LABEL) == "true"
                and labels.get(DATA_DIR_NODE_LABEL)]

    def swarm_nodes(self) -> dict[str, str]:
        """Host name -> node id, for every node of the swarm."""
        return {name: node_id for node_id, name, _labels, _usable in self._read_nodes()}

    def place_aggregator(self, placement: Placement) -> Placement:
        """The aggregator goes on the manager's own node."""
        try:
            swarm = self._docker().info().swarm
        except DockerException as error:
            raise BackendError(f"swarm manager {self.manager.name} did not answer: "
                               f"{last_line(error)}") from None
        node_id = str(swarm.node_id) if swarm is not None else ""
        if node_id not in self._names:
            self._read_nodes()
        if node_id not in self._names:
            raise BackendError(f"{self.manager.name} is not a node of a swarm (backend = "
                               "\"swarm\" talks to a manager)")
        return replace(placement, aggregator=self._names[node_id])

    # -- the contract ---------------------------------------------------------------------

    def data_tags(self, host: HostConfig, image: str) -> frozenset[str]:
        """The tag folders in the node's data directory, as its learners will see them: a
        one-shot service of the learner image constrained to the node."""
        assert host.data_dir is not None
        node_id = {name: node for node, name in self._names.items()}.get(host.name)
        if node_id is None:
            raise BackendError(f"swarm node {host.name} is gone")
        name = f"flops-probe-{uuid.uuid4().hex[:12]}"
        docker = self._docker()
        mount = _csv(["type=bind", f"source={host.data_dir}", "target=/flops/data",
                      "readonly"])
        try:
            run([*docker.client_config.docker_cmd, "service", "create", "--detach", "--quiet",
                 "--name", name, "--no-resolve-image", "--restart-condition", "none",
                 "--constraint", f"node.id=={node_id}", "--label", f"{ROLE_LABEL}=data-probe",
                 "--container-label", f"{ROLE_LABEL}=data-probe", "--mount", mount,
                 "--entrypoint", "python3", image, "-c", LIST_TAGS])
            task = self._wait_ended(name, f"the data probe on node {host.name}")
            out = str(docker.service.logs(name, raw=True) or "")
        except DockerException as error:
            raise BackendError(f"cannot read the data directory {host.data_dir} of node "
                               f"{host.name}: {last_line(error)}") from None
        finally:
            with contextlib.suppress(DockerException):
                docker.service.remove(name)
        if task_state(task) != "complete":
            reason = task.status.err if task is not None and task.status is not None else None
            raise BackendError(f"cannot read the data directory {host.data_dir} of node "
                               f"{host.name}: {reason or out.strip()[-300:] or task_state(task)}")
        return frozenset(line.strip() for line in out.splitlines() if line.strip())

    def deploy(self, host: HostConfig, name: str, spec_text: str) -> None:
        """``docker stack deploy`` of the run's stack through the manager."""
        spec_dir = self._spec_dir_for(name)
        spec_dir.mkdir(parents=True, exist_ok=True)
        spec_file = spec_dir / "stack.yaml"
        spec_file.write_text(spec_text, encoding="utf-8")
        docker = self._docker()
        try:  # (run, not stack.deploy: the CLI's own output must not reach our stdout)
            run([*docker.client_config.docker_cmd, "stack", "deploy", "--compose-file",
                 str(spec_file), "--resolve-image", "never", name])
        except DockerException as error:
            raise BackendError(f"docker stack deploy of {name} through {self.manager.name} "
                               f"failed: {last_line(error)}") from None

    def published_port(self, actor: Actor) -> int:
        raise BackendError("a run on a swarm publishes no port (its overlay network joins "
                           "the learners to the aggregator)")

    def actors(self, run: str) -> list[Actor]:
        """Every actor of the run: one per service (its latest task), on any node."""
        docker = self._docker()
        try:
            services = docker.service.list(filters={"label": f"{RUN_LABEL}={run}"})
            found = []
            for service in services:
                spec = service.spec
                labels = dict(spec.labels or {}) if spec is not None else {}
                full = str(spec.name) if spec is not None else service.id
                stack = labels.get(STACK_LABEL, "")
                task = latest_task(docker, service.id)
                state = task_state(task)
                exit_code, problem = None, None
                if state in ENDED:
                    exit_code, problem = task_ending(task)
                elif unplaced(task, self.config.placement_timeout):
                    exit_code = NO_EXIT_STATUS
                    problem = (f"the swarm placed it on no node within placement_timeout "
                               f"({self.config.placement_timeout:g}s): {task_reason(task)}")
                node = task.node_id if task is not None else None
                found.append(Actor(
                    role=labels.get(ROLE_LABEL, "?"),
                    service=full.removeprefix(f"{stack}_") if stack else full,
                    host=HostConfig(name=self._name(node), docker_host=self.manager.docker_host),
                    ref=service.id, running=state == "running", exit_code=exit_code,
                    infrastructure=problem))
            return found
        except DockerException as error:
            raise BackendError(f"swarm manager {self.manager.name} did not answer: "
                               f"{last_line(error)}") from None

    def output(self, actor: Actor, since: datetime | None = None) -> list[Output]:
        """The actor's output (``docker service logs``: from whichever node ran it)."""
        try:
            chunks = self._docker().service.logs(actor.ref, timestamps=True, raw=True,
                                                 stream=True, since=since)
            return list(split_lines(chunks))
        except DockerException as error:
            raise BackendError(f"cannot read {actor.service}'s output: "
                               f"{last_line(error)}") from None

    def copy_out(self, actor: Actor, source: str, destination: Path) -> None:
        """Copy ``source`` out of the actor's exited task container: the aggregator's, on
        the manager's own node (its placement constraint), so the manager's engine has it."""
        docker = self._docker()
        try:
            task = latest_task(docker, actor.ref)
        except DockerException as error:
            raise BackendError(f"cannot read {actor.service}'s task: {last_line(error)}") \
                from None
        status = task.status if task is not None else None
        container = status.container_status if status is not None else None
        if container is None or not container.container_id:
            raise BackendError(f"{actor.service} has no container to copy {source} from")
        destination.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=destination.parent) as tmp:
            target = Path(tmp) / "copy"
            try:
                docker.container.copy((container.container_id, source), target)
            except DockerException as error:
                raise BackendError(f"cannot copy {source} out of {actor.service} (its "
                                   f"container is on the manager's node): "
                                   f"{last_line(error)}") from None
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(destination)
            target.rename(destination)

    def remove(self, run: str) -> None:
        """The run's services, then its network once the swarm has let go of it (its tasks
        shut down on their nodes first); its spec files."""
        docker = self._docker()
        problems = []
        try:
            services = docker.service.list(filters={"label": f"{RUN_LABEL}={run}"})
            if services:
                docker.service.remove([s.id for s in services])
            networks = docker.network.list(filters={"label": f"{RUN_LABEL}={run}"})
        except DockerException as error:
            raise BackendError(f"cannot remove training run {run}: {last_line(error)}") \
                from None
        deadline = time.monotonic() + REMOVE_WITHIN
        pauses = poll_pauses()
        for network in networks:
            while True:
                try:
                    docker.network.remove(network)
                    break
                except DockerException as error:
                    if "not found" in str(error).lower():
                        break
                    if time.monotonic() > deadline:
                        problems.append(f"network {network.name}: {last_line(error)}")
                        break
                    time.sleep(next(pauses))  # its tasks are still shutting down
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self._spec_dir_for(stack_name(run)))
        if problems:
            raise BackendError(f"cannot remove training run {run}: " + "; ".join(problems))

    # -- reading the swarm ----------------------------------------------------------------

    def _wait_ended(self, service: str, what: str) -> Task | None:
        """The service's task once it has ended; BackendError when the swarm has placed it
        on no node within placement_timeout."""
        docker = self._docker()
        pauses = poll_pauses()
        while True:
            task = latest_task(docker, service)
            if task_state(task) in ENDED:
                return task
            if unplaced(task, self.config.placement_timeout):
                raise BackendError(f"{what} was placed on no node within placement_timeout "
                                   f"({self.config.placement_timeout:g}s): {task_reason(task)}")
            time.sleep(next(pauses))

    def _name(self, node_id: str | None) -> str:
        if not node_id:
            return "(no node)"
        if node_id not in self._names:
            with contextlib.suppress(BackendError):
                self._read_nodes()
        return self._names.get(node_id, node_id)


def _csv(fields: list[str]) -> str:
    """One ``--mount`` value: Docker reads it as a CSV record (a path may hold a comma)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(fields)
    return out.getvalue()
