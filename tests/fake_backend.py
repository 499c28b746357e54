"""Test doubles for the controller's edges: a backend that replays recorded builder output, an
image store and a clock moved by hand.

The backend plays real builders' output (``tests/data/builder_streams/*.jsonl``, recorded by
``record.py`` there from real builds; the two ``trained-model*`` streams are written from the
protocol's description of that kind of build), rewritten for the request it was deployed with:
the recorded image references become the request's. A builder runs until the test ends it
(``finish``), or ends at once with ``auto_finish``; the engine can be taken down (``down``),
so every call raises ``BackendError`` as python-on-whales' failures do.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler.core.config import Config, HostConfig
from reconciler.edges.backend import BackendError, Builder, Output, Tell, Unschedulable, Warn
from reconciler.edges.registry import DEFAULT_PLATFORMS, RegistryError

STREAMS = Path(__file__).resolve().parent / "data" / "builder_streams"
ROLES = ("learner", "aggregator")


def recorded(name: str) -> tuple[list[Output], int]:
    """A recorded stream: its output lines and the builder's exit status."""
    lines = [json.loads(line) for line in (STREAMS / f"{name}.jsonl").read_text().splitlines()]
    *outputs, end = lines
    return [Output(o["stream"], o["line"], o["at"]) for o in outputs], int(end["exit_code"])


def result_event(outputs: list[Output]) -> dict[str, Any]:
    """The result event of a stream."""
    for output in outputs:
        if output.stream == "stdout" and '"type":"result"' in output.line:
            event: dict[str, Any] = json.loads(output.line)
            return event
    raise ValueError("the stream has no result event")


def for_request(name: str, request: dict[str, Any]) -> tuple[list[Output], int]:
    """The recorded stream ``name`` as the builder for ``request`` would have sent it."""
    outputs, exit_code = recorded(name)
    try:
        images = result_event(outputs).get("images") or {}
    except ValueError:
        images = {}
    rewritten = []
    for output in outputs:
        line = output.line
        for role, ref in images.items():
            line = line.replace(ref, request["images"].get(role, ref))
        rewritten.append(Output(output.stream, line, output.at))
    return rewritten, exit_code


@dataclass
class FakeBuilder:
    name: str
    host: HostConfig
    request: dict[str, Any]
    spec: str
    outputs: list[Output]
    exit_code: int
    finished: threading.Event = field(default_factory=threading.Event)
    unschedulable: str | None = None  # the swarm could not place it: output raises
    started: bool = True  # False: created, but its deploy was cut short before the start


class FakeImages:
    """An image store that knows the images it was told exist (and the builds pushed)."""

    def __init__(self) -> None:
        self.present: set[str] = set()
        self.down: str | None = None  # the registry's error while it is down
        self.asked: list[str] = []

    def exists(self, ref: str, platforms: tuple[str, ...] = DEFAULT_PLATFORMS) -> bool:
        self.asked.append(ref)
        if self.down is not None:
            raise RegistryError(self.down)
        return ref in self.present


class FakeBackend:
    """A compose-like backend over recorded builder streams. ``stream_for(request)`` names
    the recorded stream a deployed builder plays (default: ``success``)."""

    def __init__(self, config: Config, images: FakeImages, *,
                 stream_for: Callable[[dict[str, Any]], str] = lambda request: "success",
                 auto_finish: bool = False) -> None:
        self.hosts = {host.name: host for host in config.image_builder_hosts()}
        self.images = images
        self.stream_for = stream_for
        self.auto_finish = auto_finish
        self.builders: dict[str, FakeBuilder] = {}
        self.deployed: list[str] = []  # every deploy, in order
        self.requests: dict[str, dict[str, Any]] = {}  # builder -> its (last) request
        # builder -> (local directory, path in the builder, its file names) copied in
        self.copied_in: dict[str, list[tuple[Path, str, list[str]]]] = {}
        self.removed: list[tuple[str, int]] = []  # (builder, stop_timeout)
        self.down: str | None = None  # the engine's error while it is down
        self.unreachable: str | None = None  # pick_host's error (no host answers)
        self.refuse_deploy: str | None = None  # deploy's error (the engine refuses it)
        self.native = "linux/amd64"  # the engine's own platform
        # True: models travel as carrier images (as on a swarm); carrier -> its file names
        self.ships_models = False
        self.unschedulable_next: str | None = None  # builders deployed now are never placed
        self.shipped: dict[str, list[str]] = {}
        self.image_built = False
        self.fail_output_after: int | None = None  # output breaks off after this many lines
        self.removing: threading.Event | None = None  # set: a remove has begun
        self.hold_remove: threading.Event | None = None  # a remove waits until it is set

    # -- the Backend protocol -----------------------------------------------------------------

    def host(self, name: str) -> HostConfig | None:
        return self.hosts.get(name)

    def pick_host(self, warn: Warn) -> HostConfig:
        if self.unreachable is not None:
            raise BackendError(self.unreachable)
        return next(iter(self.hosts.values()))

    def builder_image(self, host: HostConfig, tell: Tell) -> str:
        self._check()
        if not self.image_built:
            self.image_built = True
            tell(f"built builder image flops-builder:latest on {host.name}")
        return "flops-builder:latest"

    def platform(self, host: HostConfig) -> str:
        self._check()
        return self.native

    def ship_model(self, host: HostConfig, model_dir: Path, carrier: str) -> str:
        self._check()
        if not self.ships_models:
            return ""
        self.shipped[carrier] = sorted(p.name for p in model_dir.iterdir())
        return carrier

    def deploy(self, host: HostConfig, name: str, spec_text: str, request_text: str,
               copy_in: Sequence[tuple[Path, str]] = ()) -> Builder:
        self._check()
        if self.refuse_deploy is not None:
            raise BackendError(self.refuse_deploy)
        request = json.loads(request_text)
        self.deployed.append(name)
        self.requests[name] = request
        self.copied_in[name] = [(source, target, sorted(p.name for p in source.iterdir()))
                                for source, target in copy_in]
        if name in self.builders:  # created before, never started: the deploy completes it
            self.builders[name].started = True
            return Builder(name, host, f"id-{name}")
        outputs, exit_code = for_request(self.stream_for(request), request)
        self.builders[name] = FakeBuilder(name, host, request, spec_text, outputs, exit_code,
                                          unschedulable=self.unschedulable_next)
        if self.auto_finish:
            self.finish(name)
        return Builder(name, host, f"id-{name}")

    def find(self, host: HostConfig, name: str) -> Builder | None:
        self._check()
        fake = self.builders.get(name)
        return Builder(name, host, f"id-{name}", started=fake.started) if fake else None

    def output(self, builder: Builder, *, follow: bool) -> Iterator[Output]:
        fake = self.builders[builder.name]
        if fake.unschedulable is not None:
            raise Unschedulable(fake.unschedulable)
        if follow:
            fake.finished.wait()
        elif not fake.finished.is_set():
            return
        for count, output in enumerate(fake.outputs):
            if self.fail_output_after is not None and count >= self.fail_output_after:
                raise BackendError("cannot read the builder's output: connection reset")
            self._check()
            yield output

    def exit_code(self, builder: Builder) -> int | None:
        self._check()
        fake = self.builders[builder.name]
        return fake.exit_code if fake.finished.is_set() else None

    def wait(self, builder: Builder) -> int:
        fake = self.builders[builder.name]
        fake.finished.wait()
        return fake.exit_code

    def remove(self, host: HostConfig, name: str, *, stop_timeout: int = 10) -> None:
        self._check()
        if self.removing is not None:
            self.removing.set()
        if self.hold_remove is not None:
            self.hold_remove.wait()
        fake = self.builders.pop(name, None)
        if fake is not None:
            fake.finished.set()  # a follower blocked on it sees it end
        self.removed.append((name, stop_timeout))

    # -- what a test does to the builders -------------------------------------------------------

    def finish(self, name: str) -> None:
        """The builder ends: its whole stream is there; a success pushed its images."""
        fake = self.builders[name]
        try:
            result = result_event(fake.outputs)
        except ValueError:
            result = {}
        if result.get("ok") is True:
            self.images.present.update(fake.request["images"].values())
        fake.finished.set()

    def finish_all(self) -> None:
        for name in list(self.builders):
            self.finish(name)

    def only_builder(self) -> FakeBuilder:
        (builder,) = self.builders.values()
        return builder

    def _check(self) -> None:
        if self.down is not None:
            raise BackendError(self.down)


class FakeClock:
    """Wall-clock and monotonic time that move only when the test says so."""

    def __init__(self, start: datetime = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)) -> None:
        self._now = start
        self._monotonic = 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._monotonic += seconds

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)
