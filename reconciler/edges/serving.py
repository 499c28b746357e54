"""Serving a trained model (post_training_steps: deploy_trained_model_image): one long-running
container of the project's trained-model image, health-checked, replaced by the next run's,
removed with the project. On a compose inventory it is a container on the run's aggregator
host (``ComposeServing``); on a swarm, a service (``swarm_serving.SwarmServing``).

Decision: a project has at most one server, found by the label ``flops.serving=<project>``
(never by memory): serving a new image removes whatever serves the project now, and a restart
of the reconciler finds the one that runs. Its port is published by Docker (an ephemeral host
port) and the server counts as deployed only once ``GET /health`` answers 200.
"""

from __future__ import annotations

import time
from typing import Protocol

import httpx
from python_on_whales import Container, DockerClient
from python_on_whales.exceptions import DockerException

from reconciler.core.config import Config, HostConfig
from reconciler.edges.backend import BackendError
from reconciler.edges.docker_errors import last_line

SERVING_LABEL = "flops.serving"
SERVER_PORT = 8080  # the trained-model image's FLOPS_PORT
HEALTHY_WITHIN = 120.0  # seconds for a new server to answer /health


class ModelServer(Protocol):
    """What the post-training steps need of a place that serves models (a fake in tests).
    ``aggregator``: the host (or swarm node) the run's aggregator ran on."""

    def serve(self, project: str, image: str, aggregator: str) -> str:
        """Run ``image`` as the project's server (replacing the one there); its base URL
        once it is healthy. BackendError when it cannot."""

    def remove(self, project: str, aggregator: str) -> None: ...

    def healthy(self, url: str) -> bool: ...


class ComposeServing:
    """Model servers as containers on the engine of the run's aggregator host."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def serve(self, project: str, image: str, aggregator: str) -> str:
        host = self._host(aggregator)
        self.remove(project, aggregator)
        docker = DockerClient(host=host.docker_host)
        try:
            container = docker.run(
                image, detach=True, name=f"flops-serve-{project}", restart="unless-stopped",
                publish=[(0, SERVER_PORT)],
                labels={SERVING_LABEL: project, "flops.project": project})
        except DockerException as error:
            raise BackendError(f"cannot start the model server on {host.name}: "
                               f"{last_line(error)}") from None
        url = server_url(docker, host, container)
        wait_healthy(url)
        return url

    def remove(self, project: str, aggregator: str) -> None:
        host = self._host(aggregator)
        docker = DockerClient(host=host.docker_host)
        try:
            found = docker.container.list(all=True, filters={"label": f"{SERVING_LABEL}={project}"})
            if found:
                docker.container.remove(found, force=True)
        except DockerException as error:
            raise BackendError(f"cannot remove the model server on {host.name}: "
                               f"{last_line(error)}") from None

    def healthy(self, url: str) -> bool:
        return answers_health(url)

    def _host(self, name: str) -> HostConfig:
        """The model is served on the host its run's aggregator ran on."""
        host = next((h for h in self.config.hosts if h.name == name), None)
        if host is None:
            raise BackendError(f"host {name} left the inventory; the model of its run is "
                               "served there or nowhere: run `reconciler retrain`")
        return host


def server_url(docker: DockerClient, host: HostConfig, container: Container | str) -> str:
    """``http://<host address>:<published port>`` of a server container on ``host``."""
    try:
        ports = docker.container.inspect(container).network_settings.ports or {}
    except DockerException as error:
        raise BackendError(f"cannot inspect the model server on {host.name}: "
                           f"{last_line(error)}") from None
    bindings = ports.get(f"{SERVER_PORT}/tcp") or []
    if not bindings:
        raise BackendError(f"the model server's port {SERVER_PORT} is not published")
    return f"http://{host.address or '127.0.0.1'}:{bindings[0]['HostPort']}"


def answers_health(url: str) -> bool:
    """Whether the server at ``url`` answers ``GET /health`` with 200 (within 5 s)."""
    try:
        return httpx.get(f"{url}/health", timeout=5.0).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(url: str) -> None:
    deadline = time.monotonic() + HEALTHY_WITHIN
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(f"{url}/health", timeout=5)
            if answer.status_code == 200:
                return
            last = f"HTTP {answer.status_code}"
        except httpx.HTTPError as error:
            last = str(error) or type(error).__name__
        time.sleep(0.25)
    raise BackendError(f"the model server at {url} did not become healthy within "
                       f"{HEALTHY_WITHIN:g}s ({last})")
