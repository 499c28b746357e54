"""The reconciler's configuration: every key optional, with the embedded defaults of DESIGN §3.

Decision: one pydantic model is the single source of defaults; the TOML file, the
``RECONCILER_*`` environment and the command line only produce dicts that are merged into it
(later wins), so there is exactly one place that says what a key means.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

IMAGE_BUILDER_ADDON = "image-builder"
LEARNER_ADDON = "FLOps-learner"
LOCAL_REGISTRY_PREFIX = "flops.local"
_PLATFORM = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
# The longest duration any key takes: far beyond a sensible timeout or interval, far below
# what a timer can wait for (threading's TIMEOUT_MAX is about 292 years).
MAX_DURATION = 365 * 86400.0


def parse_duration(value: Any) -> float:
    """Seconds from 90, "90", "90s", "30m", "1h", "2d" or "250ms"."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration; write e.g. 90s, 30m or 1h")
        seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{value!r}: a duration must be positive and finite")
    if seconds > MAX_DURATION:
        raise ValueError(f"{value!r}: a duration may be at most 365d")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HostConfig(_Section):
    name: str
    docker_host: str = "unix:///var/run/docker.sock"
    addons: tuple[str, ...] = ()
    # Path of the Docker socket on that host, mounted into its builders.
    docker_socket: str | None = None
    # FLOps-learner hosts: the directory on that host with one folder per data tag, mounted
    # read-only into its learners as /flops/data.
    data_dir: str | None = None
    # How learners on other engines reach this host (its aggregator's published port);
    # hosts on one engine reach each other on the run's own network.
    address: str | None = None

    def socket_path(self) -> str:
        if self.docker_socket:
            return self.docker_socket
        if self.docker_host.startswith("unix://"):
            return self.docker_host.removeprefix("unix://")
        return "/var/run/docker.sock"

    @property
    def builds_images(self) -> bool:
        return IMAGE_BUILDER_ADDON in self.addons

    @property
    def runs_learners(self) -> bool:
        return LEARNER_ADDON in self.addons and bool(self.data_dir)


class BuilderConfig(_Section):
    image: str = "flops-builder:latest"
    base_image: str = "python:3.11-slim"
    network: str = "host"


def _platform_entry(value: Any) -> Any:
    """`"linux/arm64" = "image"` is short for `[images.platforms."linux/arm64"] base_image`."""
    return {"base_image": value} if isinstance(value, str) else value


class PlatformImages(_Section):
    """`[images.platforms."<os>/<arch>"]`: the images one extra platform builds from, as
    `[images]` says them for the native one."""

    base_image: str
    python: dict[str, str] = Field(default_factory=dict)
    conda_base_image: str | None = None


class ImagesConfig(_Section):
    base_image: str = "python:3.11-slim"
    # `[images.python]`: FL-actor base image per python version pinned in conda.yaml.
    python: dict[str, str] = Field(default_factory=dict)
    conda_base_image: str | None = None  # for repositories that need conda-only packages
    # `[images.platforms]`: what each platform other than the image-builder host's own builds
    # from (emulated with QEMU there); the keys above serve the host's own platform.
    platforms: dict[str, Annotated[PlatformImages, BeforeValidator(_platform_entry)]] = Field(
        default_factory=dict)

    @field_validator("platforms")
    @classmethod
    def _platform_keys(cls, value: dict[str, PlatformImages]) -> dict[str, PlatformImages]:
        for key in value:
            if not _PLATFORM.match(key):
                raise ValueError(f"{key!r} is not a platform; write it as os/arch, e.g. "
                                 '"linux/arm64" (or os/arch/variant, e.g. "linux/arm/v7")')
        return value


class BuildConfig(_Section):
    """`[build]`: how the FL-actor images reach packages (air-gapped or proxied sites)."""

    pip_index_url: str | None = None
    pip_extra_index_url: str | None = None
    pip_trusted_host: str | None = None
    http_proxy: str | None = None
    https_proxy: str | None = None
    no_proxy: str | None = None
    ca_bundle: str | None = None  # path of a PEM file on the reconciler's machine
    network: str = "host"  # network of the RUN steps; "host" reaches a local index

    def build_args(self) -> dict[str, str]:
        values = {
            "PIP_INDEX_URL": self.pip_index_url, "PIP_EXTRA_INDEX_URL": self.pip_extra_index_url,
            "PIP_TRUSTED_HOST": self.pip_trusted_host, "HTTP_PROXY": self.http_proxy,
            "HTTPS_PROXY": self.https_proxy, "NO_PROXY": self.no_proxy,
        }
        return {key: value for key, value in values.items() if value}


def _default_hosts() -> tuple[HostConfig, ...]:
    return (HostConfig(name="local", addons=(IMAGE_BUILDER_ADDON,)),)


class Config(_Section):
    registry: str = "local"
    backend: str = "compose"
    allow_file_repos: bool = False
    max_concurrent_builds: int = Field(2, ge=1)
    build_timeout: Duration = 1800.0
    resync_interval: Duration = 60.0
    pull_interval: Duration = 60.0  # how often --pull fetches the desired repository's remote
    registry_timeout: Duration = 10.0
    git_timeout: Duration = 30.0
    retry_base: Duration = 10.0  # first retry after a failed build; doubles each attempt
    retry_cap: Duration = 600.0  # the longest wait between two attempts
    max_attempts: int = Field(5, ge=1)  # then the project stays failed: "retries exhausted"
    # swarm: how long a builder may wait for an image-builder node before its build fails
    placement_timeout: Duration = 60.0
    # A training run (stages 4-5) still running after this is stopped and fails.
    training_timeout: Duration = 6 * 3600.0
    # Observer logs: a log past this size is rotated to <project>.log.1, keeping this many.
    observer_log_max_bytes: int = Field(10 * 1024 * 1024, ge=64 * 1024)
    observer_log_keep: int = Field(3, ge=1, le=100)
    builder: BuilderConfig = BuilderConfig()
    images: ImagesConfig = ImagesConfig()
    build: BuildConfig = BuildConfig()
    hosts: tuple[HostConfig, ...] = Field(default_factory=_default_hosts)

    @field_validator("registry")
    @classmethod
    def _registry(cls, value: str) -> str:
        if value == "local":
            return value
        parts = urlsplit(value)
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "must not carry credentials (user:password@): they would be part of "
                "every image reference, in state, status and logs; give the registry "
                f"{parts.hostname} without them (the builders push without credentials: a "
                "registry the image-builder hosts may push to)")
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
            raise ValueError(
                f"registry {value!r} must be 'local' or a URL like http://127.0.0.1:5000"
            )
        return value.rstrip("/")

    @field_validator("backend")
    @classmethod
    def _backend(cls, value: str) -> str:
        if value not in ("compose", "swarm"):
            raise ValueError(f"backend {value!r} must be 'compose' or 'swarm'")
        return value

    @model_validator(mode="after")
    def _retry_cap_above_base(self) -> Config:
        if self.retry_cap < self.retry_base:
            raise ValueError(
                f"retry_cap ({self.retry_cap:g}s) is shorter than retry_base "
                f"({self.retry_base:g}s), the first wait; raise retry_cap or lower retry_base")
        return self

    @model_validator(mode="after")
    def _registry_reaches_every_builder(self) -> Config:
        if self.registry != "local":
            return self
        if self.backend == "swarm":
            raise ValueError(
                'backend = "swarm" needs registry = "<URL>": every node must pull the builder '
                "image and push the images it builds; a local registry is one engine's store")
        if len(self.image_builder_hosts()) > 1:
            raise ValueError(
                'registry = "local" keeps images in one engine, but several [[hosts]] have the '
                "image-builder addon; set registry to a URL all of them push to, or keep one")
        return self

    @property
    def swarm_manager(self) -> HostConfig:
        """With backend = "swarm": the node the reconciler talks to, the first [[hosts]]."""
        return self.hosts[0] if self.hosts else _default_hosts()[0]

    @property
    def local_registry(self) -> bool:
        return self.registry == "local"

    @property
    def image_prefix(self) -> str:
        """What image references start with: the registry's host:port, or the local marker."""
        return LOCAL_REGISTRY_PREFIX if self.local_registry else urlsplit(self.registry).netloc

    def image_builder_hosts(self) -> list[HostConfig]:
        return [host for host in self.hosts if host.builds_images]

    def learner_hosts(self) -> list[HostConfig]:
        """The hosts that may run learners: the FLOps-learner addon and a data_dir."""
        return [host for host in self.hosts if host.runs_learners]
