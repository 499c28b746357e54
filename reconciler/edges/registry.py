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
from reconciler.edges.docker_errors import last_line

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


DEFAULT_PLATFORMS = ("linux/amd64",)
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


class ImageStore(Protocol):
    def exists(self, ref: str, platforms: tuple[str, ...] = DEFAULT_PLATFORMS) -> bool: ...


class RegistryImages:
    """Images in a registry v2 server, asked through its HTTP API."""

    def __init__(self, url: str, *, timeout: float) -> None:
        self.url = url
        self._client = httpx.Client(base_url=url, timeout=timeout)

    def exists(self, ref: str, platforms: tuple[str, ...] = DEFAULT_PLATFORMS) -> bool:
        """One manifest request; an image for other platforms than the default is only
        present when it covers every requested platform (read from its index or config)."""
        name, tag = split_ref(ref)
        method = "HEAD" if platforms == DEFAULT_PLATFORMS else "GET"
        response = self._request(method, f"/v2/{name}/manifests/{tag}", ref,
                                 {"Accept": MANIFEST_TYPES})
        if response is None or method == "HEAD":
            return response is not None
        return set(platforms) <= self._platforms(name, response, ref)

    def _platforms(self, name: str, manifest: httpx.Response, ref: str) -> set[str]:
        body = manifest.json()
        if manifest.headers.get("content-type", "").split(";")[0] in INDEX_TYPES:
            return {_platform(m["platform"]) for m in body.get("manifests", [])
                    if isinstance(m.get("platform"), dict)}
        config = self._request("GET", f"/v2/{name}/blobs/{body['config']['digest']}", ref, {})
        return {_platform(config.json() if config is not None else {})}

    def _request(self, method: str, path: str, ref: str,
                 headers: dict[str, str]) -> httpx.Response | None:
        """The response, None for 404; any other answer is a RegistryError."""
        try:
            response = self._client.request(method, path, headers=headers)
        except httpx.HTTPError as error:
            raise RegistryError(
                f"registry {self.url} did not answer ({type(error).__name__}: {error}); "
                "is it running and reachable?"
            ) from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RegistryError(
                f"registry {self.url} answered {response.status_code} for {ref}; "
                "check the registry's logs and access rights"
            )
        return response

    def close(self) -> None:
        self._client.close()


def _platform(described: dict[str, str]) -> str:
    """`linux/arm64`, or `linux/arm/v7` with a variant: as SLAs name platforms."""
    variant = f"/{described['variant']}" if described.get("variant") else ""
    return f"{described.get('os', '?')}/{described.get('architecture', '?')}{variant}"


class EngineImages:
    """Images kept in a Docker engine (registry ``local`` mode)."""

    def __init__(self, docker_host: str) -> None:
        self.docker_host = docker_host
        self._docker = DockerClient(host=docker_host)

    def exists(self, ref: str, platforms: tuple[str, ...] = DEFAULT_PLATFORMS) -> bool:
        """An engine holds one platform of an image: it must be the one requested."""
        try:
            if not self._docker.image.exists(ref):
                return False
            image = self._docker.image.inspect(ref)
            return set(platforms) <= {_platform({"os": image.os or "?",
                                                 "architecture": image.architecture or "?",
                                                 "variant": image.variant or ""})}
        except DockerException as error:
            raise RegistryError(
                f"Docker engine {self.docker_host} did not answer: {last_line(error)}"
            ) from None
