"""A trained model's directory as a one-layer image in the registry (a "model carrier"), for
builders nothing can be copied into: a swarm's services.

Decision: the image is written straight through the registry's HTTP API (two blobs and a
manifest), not built by an engine, so it needs no engine on any particular node and leaves no
image behind on one. The layer is deterministic (sorted entries, no owners, no times, a gzip
header without a date): pushing the same model again uploads nothing new. It holds ``model/``
with only directories, regular files and symbolic links (links stay links), as the builder's
own context of a copied-in model does.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx

from reconciler.core.naming import split_ref
from reconciler.edges.backend import BackendError
from reconciler.protocol.tree_tar import add_tree

LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
TOP = "model"  # the directory the carrier holds, at /model


def push_model_carrier(registry_url: str, ref: str, model_dir: Path, platform: str,
                       *, timeout: float) -> str:
    """Push ``model_dir`` as image ``ref`` (``<host>/<name>:<tag>``) to the registry at
    ``registry_url``; its manifest digest. BackendError (one line) when the registry refuses."""
    name, tag = split_ref(ref)
    os_name, _, arch = platform.partition("/")
    with tempfile.TemporaryFile() as tar_file, tempfile.TemporaryFile() as layer, \
            httpx.Client(base_url=registry_url, timeout=timeout) as client:
        write_layer_tar(model_dir, tar_file)
        diff_id = _gzip(tar_file, layer)
        config = json.dumps({
            "architecture": arch.split("/")[0] or "amd64", "os": os_name or "linux",
            "config": {}, "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }, sort_keys=True).encode()
        try:
            layer_digest, layer_size = _upload(client, name, layer)
            config_digest, config_size = _upload(client, name, config)
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                "config": {"mediaType": CONFIG_TYPE, "size": config_size,
                           "digest": config_digest},
                "layers": [{"mediaType": LAYER_TYPE, "size": layer_size,
                            "digest": layer_digest}],
            }, sort_keys=True).encode()
            answer = client.put(f"/v2/{name}/manifests/{tag}", content=manifest,
                                headers={"Content-Type": MANIFEST_TYPE})
            _expect(answer, 201, f"the manifest of {ref}")
        except httpx.HTTPError as error:
            raise BackendError(f"registry {registry_url} did not take the model carrier "
                               f"{ref}: {type(error).__name__}: {error}") from None
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def write_layer_tar(model_dir: Path, out: IO[bytes]) -> None:
    """``model/`` and what it holds, walked in sorted order without following links."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add_tree(tar, model_dir, TOP)
    out.seek(0)


def _gzip(tar_file: IO[bytes], layer: IO[bytes]) -> str:
    """``tar_file`` gzipped into ``layer`` (both left at offset 0); the tar's digest."""
    digest = hashlib.sha256()
    # Level 0 (stored blocks, still gzip): the carrier is a transport that one builder pulls
    # once, model weights hardly compress, and level 1 already costs ~1.4 s per 64 MiB.
    with gzip.GzipFile(filename="", mode="wb", fileobj=layer, mtime=0, compresslevel=0) as packed:
        while chunk := tar_file.read(1024 * 1024):
            digest.update(chunk)
            packed.write(chunk)
    layer.seek(0)
    return "sha256:" + digest.hexdigest()


def _upload(client: httpx.Client, name: str, blob: bytes | IO[bytes]) -> tuple[str, int]:
    """One blob (skipped when the registry has it already): its digest and size."""
    digest = hashlib.sha256()
    if isinstance(blob, bytes):
        digest.update(blob)
        size = len(blob)
    else:
        size = 0
        while chunk := blob.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
        blob.seek(0)
    named = "sha256:" + digest.hexdigest()
    if client.head(f"/v2/{name}/blobs/{named}").status_code == 200:
        return named, size
    started = client.post(f"/v2/{name}/blobs/uploads/")
    _expect(started, 202, "a blob upload")
    location = started.headers.get("location", "")
    if not location:
        raise BackendError("the registry started a blob upload without a Location")
    target = client.base_url.join(location) if location.startswith("/") else httpx.URL(location)
    body = blob if isinstance(blob, bytes) else _chunks(blob)
    answer = client.put(target.copy_merge_params({"digest": named}), content=body,
                        headers={"Content-Type": "application/octet-stream",
                                 "Content-Length": str(size)})
    _expect(answer, 201, f"blob {named[:19]}")
    return named, size


def _chunks(stream: IO[bytes]) -> Iterator[bytes]:
    while chunk := stream.read(1024 * 1024):
        yield chunk


def _expect(answer: httpx.Response, status: int, what: str) -> None:
    if answer.status_code != status:
        raise BackendError(f"the registry answered {answer.status_code} to {what}: "
                           f"{answer.text[:200].strip() or 'no reason given'}")

