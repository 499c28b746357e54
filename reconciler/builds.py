"""Builders in flight: start one, follow its output into the observer logs, record its result.

Decision: a builder serves every project whose record names it (projects with identical image
inputs share one build), and each project keeps its own cursor of builder events already in
its log. Events are written with Docker's own timestamp for the output line, so an event's
log text is the same however often it is rendered; after a crash the one event that may have
been written without its cursor being saved is recognised at the log's end and not repeated.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from jinja2 import Environment

from reconciler.builder.protocol import decode
from reconciler.core.build_request import builder_spec
from reconciler.core.config import Config
from reconciler.core.events import LogLine, Outcome, event_lines, no_result_outcome, outcome_of
from reconciler.core.project import BuildRecord, DesiredProject, Phase, ProjectRecord
from reconciler.core.render import render_compose, render_request
from reconciler.core.retry import failed_record
from reconciler.edges.backend import PLACED, Backend, BackendError, Builder, Unschedulable
from reconciler.edges.clock import utc_now_iso
from reconciler.edges.compose_backend import ComposeBackend
from reconciler.edges.observer import format_event
from reconciler.edges.swarm_backend import SwarmBackend
from reconciler.records import RecordBook

Report = Callable[[str, str], None]
# One attempt's share of the observer log: at most EVENT_LIMIT events (each bounded by
# core/events.py), so about 2.5 MB whatever the builder sends; a longer line is not an event.
EVENT_LIMIT = 300
EVENT_BYTES = 1024 * 1024
NOISE_WIDTH = 1000


@dataclass
class Outages:
    """Endpoints that are down, so each outage is reported once, not once per pass."""

    down: dict[str, str]

    def failed(self, endpoint: str, error: str) -> bool:
        """Record a failure; True when it starts a new outage (the caller reports it)."""
        new = endpoint not in self.down
        self.down[endpoint] = error
        if new:
            print(f"reconciler: {endpoint} is unavailable: {error}", file=sys.stderr)
        return new

    def recovered(self, endpoint: str) -> None:
        if self.down.pop(endpoint, None) is not None:
            print(f"reconciler: {endpoint} is available again", file=sys.stderr)


class BuildRunner:
    def __init__(
        self,
        config: Config,
        book: RecordBook,
        env: Environment,
        template_dirs: list[Path],
        report: Report,
        on_finished: Callable[[], None],
    ) -> None:
        self.config = config
        self.book = book
        self.env = env
        self.report = report
        self.on_finished = on_finished
        backend_type = SwarmBackend if config.backend == "swarm" else ComposeBackend
        self.backend: Backend = backend_type(config, book.store.build_dir, template_dirs)
        self.outages = Outages({})
        self._followers: dict[str, threading.Thread] = {}
        self._lost_at: dict[str, float] = {}  # builder -> when following it failed (outage)
        self._lock = threading.Lock()

    # -- starting -----------------------------------------------------------------------------

    def running_builders(self) -> set[str]:
        return {r.build.name for r in self.book.matching(lambda r: r.build is not None)
                if r.build is not None}

    def start(self, leader: DesiredProject, riders: list[DesiredProject], commit: str) -> None:
        """Start one builder for ``leader``; ``riders`` have the same build key and share it."""
        projects = [leader, *riders]

        def warn(text: str) -> None:
            for project in projects:
                self.book.log.warn(project.name, "deploy", text)

        try:
            host = self.backend.pick_host(warn)
        except BackendError as error:
            self._fail_all(projects, "deploy", f"infrastructure: {error}")
            return
        platforms = [p.value for p in leader.sla.supported_platforms]
        if len(platforms) > 1 and not self.backend.has_buildx(host):
            self._fail_all(projects, "deploy", (
                f"build: multi-platform images ({', '.join(platforms)}) need docker buildx on "
                f"the image-builder host {host.name}, which does not have it; install the "
                "buildx plugin there or request a single platform in supported_platforms"))
            return
        self.report(leader.name, f"preparing builder image on {host.name}")
        try:
            image = self.backend.builder_image(host)
        except BackendError as error:
            self._fail_all(projects, "deploy", f"infrastructure: {error}")
            return
        try:
            ca_bundle = self._ca_bundle()
        except OSError as error:
            self._fail_all(projects, "deploy", f"infrastructure: cannot read [build] ca_bundle "
                           f"{self.config.build.ca_bundle}: {error.strerror}; fix the path")
            return
        spec = builder_spec(leader, commit, self.config, host, self.env, ca_bundle=ca_bundle,
                            builder_image=image, stack=self.config.backend == "swarm")
        build = BuildRecord(
            key=spec.build_key, name=spec.name, host=host.name, commit=commit,
            images=spec.request["images"], started_at=utc_now_iso(), leader=leader.name,
        )
        self.book.change(leader.name, phase=Phase.building, build=build, served_by=build.key)
        for rider in riders:
            self.join(rider, build)
        where = (f"as a swarm stack through manager {host.name}, placed on a node labelled "
                 "image-builder=true" if self.config.backend == "swarm" else f"on host {host.name}")
        self.report(leader.name, f"starting builder {where}")
        try:
            found = self.backend.find(host, spec.name)
            if found is None or not found.started:
                # Written before the deploy: a crash right after the builder starts must
                # not leave a builder that the log never named.
                what = ("starting builder" if found is None else "completing builder (created "
                        "but never started: a deploy cut short)")
                self.book.log.info(leader.name, "deploy", f"{what} {spec.name} {where}")
                self.backend.deploy(host, spec.name, render_compose(self.env, spec),
                                    render_request(spec))
            else:  # a builder of this key exists already (a crash after deploy): adopt it
                self.book.log.info(leader.name, "deploy", f"adopted running builder {spec.name}")
            self.outages.recovered(f"Docker host {host.name}")
        except BackendError as error:
            self.outages.failed(f"Docker host {host.name}", str(error))
            self._fail_all(projects, "deploy", f"infrastructure: {error}")

    def _ca_bundle(self) -> str:
        path = self.config.build.ca_bundle
        return Path(path).read_text(encoding="utf-8") if path else ""

    def join(self, project: DesiredProject, build: BuildRecord) -> None:
        """Let ``project`` share a builder that is already running for the same key."""
        self.book.change(project.name, phase=Phase.building,
                         build=build.model_copy(update={"events_logged": 0}),
                         served_by=build.key)
        self.book.log.info(project.name, "deploy", f"shares build {build.key} (builder "
                           f"{build.name}, started for {build.leader or 'another project'})")

    # -- following ----------------------------------------------------------------------------

    def follow_all(self, *, background: bool) -> None:
        """Follow every recorded builder: in threads (watch, apply --wait), or, without
        ``background``, harvest only the builders that have already exited."""
        for name in sorted(self.running_builders()):
            if background:
                with self._lock:
                    thread = self._followers.get(name)
                    if (thread is not None and thread.is_alive()) or self._resting(name):
                        continue
                    thread = threading.Thread(target=self._follow_guarded, args=(name,),
                                              name=f"follow-{name}", daemon=True)
                    self._followers[name] = thread
                thread.start()
            else:
                self._follow(name, only_if_exited=True)

    def following(self) -> bool:
        with self._lock:
            return any(t.is_alive() for t in self._followers.values())

    def _follow_guarded(self, name: str) -> None:
        """Follow in a thread, and wake the loop when the thread ends. After an outage the
        builder rests for retry_base before it is followed again, so a loop woken by its
        follower does not hammer an engine that is down."""
        try:
            followed = self._follow(name, only_if_exited=False)
            with self._lock:
                if followed:
                    self._lost_at.pop(name, None)
                else:
                    self._lost_at[name] = time.monotonic()
        finally:
            self.on_finished()

    def _resting(self, name: str) -> bool:
        lost = self._lost_at.get(name)
        return lost is not None and time.monotonic() - lost < self.config.retry_base

    def next_wake(self) -> float | None:
        """Seconds until the runner needs a pass: the first build_timeout of a running
        builder, or the end of a resting builder's pause."""
        starts = [
            datetime.fromisoformat(r.build.started_at.replace("Z", "+00:00"))
            for r in self.book.matching(lambda r: r.build is not None) if r.build is not None
        ]
        waits = [self.config.build_timeout - (datetime.now(UTC) - s).total_seconds()
                 for s in starts]
        with self._lock:
            for name, lost in list(self._lost_at.items()):
                rest = self.config.retry_base - (time.monotonic() - lost)
                if rest > 0:
                    waits.append(rest)
                else:
                    del self._lost_at[name]
        # At least a second: an overdue builder that cannot be stopped (its engine is down)
        # must not turn the loop into a busy one.
        return max(1.0, min(waits)) if waits else None

    def _follow(self, name: str, *, only_if_exited: bool) -> bool:
        """Follow one builder; True when its projects' records changed."""
        subscribers = self.book.subscribers(name)
        if not subscribers or subscribers[0].build is None:
            return False
        build = subscribers[0].build
        host = self.backend.host(build.host)
        endpoint = f"Docker host {build.host}"
        try:
            builder = self.backend.find(host, name) if host else None
            if builder is None or not builder.started:  # gone, or its deploy was cut short
                self._restart(name, build)
                return True
            if only_if_exited and self.backend.exit_code(builder) is None:
                return False
            outcome = self._collect(name, builder, build)
            self.outages.recovered(endpoint)
        except Unschedulable as error:
            if self.book.subscribers(name):
                self._fail_subscribers(name, f"infrastructure: {error}", "deploy")
                self.take_down(build, "it could not be placed")
            return True
        except BackendError as error:
            if not self.book.subscribers(name):
                return False  # the build was ended on purpose (timeout, cancel): not an outage
            if self.outages.failed(endpoint, str(error)):
                for record in self.book.subscribers(name):
                    self.book.log.warn(record.project, "builder",
                                       f"cannot follow builder {name}: {error}")
            return False
        if not self.book.subscribers(name):
            return False  # nobody waits for this result any more (timeout, cancel, prune)
        self._record(name, outcome)
        self.take_down(build, "its result is recorded")
        return True

    def _collect(self, name: str, builder: Builder, build: BuildRecord) -> Outcome:
        outcome: Outcome | None = None
        noise: deque[str] = deque(maxlen=20)
        index = 0
        first_seen: set[str] = set()
        for output in self.backend.output(builder, follow=True):
            if output.stream == PLACED:
                self._placed(name, output.line)
                continue
            event = decode(output.line) if output.stream == "stdout" \
                and len(output.line) <= EVENT_BYTES else None
            if event is None:
                if output.line.strip():
                    noise.append(output.line[:NOISE_WIDTH])
                continue
            lines = event_lines(event)
            if index >= EVENT_LIMIT and event.get("type") != "result":
                lines = [LogLine("WARN", "builder", f"the builder sent more than {EVENT_LIMIT} "
                                 "events; the rest are not logged (its result is)")
                         ] if index == EVENT_LIMIT else []
            for record in self.book.subscribers(name):
                self._log_event(record, index, lines, output.at, first_seen)
            if event.get("type") == "result":
                outcome = outcome_of(event)
            index += 1
        exit_code = self.backend.wait(builder)
        return outcome or no_result_outcome(exit_code, list(noise))

    def _placed(self, name: str, node: str) -> None:
        """Log once per project where the swarm placed the builder's task."""
        node_id, _, hostname = node.partition(" ")
        for record in self.book.subscribers(name):
            if record.build is not None and record.build.node != node:
                self.book.log.info(record.project, "deploy",
                                   f"builder task placed on node {node_id} ({hostname})")
                self.book.change(record.project,
                                 build=record.build.model_copy(update={"node": node}))

    def _log_event(self, record: ProjectRecord, index: int, lines: list[LogLine],
                   at: str, first_seen: set[str]) -> None:
        build = record.build
        if build is None or index < build.events_logged or not lines:
            return
        text = "".join(format_event(at, line.level, line.stage, line.message, line.details)
                       for line in lines)
        # The first new event after a (re)start may have been written just before a crash.
        resumed = record.project not in first_seen and index == build.events_logged
        first_seen.add(record.project)
        if not (resumed and index > 0 and self.book.log.ends_with(record.project, text)):
            for line in lines:
                self.book.write(record.project, line, at=at)
            if lines and lines[0].message == "started":
                self.report(record.project, lines[0].stage)
        self.book.change(record.project,
                         build=build.model_copy(update={"events_logged": index + 1}))

    def _record(self, name: str, outcome: Outcome) -> None:
        now = datetime.now(UTC)
        for record in self.book.subscribers(name):
            if outcome.ok:
                final = record.model_copy(update={
                    "phase": Phase.ready, "images": outcome.images or record.build.images
                    if record.build else outcome.images,
                    "digests": outcome.digests, "timings": outcome.timings,
                    "repairs": list(outcome.repairs),
                    "repair_diffs": list(outcome.repair_diffs),
                    "base_image": outcome.base_image, "error": None, "build": None,
                    "attempts": 0, "retry_at": None, "exhausted": False, "waits": 0,
                })
                if record.build and record.build.leader not in (None, record.project):
                    self.book.log.info(record.project, "result",
                                       f"served by build {record.build.key}")
            else:
                final = failed_record(record, outcome.error or "build failed", now, self.config)
                self.book.log.error(record.project, "result", _retry_note(final))
            self.book.put(final)
            self.report(record.project, final.phase.value)

    def _restart(self, name: str, build: BuildRecord) -> None:
        """The builder is gone before reporting, or was never started (a crash during its
        deploy): queue its projects again; the next pass starts (or completes) a builder."""
        for record in self.book.subscribers(name):
            self.book.log.warn(record.project, "builder",
                               f"builder {name} not found running; the build is started again")
            self.book.change(record.project, phase=Phase.pending, build=None)

    # -- taking down ----------------------------------------------------------------------------

    def take_down(self, build: BuildRecord, why: str, project: str | None = None,
                  *, kill: bool = False) -> None:
        project = project or build.leader or ""
        host = self.backend.host(build.host)
        if host is None:
            self.book.log.warn(project, "cleanup", f"host {build.host} left the inventory; "
                               f"remove builder {build.name} there by hand")
            return
        try:
            self.backend.remove(host, build.name, stop_timeout=0 if kill else 10)
        except BackendError as error:
            self.book.log.warn(project, "cleanup", str(error))
            return
        self.book.log.info(project, "cleanup", f"builder {build.name} removed ({why})")

    def stop_overdue(self) -> None:
        """Fail the projects of builders that ran past build_timeout, then kill the builders.

        The records are written first, so a follower that sees its builder vanish finds no
        project waiting for it, and a crash in between leaves nothing to build twice.
        """
        error = (f"build: the builder ran longer than build_timeout "
                 f"({self.config.build_timeout:g}s) and was stopped; raise build_timeout or "
                 "make the build faster")
        for name in sorted(self.running_builders()):
            subscribers = self.book.subscribers(name)
            build = subscribers[0].build if subscribers else None
            if build is None or not _past(build.started_at, self.config.build_timeout):
                continue
            self._fail_subscribers(name, error, "timeout")
            self.take_down(build, "build_timeout exceeded", subscribers[0].project, kill=True)

    def _fail_subscribers(self, name: str, error: str, stage: str) -> None:
        now = datetime.now(UTC)
        for record in self.book.subscribers(name):
            final = failed_record(record, error, now, self.config)
            self.book.log.error(record.project, stage, _retry_note(final))
            self.book.put(final)
            self.report(record.project, "failed")

    def _fail_all(self, projects: list[DesiredProject], stage: str, error: str) -> None:
        now = datetime.now(UTC)
        for project in projects:
            record = self.book.get(project.name)
            if record is None:
                continue
            final = failed_record(record.model_copy(update={"build": None}), error, now,
                                  self.config)
            if record.error != error:
                self.book.log.error(project.name, stage, error)
            self.book.put(final)
            self.report(project.name, "failed")


def _retry_note(record: ProjectRecord) -> str:
    if record.exhausted:
        return (f"{record.error}; retries exhausted after {record.attempts} attempts: change "
                f"the image inputs or run `reconciler retry {record.project}`")
    return f"{record.error}; next attempt after {record.retry_at}"


def _past(started_at: str, seconds: float) -> bool:
    started = datetime.fromisoformat(started_at.replace("Z", "+00:00"))
    return (datetime.now(UTC) - started).total_seconds() > seconds
