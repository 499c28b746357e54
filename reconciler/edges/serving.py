"""Serving a trained model (post_training_steps: deploy_trained_model_image): one long-running
container of the project's trained-model image on a host, health-checked, replaced by the next
run's, removed with the project.

Decision: a project has at most one server, found by the label ``flops.serving=<project>``
(never by memory): serving a new image removes whatever serves the project now, and a restart
of the reconciler finds the one that runs. Its port is published by Docker (an ephemeral host
port) and the server counts as deployed only once ``GET /health`` answers 200.
"""

from __future__ import annotations

import time
from typing import Protocol

import httpx
from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException

from reconciler.core.config import HostConfig
from reconciler.edges.backend import BackendError
from reconciler.edges.docker_errors import last_line

SERVING_LABEL = "flops.serving"
HEALTHY_WITHIN = 120.0  # seconds for a new server to answer /health


class ModelServer(Protocol):
    """What the post-training steps need of a place that serves models (a fake in tests)."""

    def serve(self, host: HostConfig, project: str, image: str) -> str: ...

    def remove(self, host: HostConfig, project: str) -> None: ...

    def healthy(self, url: str) -> bool: ...


class ModelServing:
    """Model servers as containers on the hosts' engines."""

    def serve(self, host: HostConfig, project: str, image: str) -> str:
        """Run ``image`` as the project's server on ``host`` (replacing the one there); its
        base URL once it is healthy."""
        self.remove(host, project)
        docker = DockerClient(host=host.docker_host)
        try:
            container = docker.run(
                image, detach=True, name=f"flops-serve-{project}", restart="unless-stopped",
                publish=[(0, 8080)], labels={SERVING_LABEL: project, "flops.project": project})
            ports = docker.container.inspect(container).network_settings.ports or {}
        except DockerException as error:
            raise BackendError(f"cannot start the model server on {host.name}: "
                               f"{last_line(error)}") from None
        bindings = ports.get("8080/tcp") or []
        if not bindings:
            raise BackendError("the model server's port 8080 is not published")
        url = f"http://{host.address or '127.0.0.1'}:{bindings[0]['HostPort']}"
        self._wait_healthy(url)
        return url

    def remove(self, host: HostConfig, project: str) -> None:
        docker = DockerClient(host=host.docker_host)
        try:
            found = docker.container.list(all=True, filters={"label": f"{SERVING_LABEL}={project}"})
            if found:
                docker.container.remove(found, force=True)
        except DockerException as error:
            raise BackendError(f"cannot remove the model server on {host.name}: "
                               f"{last_line(error)}") from None

    @staticmethod
    def healthy(url: str) -> bool:
        """Whether the server at ``url`` answers ``GET /health`` with 200 (within 5 s)."""
        try:
            return httpx.get(f"{url}/health", timeout=5.0).status_code == 200
        except httpx.HTTPError:
            return False

    @staticmethod
    def _wait_healthy(url: str) -> None:
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
