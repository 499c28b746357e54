"""Builders in flight: start one, follow its output into the observer logs, record its result.

Decision: a builder serves every project whose record names it (projects with identical image
inputs share one build), and each project keeps its own cursor of builder events already in
its log. Events are written with Docker's own timestamp for the output line, so an event's
log text is the same however often it is rendered; after a crash the one event that may have
been written without its cursor being saved is recognised at the log's end and not repeated.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

from reconciler.control.book import RecordBook
from reconciler.control.outages import Outages
from reconciler.control.reports import Notice, Report, StageReport
from reconciler.control.settling import Settling
from reconciler.core import transitions
from reconciler.core.build_request import builder_spec
from reconciler.core.events import LogLine, Outcome, no_result_outcome, translate
from reconciler.core.failure import Failure, infrastructure
from reconciler.core.platforms import unbuildable
from reconciler.core.project import BuildRecord, DesiredProject
from reconciler.core.render import render_compose, render_request
from reconciler.edges.backend import PLACED, BackendError, Builder, Unschedulable
from reconciler.protocol.events import decode
from reconciler.workspace import Workspace

# One attempt's share of the observer log: at most EVENT_LIMIT events (each bounded by
# core/events.py), so about 2.5 MB whatever the builder sends; a longer line is not an event.
EVENT_LIMIT = 300
EVENT_BYTES = 1024 * 1024
NOISE_WIDTH = 1000


class BuildRunner:
    """Starts builders, follows them and records what they report.

    Where it sits: below the controller, which decides which projects need a build and calls
    ``start``, ``join``, ``stop_overdue`` and ``follow_all`` once per pass. It talks to the
    workspace's backend and changes records only through the record book. It owns the
    follower threads (one per builder) and the builders resting after their engine failed.
    """

    def __init__(self, workspace: Workspace, book: RecordBook, outages: Outages,
                 report: Report, on_finished: Callable[[], None], settling: Settling) -> None:
        self.ws = workspace
        self.settling = settling
        self.config = workspace.config
        self.clock = workspace.clock
        self.book = book
        self.outages = outages
        self.report = report
        self.on_finished = on_finished
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
        backend = self.ws.backend

        def warn(text: str) -> None:
            for project in projects:
                self.book.warn(project.name, "deploy", text)

        try:
            host = backend.pick_host(warn)
        except BackendError as error:
            self._fail_all(projects, "deploy", infrastructure(str(error)))
            return
        platforms = [p.value for p in leader.sla.supported_platforms]
        try:
            native = backend.platform(host)
        except BackendError as error:
            self._fail_all(projects, "deploy", infrastructure(str(error)))
            return
        problem = unbuildable(self.config, platforms, native, host.name)
        if problem is not None:
            self._fail_all(projects, "deploy", Failure("build", problem))
            return
        self.report(StageReport(leader.name, f"preparing builder image on {host.name}"))
        try:
            image = backend.builder_image(host, lambda text: self.report(Notice(text)))
        except BackendError as error:
            self._fail_all(projects, "deploy", infrastructure(str(error)))
            return
        try:
            ca_bundle = self._ca_bundle()
        except OSError as error:
            self._fail_all(projects, "deploy", infrastructure(
                f"cannot read [build] ca_bundle {self.config.build.ca_bundle}: "
                f"{error.strerror}; fix the path"))
            return
        spec = builder_spec(leader, commit, self.config, host, self.ws.templates,
                            ca_bundle=ca_bundle, builder_image=image,
                            stack=self.config.backend == "swarm")
        build = transitions.new_build(key=spec.build_key, name=spec.name, host=host.name,
                                      commit=commit, images=spec.request.images,
                                      leader=leader.name, now=self.clock.now())
        self.book.change(leader.name, lambda have: transitions.building(have, build))
        for rider in riders:
            self.join(rider, build)
        where = (f"as a swarm stack through manager {host.name}, placed on a node labelled "
                 "image-builder=true" if self.config.backend == "swarm" else f"on host {host.name}")
        self.report(StageReport(leader.name, f"starting builder {where}"))
        try:
            found = backend.find(host, spec.name)
            if found is None or not found.started:
                # Written before the deploy: a crash right after the builder starts must
                # not leave a builder that the log never named.
                what = ("starting builder" if found is None else "completing builder (created "
                        "but never started: a deploy cut short)")
                self.book.note(leader.name, "deploy", f"{what} {spec.name} {where}")
                backend.deploy(host, spec.name, render_compose(self.ws.templates, spec),
                               render_request(spec))
            else:  # a builder of this key exists already (a crash after deploy): adopt it
                self.book.note(leader.name, "deploy", f"adopted running builder {spec.name}")
            self.outages.recovered(f"Docker host {host.name}")
        except BackendError as error:
            self.outages.failed(f"Docker host {host.name}", str(error))
            self._fail_all(projects, "deploy", infrastructure(str(error)))

    def _ca_bundle(self) -> str:
        path = self.config.build.ca_bundle
        return Path(path).read_text(encoding="utf-8") if path else ""

    def join(self, project: DesiredProject, build: BuildRecord) -> None:
        """Let ``project`` share a builder that is already running for the same key."""
        self.book.change(project.name, lambda have: transitions.joined(have, build))
        self.book.note(project.name, "deploy", f"shares build {build.key} (builder "
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
                    self._lost_at[name] = self.clock.monotonic()
        finally:
            self.on_finished()

    def _resting(self, name: str) -> bool:
        lost = self._lost_at.get(name)
        return lost is not None and self.clock.monotonic() - lost < self.config.retry_base

    def next_wake(self) -> float | None:
        """Seconds until the runner needs a pass: the first build_timeout of a running
        builder, or the end of a resting builder's pause."""
        waits = transitions.seconds_to_timeouts(self.book.snapshot().values(),
                                                self.config.build_timeout, self.clock.now())
        with self._lock:
            for name, lost in list(self._lost_at.items()):
                rest = self.config.retry_base - (self.clock.monotonic() - lost)
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
        backend = self.ws.backend
        host = backend.host(build.host)
        endpoint = f"Docker host {build.host}"
        try:
            builder = backend.find(host, name) if host else None
            if builder is None or not builder.started:  # gone, or its deploy was cut short
                self._restart(name)
                return True
            if only_if_exited and backend.exit_code(builder) is None:
                return False
            outcome = self._collect(name, builder)
            self.outages.recovered(endpoint)
        except Unschedulable as error:
            if self.book.subscribers(name):
                self._fail_subscribers(name, infrastructure(str(error)), "deploy")
                self.take_down(build, "it could not be placed")
            return True
        except BackendError as error:
            if not self.book.subscribers(name):
                return False  # the build was ended on purpose (timeout, cancel): not an outage
            if self.outages.failed(endpoint, str(error)):
                for record in self.book.subscribers(name):
                    self.book.warn(record.project, "builder",
                                   f"cannot follow builder {name}: {error}")
            return False
        with self.settling.cleaning_up():
            if not self.book.subscribers(name):
                return False  # nobody waits for this result any more (timeout, cancel, prune)
            self._record(name, outcome)
            self.take_down(build, "its result is recorded")
        return True

    def _collect(self, name: str, builder: Builder) -> Outcome:
        """Read the builder's output to its end: each event into the logs of the projects it
        serves, and the result as the build's outcome."""
        backend = self.ws.backend
        outcome: Outcome | None = None
        noise: deque[str] = deque(maxlen=20)
        index = 0
        first_seen: set[str] = set()
        for output in backend.output(builder, follow=True):
            if output.stream == PLACED:
                self._placed(name, output.line)
                continue
            event = decode(output.line) if output.stream == "stdout" \
                and len(output.line) <= EVENT_BYTES else None
            if event is None:
                if output.line.strip():
                    noise.append(output.line[:NOISE_WIDTH])
                continue
            lines, result = translate(event)
            if index >= EVENT_LIMIT and result is None:
                lines = [LogLine("WARN", "builder", f"the builder sent more than {EVENT_LIMIT} "
                                 "events; the rest are not logged (its result is)")
                         ] if index == EVENT_LIMIT else []
            for project in [r.project for r in self.book.subscribers(name)]:
                self._log_event(project, index, lines, output.at, first_seen)
            outcome = result or outcome
            index += 1
        exit_code = backend.wait(builder)
        return outcome or no_result_outcome(exit_code, list(noise))

    def _placed(self, name: str, node: str) -> None:
        """Log once per project where the swarm placed the builder's task."""
        node_id, _, hostname = node.partition(" ")
        for record in self.book.subscribers(name):
            if record.build is not None and record.build.node != node:
                self.book.note(record.project, "deploy",
                               f"builder task placed on node {node_id} ({hostname})")
                self.book.change(record.project, lambda have: transitions.placed(have, node))

    def _log_event(self, project: str, index: int, lines: list[LogLine], at: str,
                   first_seen: set[str]) -> None:
        record = self.book.get(project)
        build = record.build if record is not None else None
        if build is None or index < build.events_logged or not lines:
            return
        # The first new event after a (re)start may have been written just before a crash.
        resumed = project not in first_seen and index == build.events_logged and index > 0
        first_seen.add(project)
        written = self.book.events(project, lines, at, resumed=resumed)
        if written and lines[0].message == "started":
            self.report(StageReport(project, lines[0].stage))
        self.book.change(project, lambda have: transitions.events_logged(have, index + 1))

    def _record(self, name: str, outcome: Outcome) -> None:
        now = self.clock.now()
        for record in self.book.subscribers(name):
            if outcome.failure is None:
                final = transitions.succeeded(record, outcome)
                if record.build and record.build.leader not in (None, record.project):
                    self.book.note(record.project, "result",
                                   f"served by build {record.build.key}")
            else:
                final = transitions.failed(record, outcome.failure, now, self.config)
                self.book.fail(record.project, "result", transitions.retry_note(final))
            self.book.put(final)
            self.report(StageReport(record.project, final.phase.value))

    def _restart(self, name: str) -> None:
        """The builder is gone before reporting, or was never started (a crash during its
        deploy): queue its projects again; the next pass starts (or completes) a builder."""
        for record in self.book.subscribers(name):
            self.book.warn(record.project, "builder",
                           f"builder {name} not found running; the build is started again")
            self.book.change(record.project, transitions.waiting)

    # -- taking down ----------------------------------------------------------------------------

    def take_down(self, build: BuildRecord, why: str, project: str | None = None,
                  *, kill: bool = False) -> None:
        project = project or build.leader or ""
        backend = self.ws.backend
        host = backend.host(build.host)
        if host is None:
            self.book.warn(project, "cleanup", f"host {build.host} left the inventory; "
                           f"remove builder {build.name} there by hand")
            return
        try:
            backend.remove(host, build.name, stop_timeout=0 if kill else 10)
        except BackendError as error:
            self.book.warn(project, "cleanup", str(error))
            return
        self.book.note(project, "cleanup", f"builder {build.name} removed ({why})")

    def stop_overdue(self) -> None:
        """Fail the projects of builders that ran past build_timeout, then kill the builders.

        The records are written first, so a follower that sees its builder vanish finds no
        project waiting for it, and a crash in between leaves nothing to build twice.
        """
        failure = Failure("build", f"the builder ran longer than build_timeout "
                          f"({self.config.build_timeout:g}s) and was stopped; raise "
                          "build_timeout or make the build faster")
        now = self.clock.now()
        for name in sorted(self.running_builders()):
            subscribers = self.book.subscribers(name)
            build = subscribers[0].build if subscribers else None
            if build is None or not transitions.overdue(build, self.config.build_timeout, now):
                continue
            self._fail_subscribers(name, failure, "timeout")
            self.take_down(build, "build_timeout exceeded", subscribers[0].project, kill=True)

    def _fail_subscribers(self, name: str, failure: Failure, stage: str) -> None:
        now = self.clock.now()
        for record in self.book.subscribers(name):
            final = transitions.failed(record, failure, now, self.config)
            self.book.fail(record.project, stage, transitions.retry_note(final))
            self.book.put(final)
            self.report(StageReport(record.project, "failed"))

    def _fail_all(self, projects: list[DesiredProject], stage: str, failure: Failure) -> None:
        now = self.clock.now()
        for project in projects:
            record = self.book.get(project.name)
            if record is None:
                continue
            final = transitions.failed(record, failure, now, self.config)
            if record.error != failure.text:
                self.book.fail(project.name, stage, failure.text)
            self.book.put(final)
            self.report(StageReport(project.name, "failed"))
