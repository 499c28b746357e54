"""The compose runtime backend: one-shot builder services on Docker hosts, via python-on-whales.

Decision: a builder goes to the reachable image-builder host with the fewest running builders,
counted from Docker by label at that moment (never from memory, so builders of another
reconciler or a restart count too); the rendered spec is kept in the state directory until
the builder is taken down, so ``docker compose down`` always has the file it started from.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException

from reconciler.core.config import Config, HostConfig
from reconciler.core.render import REQUEST_FILE
from reconciler.edges.backend import (
    NO_HOST,
    BackendError,
    Builder,
    Output,
    Tell,
    Warn,
    split_lines,
    write_spec_files,
)
from reconciler.edges.builder_image import BuilderImageError, ensure_builder_image
from reconciler.edges.docker_errors import last_line
from reconciler.edges.engine_platform import engine_platform
from reconciler.protocol.events import REQUEST_FILE as REQUEST_PATH

COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
BUILDER_LABEL = "flops.role=image-builder"


def _running_builders(host: HostConfig) -> int | str:
    """How many builders run on the host, or why it did not answer."""
    try:
        return len(DockerClient(host=host.docker_host).container.list(
            filters={"label": BUILDER_LABEL, "status": "running"}))
    except DockerException as error:
        return last_line(error)


class ComposeBackend:
    def __init__(self, config: Config, spec_dir_for: Callable[[str], Path],
                 template_dirs: list[Path]) -> None:
        self.config = config
        self.hosts = {host.name: host for host in config.image_builder_hosts()}
        self._spec_dir_for = spec_dir_for
        self._template_dirs = template_dirs
        self._images_ready: set[str] = set()  # hosts whose builder image is checked

    def host(self, name: str) -> HostConfig | None:
        return self.hosts.get(name)

    def pick_host(self, warn: Warn) -> HostConfig:
        """The reachable image-builder host with the fewest running builders (the first in
        the inventory on a tie). A single host is not asked: a deploy there says it all."""
        hosts = list(self.hosts.values())
        if len(hosts) <= 1:
            if not hosts:
                raise BackendError(NO_HOST)
            return hosts[0]
        # Asked all at once: a host that does not answer costs its timeout once, not per host.
        with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
            answers = list(pool.map(_running_builders, hosts))
        running: dict[str, int] = {}
        unreachable = []
        for host, answer in zip(hosts, answers, strict=True):
            if isinstance(answer, int):
                running[host.name] = answer
                continue
            unreachable.append(f"{host.name} ({answer})")
            warn(f"image-builder host {host.name} is unreachable and was skipped: {answer}")
        if not running:
            raise BackendError("no image-builder host is reachable: " + "; ".join(unreachable)
                               + "; start their engines or fix docker_host in [[hosts]]")
        return self.hosts[min(running, key=lambda name: running[name])]

    def builder_image(self, host: HostConfig, tell: Tell) -> str:
        image = self.config.builder.image
        if host.name not in self._images_ready:
            try:
                if ensure_builder_image(host.docker_host, image, self.config.builder.base_image,
                                        self._template_dirs, force=False):
                    tell(f"built builder image {image} on {host.name}")
            except BuilderImageError as error:
                raise BackendError(str(error)) from None
            self._images_ready.add(host.name)
        return image

    def deploy(self, host: HostConfig, name: str, spec_text: str, request_text: str,
               copy_in: Sequence[tuple[Path, str]] = ()) -> Builder:
        """Create the builder, copy its request file in, start it. A copy, not a bind mount:
        it works on a remote engine too, and the file leaves our disk at once. `compose
        create` keeps a container of the same spec that is there already (a deploy cut short
        by a crash), so that one is completed: one builder container, whatever happened."""
        spec_dir = self._spec_dir_for(name)
        write_spec_files(spec_dir, "compose.yaml", spec_text, request_text)
        client = self._compose(host, name)
        step = "create"
        try:
            client.compose.create(pull="never")
            builder = self.find(host, name)
            if builder is None:
                raise BackendError(f"docker compose create on {host.name} made no container")
            step = "copy the request into"
            docker = DockerClient(host=host.docker_host)
            docker.container.copy(spec_dir / REQUEST_FILE, (builder.ref, REQUEST_PATH))
            for source, target in copy_in:
                step = f"copy {source.name} into"
                docker.container.copy(source, (builder.ref, target))
            step = "start"
            client.compose.start()
        except DockerException as error:
            self.remove(host, name, stop_timeout=0)
            raise BackendError(
                f"docker compose {step} the builder on {host.name} failed: {last_line(error)}"
            ) from None
        finally:
            (spec_dir / REQUEST_FILE).unlink(missing_ok=True)
        return builder

    def platform(self, host: HostConfig) -> str:
        return engine_platform(host)

    def ship_model(self, host: HostConfig, model_dir: Path, carrier: str) -> str:
        return ""  # deploy copies it into the created builder container

    def find(self, host: HostConfig, name: str) -> Builder | None:
        try:
            containers = DockerClient(host=host.docker_host).container.list(
                all=True, filters={"label": f"{COMPOSE_PROJECT_LABEL}={name}"}
            )
        except DockerException as error:
            raise BackendError(
                f"Docker host {host.name} did not answer: {last_line(error)}"
            ) from None
        if not containers:
            return None
        container = containers[0]
        return Builder(name, host, container.id, started=container.state.status != "created")

    def output(self, builder: Builder, *, follow: bool) -> Iterator[Output]:
        """The builder's output lines, from the start; with follow, until it exits."""
        docker = DockerClient(host=builder.host.docker_host)
        try:
            chunks: Iterator[tuple[str, bytes]] = docker.container.logs(  # type: ignore[assignment]
                builder.ref, follow=follow, stream=True, timestamps=True
            )
            yield from split_lines(chunks)
        except DockerException as error:
            raise BackendError(f"cannot read the builder's output: {last_line(error)}") from None

    def exit_code(self, builder: Builder) -> int | None:
        """The exit status once the builder has stopped; None while it runs."""
        docker = DockerClient(host=builder.host.docker_host)
        try:
            state = docker.container.inspect(builder.ref).state
        except DockerException as error:
            raise BackendError(f"cannot inspect the builder: {last_line(error)}") from None
        if state.running or state.status in ("created", "restarting"):
            return None
        return int(state.exit_code or 0)

    def wait(self, builder: Builder) -> int:
        docker = DockerClient(host=builder.host.docker_host)
        try:
            return int(docker.container.wait(builder.ref))
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
