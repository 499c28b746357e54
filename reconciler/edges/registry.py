"""Asking whether images exist: one manifest HEAD per image, or the engine in local mode.

Decision: existence is a per-image question (``HEAD /v2/<name>/manifests/<tag>``), never a
catalog scan, so its cost does not grow with the registry; in ``local`` mode the images live
in the image-builder host's engine and the same question goes to ``docker image inspect``.
Both raise ``RegistryError`` (one line) when the answer is unknown, which is not "missing".
"""

from __future__ import annotations

from typing import Protocol

import httpx
from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException

from reconciler.core.naming import split_ref

MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


class RegistryError(RuntimeError):
    """The registry could not say whether an image exists."""


class ImageStore(Protocol):
    def exists(self, ref: str) -> bool: ...


class RegistryImages:
    """Images in a registry v2 server, asked through its HTTP API."""

    def __init__(self, url: str, *, timeout: float) -> None:
        self.url = url
        self._client = httpx.Client(base_url=url, timeout=timeout)

    def exists(self, ref: str) -> bool:
        name, tag = split_ref(ref)
        try:
            response = self._client.head(
                f"/v2/{name}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES}
            )
        except httpx.HTTPError as error:
            raise RegistryError(
                f"registry {self.url} did not answer ({type(error).__name__}: {error}); "
                "is it running and reachable?"
            ) from None
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise RegistryError(
            f"registry {self.url} answered {response.status_code} for {ref}; "
            "check the registry's logs and access rights"
        )

    def close(self) -> None:
        self._client.close()


class EngineImages:
    """Images kept in a Docker engine (registry ``local`` mode)."""

    def __init__(self, docker_host: str) -> None:
        self.docker_host = docker_host
        self._docker = DockerClient(host=docker_host)

    def exists(self, ref: str) -> bool:
        try:
            return bool(self._docker.image.exists(ref))
        except DockerException as error:
            raise RegistryError(
                f"Docker engine {self.docker_host} did not answer: {_last_line(error)}"
            ) from None


def _last_line(error: DockerException) -> str:
    text = (error.stderr or str(error)).strip().splitlines()
    return text[-1] if text else "no output"
