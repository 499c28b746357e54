"""The compose runtime backend: one-shot builder services on Docker hosts, via python-on-whales.

Decision: a builder is found again by its compose project name and labels, never by anything
kept only in memory; the rendered spec is kept in the state directory until the builder is
taken down, so ``docker compose down`` always has the file the builder was started from.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException

from reconciler.core.config import HostConfig
from reconciler.edges.docker_errors import last_line

COMPOSE_PROJECT_LABEL = "com.docker.compose.project"


class BackendError(RuntimeError):
    """A Docker host refused or could not be reached; ``str()`` is one line."""


@dataclass(frozen=True)
class Builder:
    name: str
    host: HostConfig
    container_id: str


@dataclass(frozen=True)
class Output:
    stream: str  # "stdout" or "stderr"
    line: str
    at: str  # when Docker received the line, ISO-8601 UTC with milliseconds


def _output(stream: str, raw: bytes) -> Output:
    """``2026-11-28T01:56:29.88234Z text`` (``docker logs --timestamps``) as an Output."""
    stamp, _, text = raw.decode("utf-8", "replace").partition(" ")
    seconds, _, fraction = stamp.rstrip("Z").partition(".")
    return Output(stream, text, f"{seconds}.{(fraction + '000')[:3]}Z")


class ComposeBackend:
    def __init__(self, hosts: list[HostConfig], spec_dir_for: Callable[[str], Path]) -> None:
        self.hosts = {host.name: host for host in hosts}
        self._spec_dir_for = spec_dir_for

    def host(self, name: str) -> HostConfig | None:
        return self.hosts.get(name)

    def deploy(self, host: HostConfig, name: str, spec_text: str) -> Builder:
        spec_dir = self._spec_dir_for(name)
        spec_dir.mkdir(parents=True, exist_ok=True)
        spec_file = spec_dir / "compose.yaml"
        spec_file.write_text(spec_text, encoding="utf-8")
        client = self._compose(host, name)
        try:
            client.compose.up(detach=True, quiet=True, pull="never")
        except DockerException as error:
            self.remove(host, name, stop_timeout=0)
            raise BackendError(
                f"docker compose up on {host.name} failed: {last_line(error)}"
            ) from None
        builder = self.find(host, name)
        if builder is None:
            raise BackendError(f"docker compose up on {host.name} started no container")
        return builder

    def has_buildx(self, host: HostConfig) -> bool:
        """Whether multi-platform builds are possible there (the buildx plugin answers)."""
        return bool(DockerClient(host=host.docker_host).buildx.is_installed())

    def find(self, host: HostConfig, name: str) -> Builder | None:
        try:
            containers = DockerClient(host=host.docker_host).container.list(
                all=True, filters={"label": f"{COMPOSE_PROJECT_LABEL}={name}"}
            )
        except DockerException as error:
            raise BackendError(
                f"Docker host {host.name} did not answer: {last_line(error)}"
            ) from None
        return Builder(name, host, containers[0].id) if containers else None

    def output(self, builder: Builder, *, follow: bool) -> Iterator[Output]:
        """The builder's output lines, from the start; with follow, until it exits."""
        docker = DockerClient(host=builder.host.docker_host)
        pending = {"stdout": b"", "stderr": b""}
        try:
            chunks: Iterator[tuple[str, bytes]] = docker.container.logs(  # type: ignore[assignment]
                builder.container_id, follow=follow, stream=True, timestamps=True
            )
            for stream, chunk in chunks:
                pending[stream] += chunk
                *complete, pending[stream] = pending[stream].split(b"\n")
                for raw in complete:
                    yield _output(stream, raw)
        except DockerException as error:
            raise BackendError(f"cannot read the builder's output: {last_line(error)}") from None
        for stream, rest in pending.items():
            if rest:
                yield _output(stream, rest)

    def exit_code(self, builder: Builder) -> int | None:
        """The exit status once the builder has stopped; None while it runs."""
        docker = DockerClient(host=builder.host.docker_host)
        try:
            state = docker.container.inspect(builder.container_id).state
        except DockerException as error:
            raise BackendError(f"cannot inspect the builder: {last_line(error)}") from None
        if state.running or state.status in ("created", "restarting"):
            return None
        return int(state.exit_code or 0)

    def wait(self, builder: Builder) -> int:
        docker = DockerClient(host=builder.host.docker_host)
        try:
            return int(docker.container.wait(builder.container_id))
        except DockerException as error:
            raise BackendError(f"cannot wait for the builder: {last_line(error)}") from None

    def remove(self, host: HostConfig, name: str, *, stop_timeout: int = 10) -> None:
        """Take the builder down: containers, networks and volumes; then forget its spec.
        ``stop_timeout``: seconds between SIGTERM and SIGKILL (0 kills at once)."""
        spec_dir = self._spec_dir_for(name)
        try:
            if (spec_dir / "compose.yaml").exists():
                self._compose(host, name).compose.down(
                    volumes=True, remove_orphans=True, timeout=stop_timeout, quiet=True
                )
            else:
                docker = DockerClient(host=host.docker_host)
                ids = docker.container.list(
                    all=True, filters={"label": f"{COMPOSE_PROJECT_LABEL}={name}"}
                )
                if ids:
                    docker.container.remove(ids, force=True, volumes=True)
        except DockerException as error:
            raise BackendError(f"cannot remove builder {name}: {last_line(error)}") from None
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(spec_dir)

    def _compose(self, host: HostConfig, name: str) -> DockerClient:
        spec_file = self._spec_dir_for(name) / "compose.yaml"
        return DockerClient(
            host=host.docker_host, compose_files=[spec_file], compose_project_name=name
        )
