"""The swarm runtime backend: one-shot builder stacks that the swarm places by node label.

Decision: the reconciler never chooses a node; it deploys through a manager with the
constraint ``node.labels.image-builder == true`` and reads everything back from the swarm:
the task's state and node, its output through ``docker service logs`` (polled, because a
followed service log only ends when the service is removed), and a task still pending after
``placement_timeout`` is the swarm saying that no image-builder node can take it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from python_on_whales import DockerClient
from python_on_whales.components.task.models import TaskInspectResult as Task
from python_on_whales.exceptions import DockerException
from python_on_whales.utils import run

from reconciler.core.config import Config, HostConfig
from reconciler.core.render import REQUEST_FILE
from reconciler.edges.backend import (
    PLACED,
    BackendError,
    Builder,
    Output,
    Tell,
    Unschedulable,
    Warn,
    split_lines,
    write_spec_files,
)
from reconciler.edges.builder_image import DIGEST_LABEL, BuilderImageError, ensure_builder_image
from reconciler.edges.clock import utc_iso, utc_now_iso
from reconciler.edges.docker_errors import last_line
from reconciler.edges.engine_platform import engine_platform
from reconciler.edges.model_carrier import push_model_carrier

STACK_LABEL = "com.docker.stack.namespace"
WAITING = {"new", "pending", "allocated"}  # not on a node yet
ENDED = {"complete", "failed", "rejected", "shutdown", "orphaned", "remove"}
NO_EXIT_STATUS = 125  # the task ended without a container exit status (e.g. rejected)
FIRST_POLL_SECONDS = 0.05
POLL_SECONDS = 0.5
SECRET_LIMIT = 500 * 1024  # what the swarm accepts as one secret


class SwarmBackend:
    def __init__(self, config: Config, spec_dir_for: Callable[[str], Path],
                 template_dirs: list[Path]) -> None:
        self.config = config
        self.manager = config.swarm_manager
        self._spec_dir_for = spec_dir_for
        self._template_dirs = template_dirs
        self._image: str | None = None
        self._hostnames: dict[str, str] = {}

    def host(self, name: str) -> HostConfig | None:
        return self.manager if name == self.manager.name else None

    def pick_host(self, warn: Warn) -> HostConfig:
        return self.manager

    def builder_image(self, host: HostConfig, tell: Tell) -> str:
        """Built on the manager, then pushed to the registry, where every node pulls it."""
        if self._image is None:
            local = self.config.builder.image
            docker = DockerClient(host=host.docker_host)
            try:
                ensure_builder_image(host.docker_host, local, self.config.builder.base_image,
                                     self._template_dirs, force=False)
                inspected = docker.image.inspect(local)
                stamp = (inspected.config.labels or {}).get(DIGEST_LABEL) or inspected.id[7:23]
                shared = f"{self.config.image_prefix}/flops-reconciler/builder:{stamp}"
                docker.image.tag(local, shared)
                docker.image.push(shared, quiet=True)
            except BuilderImageError as error:
                raise BackendError(str(error)) from None
            except DockerException as error:
                raise BackendError(f"cannot push the builder image to {self.config.registry}: "
                                   f"{last_line(error)}") from None
            self._image = shared
        return self._image

    def platform(self, host: HostConfig) -> str:
        """The manager's platform: the swarm's image-builder nodes are taken to share it (a
        builder on a node of another platform finds that out before building)."""
        return engine_platform(host)

    def ship_model(self, host: HostConfig, model_dir: Path, carrier: str) -> str:
        """Nothing can be copied into a service's task: the model goes to the registry as a
        carrier image, which the builder pulls on whatever node the swarm places it."""
        push_model_carrier(self.config.registry, carrier, model_dir, self.platform(host),
                           timeout=self.config.registry_timeout)
        return carrier

    def deploy(self, host: HostConfig, name: str, spec_text: str, request_text: str,
               copy_in: Sequence[tuple[Path, str]] = ()) -> Builder:
        if copy_in:
            raise BackendError("nothing can be copied into a swarm service's task; a trained "
                               "model reaches a swarm builder through ship_model")
        if len(request_text.encode()) > SECRET_LIMIT:
            raise BackendError(
                f"the build request is {len(request_text.encode()) // 1024} KiB, more than a "
                f"swarm secret holds ({SECRET_LIMIT // 1024} KiB); it is mostly [build] "
                "ca_bundle: give the builders a bundle of only the site's own CA certificates")
        spec_file = write_spec_files(self._spec_dir_for(name), "stack.yaml", spec_text,
                                     request_text)
        try:
            # python-on-whales' stack.deploy lets the CLI print to our stdout (and so into
            # `apply --json`); its runner with the same command captures it instead.
            docker = DockerClient(host=host.docker_host)
            run([*docker.client_config.docker_cmd, "stack", "deploy", "--compose-file",
                 spec_file, "--resolve-image", "never", name])
        except DockerException as error:
            self.remove(host, name)
            raise BackendError(f"docker stack deploy through {host.name} failed: "
                               f"{last_line(error)}") from None
        finally:  # the swarm holds the request as the stack's secret now
            (spec_file.parent / REQUEST_FILE).unlink(missing_ok=True)
        builder = self.find(host, name)
        if builder is None:
            raise BackendError(f"docker stack deploy through {host.name} created no service")
        return builder

    def find(self, host: HostConfig, name: str) -> Builder | None:
        try:
            services = DockerClient(host=host.docker_host).service.list(
                filters={"label": f"{STACK_LABEL}={name}"})
        except DockerException as error:
            raise BackendError(f"swarm manager {host.name} did not answer: "
                               f"{last_line(error)}") from None
        return Builder(name, host, services[0].id) if services else None

    def output(self, builder: Builder, *, follow: bool) -> Iterator[Output]:
        """Waits for placement (at most placement_timeout), then yields the task's output
        as it grows until the task has ended; first an Output on the ``PLACED`` stream."""
        seen = {"stdout": 0, "stderr": 0}
        placed = False
        pauses = poll_pauses()
        while True:
            task = self._task(builder)
            state = task_state(task)
            if not placed and task is not None and task.node_id and state not in WAITING:
                placed = True
                yield Output(PLACED, f"{task.node_id} {self._hostname(builder, task.node_id)}",
                             utc_now_iso())
            ended = state in ENDED
            if state not in WAITING:
                lines = list(self._logs(builder))
                for stream in seen:
                    new = [line for line in lines if line.stream == stream][seen[stream]:]
                    seen[stream] += len(new)
                    yield from new
            if ended:
                status = task.status if task is not None else None
                if state != "complete" and status is not None and status.err:
                    yield Output("stderr", f"swarm task {state}: {status.err}",
                                 utc_iso(status.timestamp) if status.timestamp else utc_now_iso())
                return
            if not follow:
                return
            time.sleep(next(pauses))

    def exit_code(self, builder: Builder) -> int | None:
        task = self._task(builder)
        if task is None or task_state(task) not in ENDED:
            return None
        return task_ending(task)[0]

    def wait(self, builder: Builder) -> int:
        pauses = poll_pauses()
        while (code := self.exit_code(builder)) is None:
            time.sleep(next(pauses))
        return code

    def remove(self, host: HostConfig, name: str, *, stop_timeout: int = 10) -> None:
        """``docker stack rm``; the swarm stops the task in the background (its grace
        period is in the spec), so ``stop_timeout`` has nothing left to decide here."""
        try:
            if self.find(host, name) is not None:
                DockerClient(host=host.docker_host).stack.remove(name)
        except DockerException as error:
            raise BackendError(f"cannot remove builder stack {name}: {last_line(error)}") \
                from None
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self._spec_dir_for(name))

    # -- reading the swarm ----------------------------------------------------------------

    def _task(self, builder: Builder) -> Task | None:
        """The service's task (None before the swarm has made it); raises Unschedulable
        when it has waited for a node longer than placement_timeout."""
        docker = DockerClient(host=builder.host.docker_host)
        try:
            task = latest_task(docker, builder.ref)
        except DockerException as error:
            raise BackendError(f"cannot read the builder's task: {last_line(error)}") from None
        if unplaced(task, self.config.placement_timeout):
            raise Unschedulable(
                f"no image-builder node: the swarm placed builder {builder.name} on no "
                f"node within placement_timeout ({self.config.placement_timeout:g}s): "
                f"{task_reason(task)}; label a node that may build images "
                "with `docker node update --label-add image-builder=true NODE`")
        return task

    def _logs(self, builder: Builder) -> Iterator[Output]:
        docker = DockerClient(host=builder.host.docker_host)
        try:
            chunks: Iterator[tuple[str, bytes]] = docker.service.logs(
                builder.ref, timestamps=True, raw=True, stream=True)
            yield from split_lines(chunks)
        except DockerException as error:
            raise BackendError(f"cannot read the builder's output: {last_line(error)}") from None

    def _hostname(self, builder: Builder, node_id: str) -> str:
        if node_id not in self._hostnames:
            try:
                node = DockerClient(host=builder.host.docker_host).node.inspect(node_id)
                self._hostnames[node_id] = str(node.description.hostname)
            except (DockerException, AttributeError):
                return "?"
        return self._hostnames[node_id]


def read_tasks(docker: DockerClient, service: str) -> list[Task]:
    """The service's tasks, each inspected once and kept as read. (python-on-whales' Task
    inspects again on every attribute read after 10 ms: many ``docker`` calls per poll, and
    a DockerException, not an answer, once the swarm has dropped the task.) A task dropped
    between the listing and its inspection is left out."""
    command = docker.client_config.docker_cmd
    found = []
    for task_id in str(run([*command, "service", "ps", "--quiet", "--no-trunc",
                            service])).split():
        try:
            found += [Task(**item) for item in json.loads(
                str(run([*command, "inspect", "--type", "task", task_id])) or "[]")]
        except DockerException:
            continue
    return found


def latest_task(docker: DockerClient, service: str) -> Task | None:
    """The service's newest task (the one that counts after a restart), None before the
    swarm has made one."""
    return max(read_tasks(docker, service),
               key=lambda t: t.created_at or datetime.min.replace(tzinfo=UTC), default=None)


def unplaced(task: Task | None, placement_timeout: float) -> bool:
    """Still waiting for a node after ``placement_timeout`` seconds."""
    if task is None or task_state(task) not in WAITING or task.created_at is None:
        return False
    return (datetime.now(UTC) - task.created_at).total_seconds() > placement_timeout


def task_ending(task: Task | None) -> tuple[int, str | None]:
    """An ended task's exit status, and why when its program did not end it (no container
    exit status: rejected, orphaned on a lost node, shut down)."""
    status = task.status if task is not None else None
    container = status.container_status if status is not None else None
    if container is not None and container.exit_code is not None:
        return int(container.exit_code), None
    if task_state(task) == "complete":
        return 0, None
    return NO_EXIT_STATUS, f"the swarm's task ended {task_state(task)}: {task_reason(task)}"


def task_reason(task: Task | None) -> str:
    """What the swarm says of a task that did not run (or did not end) as it should."""
    status = task.status if task is not None else None
    reason = (status.err or status.message) if status is not None else None
    return reason or "no reason given"


def task_state(task: Task | None) -> str:
    status = getattr(task, "status", None)
    return str(getattr(status, "state", None) or "new")


def poll_pauses() -> Iterator[float]:
    """The waits between polls: fast at first (a short task ends within a few polls), then
    POLL_SECONDS, so a long build costs a few `docker` calls per second, not dozens."""
    pause = FIRST_POLL_SECONDS
    while True:
        yield pause
        pause = min(POLL_SECONDS, pause * 1.5)
