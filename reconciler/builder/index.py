"""Publishing a multi-platform image: one manifest list that names each platform's pushed
manifest, put under the image's normal tag through the registry's HTTP API.

Decision: the builder writes the list itself (``PUT /v2/<name>/manifests/<tag>``) with the
standard library, instead of needing buildx or ``docker manifest`` in the builder image: the
engine has already pushed every platform's image, so the list only has to name their
manifests (digest, size, media type, read back from the registry) and platforms. It is a
Docker manifest list, the type the engine's pushes are (Docker v2 manifests), which every
registry and engine understand.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
import urllib.response
from collections.abc import Sequence
from dataclasses import dataclass

MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
CHILD_TYPES = ("application/vnd.docker.distribution.manifest.v2+json",
               "application/vnd.oci.image.manifest.v1+json")
TIMEOUT = 60.0


class PublishError(RuntimeError):
    """The registry refused or did not answer; ``str()`` says which request."""


@dataclass(frozen=True)
class Child:
    """One platform's manifest in the registry."""

    platform: str  # os/arch[/variant]
    digest: str
    size: int
    media_type: str


def manifest_list(children: Sequence[Child]) -> bytes:
    """The manifest list document naming ``children`` (pure)."""
    manifests = []
    for child in children:
        os_name, arch, *variant = child.platform.split("/")
        platform = {"architecture": arch, "os": os_name}
        if variant:
            platform["variant"] = variant[0]
        manifests.append({"mediaType": child.media_type, "size": child.size,
                          "digest": child.digest, "platform": platform})
    document = {"schemaVersion": 2, "mediaType": MANIFEST_LIST, "manifests": manifests}
    return json.dumps(document, indent=3).encode()


def publish_index(registry_url: str, repository: str, tag: str,
                  pushed: Sequence[tuple[str, str]]) -> str:
    """Put the manifest list of ``pushed`` (platform, manifest digest) under
    ``repository:tag``; its digest. PublishError when the registry says no."""
    base = registry_url.rstrip("/")
    children = [_child(base, repository, platform, digest) for platform, digest in pushed]
    url = f"{base}/v2/{_quote(repository)}/manifests/{_quote(tag)}"
    request = urllib.request.Request(url, data=manifest_list(children), method="PUT",
                                     headers={"Content-Type": MANIFEST_LIST})
    with _open(request, f"PUT {url}") as response:
        digest = response.headers.get("Docker-Content-Digest", "")
    if not digest:
        raise PublishError(f"PUT {url}: the registry answered without Docker-Content-Digest")
    return str(digest)


def _child(base: str, repository: str, platform: str, digest: str) -> Child:
    url = f"{base}/v2/{_quote(repository)}/manifests/{digest}"
    request = urllib.request.Request(url, method="HEAD",
                                     headers={"Accept": ", ".join(CHILD_TYPES)})
    with _open(request, f"HEAD {url}") as response:
        size = int(response.headers.get("Content-Length", "0"))
        media_type = response.headers.get("Content-Type", CHILD_TYPES[0]).split(";")[0]
    if not size:
        raise PublishError(f"HEAD {url}: the registry did not say the manifest's size")
    return Child(platform, digest, size, media_type)


def _open(request: urllib.request.Request, what: str) -> urllib.response.addinfourl:
    try:
        response: urllib.response.addinfourl = urllib.request.urlopen(
            request, timeout=TIMEOUT, context=ssl.create_default_context())
        return response
    except urllib.error.HTTPError as error:
        body = error.read(500).decode("utf-8", "replace").strip()
        raise PublishError(f"{what} answered {error.code}: {body}") from None
    except (urllib.error.URLError, OSError) as error:
        raise PublishError(f"{what} failed: {getattr(error, 'reason', error)}") from None


def _quote(part: str) -> str:
    return urllib.parse.quote(part, safe="/")
