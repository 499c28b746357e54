"""The build request: what the reconciler tells a builder, as one typed value.

Decision: the request has one serializer (``request_json``, used by the reconciler) and one
parser (``parse_request``, used by the builder), both here, so the two sides cannot drift
apart. The parser checks every field the builder acts on and names the first bad one
(``RequestError``); fields the builder only records are taken as they come. One value serves
both kinds of build (``kind``: the FL-actor images, or a trained model's image); the fields of
the other kind keep their defaults. What each field means is in ``events.py``'s description
of the wire contract.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from reconciler.protocol.events import (
    ACTORS,
    KINDS,
    MODEL_DIR,
    REQUEST_FILE,
    ROLES,
    TRAINED_MODEL,
    TRAINED_MODEL_ROLE,
)

COMMIT = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
IMAGE_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$")
PYTHON_SERIES = re.compile(r"^(?P<major>\d+)\.(?P<minor>\d+)$")  # a python_images key: "3.10"
PLATFORM = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$")  # os/arch[/variant]
REGISTRY_URL = re.compile(r"^https?://[A-Za-z0-9.:\[\]-]+/?$")
NETWORK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
CONTAINER_PATH = re.compile(r"^(/[A-Za-z0-9._-]+)+$")  # model_dir: plain absolute path
# The only build arguments a request may set: the FL-actor Dockerfile declares exactly these.
BUILD_ARGS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "HTTP_PROXY",
              "HTTPS_PROXY", "NO_PROXY")


class RequestError(ValueError):
    """The request document is not a valid request; ``str()`` names what is wrong."""


@dataclass(frozen=True, kw_only=True)
class PlatformImages:
    """What one platform other than the engine's own builds from (``[images.platforms]``)."""

    base_image: str
    python_images: dict[str, str] = field(default_factory=dict)
    conda_base_image: str | None = None


@dataclass(frozen=True, kw_only=True)
class BuildRequest:
    project: str
    kind: str = ACTORS  # "actors" (learner and aggregator) or "trained-model"
    build_key: str = ""
    repo_url: str  # what the builder clones (may be a path inside the container)
    source_url: str  # the SLA's ml_repo_url, for labels and messages
    commit: str
    ref: str | None = None
    flavor: str = ""
    platforms: list[str] = field(default_factory=list)
    use_devel_base_images: bool = False
    images: dict[str, str]
    push: bool = False
    dockerfiles: dict[str, str] = field(default_factory=dict)  # kind actors: per role
    runtime_dockerfile: str = ""  # kind actors: the FL runtime image's Dockerfile
    labels: dict[str, str] = field(default_factory=dict)
    builder_version: str = ""
    python_images: dict[str, str] = field(default_factory=dict)
    conda_base_image: str | None = None
    build_args: dict[str, str] = field(default_factory=dict)
    build_network: str | None = None
    ca_bundle: str = ""
    # Platforms other than the engine's own: their images (built under emulation); and the
    # registry's URL, where a multi-platform build publishes its index (the scheme says how).
    platform_images: dict[str, PlatformImages] = field(default_factory=dict)
    registry_url: str = ""
    # kind trained-model: the image it starts from (the learner image), where the model
    # directory is inside the builder container, the rendered Dockerfile.model.j2; and, when
    # nothing could be copied into the builder (a swarm service), the image that carries the
    # model directory under MODEL_CARRIER_PATH, which the builder pulls and unpacks first.
    model_from: str = ""
    model_dir: str = MODEL_DIR
    model_carrier: str = ""
    model_dockerfile: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def request_json(request: BuildRequest) -> str:
    """The request document the builder reads from its file (ASCII, one line)."""
    return json.dumps(request.as_json(), ensure_ascii=True, separators=(",", ":"))


def parse_request(raw: str | None) -> BuildRequest:
    """The request in ``raw``; RequestError naming the first bad field."""
    if not raw:
        raise RequestError(f"{REQUEST_FILE} is missing or empty")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise RequestError(f"not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise RequestError("not a JSON object")
    kind = data.get("kind") or ACTORS
    if kind not in KINDS:
        raise RequestError(f"'kind' must be one of {', '.join(KINDS)}, not {kind!r}")
    common = _common_fields(data, required=("project", "repo_url", "commit")
                            if kind == ACTORS else ("project", "commit"))
    if kind == TRAINED_MODEL:
        return BuildRequest(kind=kind, **common, **_model_fields(data))
    return BuildRequest(kind=kind, **common, **_actor_fields(data))


def _common_fields(data: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    """The fields both kinds of build read, checked."""
    for key in required:
        if not isinstance(data.get(key), str) or not data[key]:
            raise RequestError(f"{key!r} must be a non-empty string")
    if not COMMIT.match(data["commit"]):
        raise RequestError(f"'commit' must be a full hex commit id, not {data['commit']!r}")
    labels = data.get("labels") or {}
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise RequestError("'labels' must map strings to strings")
    platforms = data.get("platforms") or []
    if not isinstance(platforms, list) or not all(
        isinstance(p, str) and PLATFORM.match(p) for p in platforms
    ) or len(set(platforms)) != len(platforms):
        raise RequestError("'platforms' must be a list of distinct platforms like linux/arm64")
    build_args = data.get("build_args") or {}
    if not isinstance(build_args, dict) or not all(
        isinstance(k, str) and k in BUILD_ARGS and isinstance(v, str)
        for k, v in build_args.items()
    ):
        raise RequestError(f"'build_args' may only set {', '.join(BUILD_ARGS)} to strings")
    network = data.get("build_network") or None
    if network is not None and not (isinstance(network, str) and NETWORK.match(network)):
        raise RequestError("'build_network' must be a Docker network name")
    ca_bundle = data.get("ca_bundle") or ""
    if not isinstance(ca_bundle, str):
        raise RequestError("'ca_bundle' must be PEM text")
    ref = data.get("ref")
    repo_url = _text(data.get("repo_url"))
    return {
        "project": data["project"], "build_key": _text(data.get("build_key")),
        "repo_url": repo_url, "source_url": _text(data.get("source_url")) or repo_url,
        "commit": data["commit"], "ref": ref if isinstance(ref, str) and ref else None,
        "flavor": _text(data.get("flavor")), "platforms": platforms,
        "use_devel_base_images": data.get("use_devel_base_images") is True,
        "push": data.get("push") is True, "labels": labels,
        "builder_version": _text(data.get("builder_version")), "build_args": dict(build_args),
        "build_network": network, "ca_bundle": ca_bundle,
    }


def _actor_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The fields of the FL-actor build (kind ``actors``), checked."""
    for key in ("images", "dockerfiles"):
        value = data.get(key)
        if not isinstance(value, dict) or any(
            not isinstance(value.get(role), str) or not value[role] for role in ROLES
        ):
            raise RequestError(f"{key!r} must map each of {', '.join(ROLES)} to a string")
    python_images = data.get("python_images") or {}
    conda_base = data.get("conda_base_image") or None
    if conda_base is not None and not (
        isinstance(conda_base, str) and IMAGE_REFERENCE.match(conda_base)
    ):
        raise RequestError("'conda_base_image' must be an image reference")
    runtime_dockerfile = data.get("runtime_dockerfile")
    if not isinstance(runtime_dockerfile, str) or not runtime_dockerfile:
        raise RequestError("'runtime_dockerfile' must be the runtime image's Dockerfile")
    registry_url = data.get("registry_url") or ""
    if not isinstance(registry_url, str) or (registry_url and not REGISTRY_URL.match(registry_url)):
        raise RequestError("'registry_url' must be a URL like http://127.0.0.1:5000")
    return {
        "images": {r: data["images"][r] for r in ROLES},
        "dockerfiles": {r: data["dockerfiles"][r] for r in ROLES},
        "runtime_dockerfile": runtime_dockerfile, "python_images": _python_images(python_images),
        "conda_base_image": conda_base,
        "platform_images": _platform_images(data.get("platform_images") or {}),
        "registry_url": registry_url,
    }


def _python_images(value: Any, where: str = "python_images") -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and PYTHON_SERIES.match(k.strip())
        and isinstance(v, str) and IMAGE_REFERENCE.match(v)
        for k, v in value.items()
    ):
        raise RequestError(
            f"'{where}' must map python versions like \"3.10\" to image references")
    return dict(value)


def _platform_images(value: Any) -> dict[str, PlatformImages]:
    """``platform_images``: platform -> its base image, python map and conda base."""
    if not isinstance(value, dict):
        raise RequestError("'platform_images' must map platforms to their images")
    found: dict[str, PlatformImages] = {}
    for platform, entry in value.items():
        where = f"platform_images.{platform}"
        if not (isinstance(platform, str) and PLATFORM.match(platform)):
            raise RequestError(f"'platform_images' keys must be platforms like linux/arm64, "
                               f"not {platform!r}")
        if not isinstance(entry, dict) or not (
            isinstance(entry.get("base_image"), str) and IMAGE_REFERENCE.match(entry["base_image"])
        ):
            raise RequestError(f"'{where}.base_image' must be an image reference")
        conda = entry.get("conda_base_image") or None
        if conda is not None and not (isinstance(conda, str) and IMAGE_REFERENCE.match(conda)):
            raise RequestError(f"'{where}.conda_base_image' must be an image reference")
        found[platform] = PlatformImages(
            base_image=entry["base_image"],
            python_images=_python_images(entry.get("python_images") or {},
                                         f"{where}.python_images"),
            conda_base_image=conda)
    return found


def _model_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The fields of a trained model's build (kind ``trained-model``), checked."""
    images = data.get("images")
    if not isinstance(images, dict) or set(images) != {TRAINED_MODEL_ROLE} or not (
        isinstance(images[TRAINED_MODEL_ROLE], str)
        and IMAGE_REFERENCE.match(images[TRAINED_MODEL_ROLE])
    ):
        raise RequestError(f"'images' must map {TRAINED_MODEL_ROLE} (only) to an image reference")
    model_from = data.get("model_from")
    if not isinstance(model_from, str) or not IMAGE_REFERENCE.match(model_from):
        raise RequestError("'model_from' must be an image reference (the learner image)")
    model_dir = data.get("model_dir") or MODEL_DIR
    if not (isinstance(model_dir, str) and CONTAINER_PATH.match(model_dir)
            and posixpath.normpath(model_dir) == model_dir):
        raise RequestError("'model_dir' must be an absolute path like /flops/model")
    dockerfile = data.get("model_dockerfile")
    if not isinstance(dockerfile, str) or not dockerfile:
        raise RequestError("'model_dockerfile' must be the trained-model image's Dockerfile")
    carrier = data.get("model_carrier") or ""
    if not isinstance(carrier, str) or (carrier and not IMAGE_REFERENCE.match(carrier)):
        raise RequestError("'model_carrier' must be an image reference (the image that "
                           "carries the model directory) or absent")
    return {"images": {TRAINED_MODEL_ROLE: images[TRAINED_MODEL_ROLE]},
            "model_from": model_from, "model_dir": model_dir, "model_dockerfile": dockerfile,
            "model_carrier": carrier}


def _text(value: Any) -> str:
    """A field the builder only records: its text, or empty."""
    return value if isinstance(value, str) else ""
