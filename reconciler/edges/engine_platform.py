"""The platform of a host's Docker engine: what its classic builder builds without emulation.

Decision: asked from the engine (``docker info``), never assumed from the reconciler's own
machine, since an image-builder host may be another machine of another architecture.
"""

from __future__ import annotations

from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException

from reconciler.core.config import HostConfig
from reconciler.core.platforms import platform_of
from reconciler.edges.backend import BackendError
from reconciler.edges.docker_errors import last_line


def engine_platform(host: HostConfig) -> str:
    """E.g. ``linux/amd64``; BackendError when the engine does not answer."""
    try:
        info = DockerClient(host=host.docker_host).system.info()
    except DockerException as error:
        raise BackendError(f"Docker host {host.name} did not answer: {last_line(error)}") from None
    return platform_of(info.os_type or "linux", info.architecture or "")
