"""What a runtime backend is: where builders run, how they are found again, read and removed.

Decision: the build runner speaks only this protocol, so the compose backend (a chosen Docker
host from the inventory) and the swarm backend (the swarm places the builder by node label)
are interchangeable; everything a backend knows about a builder is found again from Docker by
the builder's name, never kept only in memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from reconciler.core.config import HostConfig
from reconciler.core.render import REQUEST_FILE

Warn = Callable[[str], None]
Tell = Callable[[str], None]  # one line for the operator (not a project's log)
PLACED = "placed"  # Output.stream of a swarm builder's placement: "<node id> <hostname>"
NO_HOST = (
    'no image-builder host: no [[hosts]] entry has addons = ["image-builder"]; '
    "add the addon to a host in the configuration"
)


class BackendError(RuntimeError):
    """A Docker host or swarm refused or could not be reached; ``str()`` is one line."""


class Unschedulable(BackendError):
    """The builder could not be placed on any node in time; ``str()`` gives the swarm's
    reason. Not an outage to wait out: the build fails and is retried later."""


@dataclass(frozen=True)
class Builder:
    name: str
    host: HostConfig  # compose: the Docker host it runs on; swarm: the manager
    ref: str  # compose: the container id; swarm: the service id
    node: str | None = None  # swarm: the node the task was placed on, once it is placed
    # False for a builder that was created but never started: a deploy cut short (a crash
    # between create and start); deploying again completes it instead of making another.
    started: bool = True


@dataclass(frozen=True)
class Output:
    stream: str  # "stdout" or "stderr"
    line: str
    at: str  # when Docker received the line, ISO-8601 UTC with milliseconds


def write_spec_files(spec_dir: Path, spec_name: str, spec_text: str, request_text: str) -> Path:
    """Write the spec and, beside it, the request file (mode 0600 from the first byte: it may
    hold credentials; the deploy removes it once the builder has it); returns the spec."""
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec_file = spec_dir / spec_name
    spec_file.write_text(spec_text, encoding="utf-8")
    request_file = spec_dir / REQUEST_FILE
    request_file.unlink(missing_ok=True)
    fd = os.open(request_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        stream.write(request_text)
    return spec_file


def parse_output(stream: str, raw: bytes) -> Output:
    """``2026-11-28T01:56:29.88234Z text`` (``docker logs --timestamps``) as an Output."""
    stamp, _, text = raw.decode("utf-8", "replace").partition(" ")
    seconds, _, fraction = stamp.rstrip("Z").partition(".")
    return Output(stream, text, f"{seconds}.{(fraction + '000')[:3]}Z")


def split_lines(chunks: Iterator[tuple[str, bytes]]) -> Iterator[Output]:
    """Timestamped output lines from chunks of Docker's stdout and stderr streams."""
    pending = {"stdout": b"", "stderr": b""}
    for stream, chunk in chunks:
        pending[stream] += chunk
        *complete, pending[stream] = pending[stream].split(b"\n")
        for raw in complete:
            yield parse_output(stream, raw)
    for stream, rest in pending.items():
        if rest:
            yield parse_output(stream, rest)


class Backend(Protocol):
    def host(self, name: str) -> HostConfig | None:
        """The host a recorded build names, if it is still configured."""

    def pick_host(self, warn: Warn) -> HostConfig:
        """Where the next builder goes; unreachable candidates are skipped with ``warn``."""

    def builder_image(self, host: HostConfig, tell: Tell) -> str:
        """Make sure the builder image is usable there; returns the reference to run.
        ``tell``: says when the image had to be built (it takes a while)."""

    def platform(self, host: HostConfig) -> str:
        """The platform of the host's engine (e.g. linux/amd64): what it builds natively;
        BackendError when it does not answer."""

    def deploy(self, host: HostConfig, name: str, spec_text: str, request_text: str,
               copy_in: Sequence[tuple[Path, str]] = ()) -> Builder:
        """Start the builder from its rendered spec; ``request_text`` is its request file;
        ``copy_in``: (local directory, path in the builder) to put there before it starts
        (a trained model). A builder of that name that was created but never started is
        completed, not made again."""

    def ship_model(self, host: HostConfig, model_dir: Path, carrier: str) -> str:
        """Make a trained model's directory reachable by the next builder: ``""`` when
        ``deploy``'s ``copy_in`` puts it into the builder; else the reference ``carrier`` of
        the image, now in the registry, that holds it at /model for the builder to pull."""

    def find(self, host: HostConfig, name: str) -> Builder | None: ...

    def output(self, builder: Builder, *, follow: bool) -> Iterator[Output]:
        """The builder's output lines from the start; with ``follow``, until it has ended."""

    def exit_code(self, builder: Builder) -> int | None:
        """The exit status once the builder has ended; None while it has not."""

    def wait(self, builder: Builder) -> int: ...

    def remove(self, host: HostConfig, name: str, *, stop_timeout: int = 10) -> None:
        """Take the builder down; ``stop_timeout`` 0 kills it at once."""
