"""One reconcile pass: desired + recorded -> plan -> actions -> new records and observer lines.

Decision: the pass is level-triggered and restartable. Every step first writes what it is
about to depend on (a `building` record names its builder before anything waits on it), so a
pass killed at any point is continued by the next one: running builders are followed again,
finished ones are harvested from their output, and events already logged are skipped.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment

from reconciler.builder.protocol import decode
from reconciler.core.build_request import builder_spec
from reconciler.core.config import Config, HostConfig
from reconciler.core.events import LogLine, event_lines, no_result_outcome, outcome_of
from reconciler.core.naming import image_refs
from reconciler.core.plan import Action, PlanItem, make_plan
from reconciler.core.project import (
    BuildRecord,
    Desired,
    DesiredProject,
    InvalidProject,
    Phase,
    ProjectRecord,
)
from reconciler.core.render import make_environment, render_compose
from reconciler.edges.builder_image import BuilderImageError, ensure_builder_image
from reconciler.edges.clock import utc_now_iso
from reconciler.edges.compose_backend import BackendError, Builder, ComposeBackend
from reconciler.edges.desired import load_desired
from reconciler.edges.git_remote import GitRemoteError, resolve_commit
from reconciler.edges.observer import ObserverLog
from reconciler.edges.registry import EngineImages, ImageStore, RegistryError, RegistryImages
from reconciler.edges.state import StateStore

Report = Callable[[str, str], None]


def _silent(project: str, text: str) -> None:
    return None


@dataclass
class Workspace:
    """The places a pass reads and writes, and the configuration it runs with."""

    config: Config
    desired_dir: Path
    store: StateStore
    template_dirs: list[Path]

    @property
    def observer(self) -> ObserverLog:
        return ObserverLog(self.store.observer_path)

    def templates(self) -> Environment:
        return make_environment(self.template_dirs)

    def load(self) -> tuple[dict[str, Desired], dict[str, ProjectRecord]]:
        desired = load_desired(self.desired_dir, allow_file_repos=self.config.allow_file_repos)
        return desired, self.store.load_all()

    def plan(self) -> list[PlanItem]:
        return make_plan(*self.load())


class Pass:
    """One apply. ``run(wait=True)`` returns once every build it started or adopted is done."""

    def __init__(self, workspace: Workspace, report: Report = _silent) -> None:
        self.ws = workspace
        self.config = workspace.config
        self.store = workspace.store
        self.log = workspace.observer
        self.report = report
        self.env = workspace.templates()
        self.backend = ComposeBackend(self.config.image_builder_hosts(), self.store.build_dir)
        self._images: ImageStore | None = None
        self._builder_images_ready: set[str] = set()
        self._image_lock = threading.Lock()

    # -- the pass -------------------------------------------------------------------------

    def run(self, *, wait: bool) -> dict[str, ProjectRecord]:
        desired, recorded = self.ws.load()
        plan = make_plan(desired, recorded)
        to_follow: list[ProjectRecord] = []
        to_build: list[tuple[DesiredProject, ProjectRecord, str]] = []
        for item in plan:
            want, have = desired.get(item.project), recorded.get(item.project)
            if item.action is Action.noop:
                continue
            if item.action is Action.invalid:
                assert isinstance(want, InvalidProject)
                recorded[item.project] = self._invalid(want, have)
            elif item.action is Action.delete:
                assert have is not None
                self._delete(have)
                del recorded[item.project]
            elif item.action is Action.update:
                assert isinstance(want, DesiredProject) and have is not None
                recorded[item.project] = self._update(want, have, item)
            else:
                assert isinstance(want, DesiredProject)
                record = self._stage2_or_adopt(want, have, item, to_follow, to_build)
                recorded[item.project] = record
        self._run_builds(to_follow, to_build, recorded, wait=wait)
        return recorded

    def _stage2_or_adopt(
        self,
        want: DesiredProject,
        have: ProjectRecord | None,
        item: PlanItem,
        to_follow: list[ProjectRecord],
        to_build: list[tuple[DesiredProject, ProjectRecord, str]],
    ) -> ProjectRecord:
        running = have is not None and have.phase is Phase.building and have.build is not None
        if running and have is not None and have.image_digest == want.image_digest:
            to_follow.append(have)
            return have
        if running and have is not None and have.build is not None:
            self._take_down(want.name, have.build, "the image inputs changed")
        self.log.info(want.name, "plan", f"{item.action.value}: {item.reason}")
        record = self._stage2(want, have)
        if record.phase is Phase.pending and record.commit:
            to_build.append((want, record, record.commit))
        return record

    # -- stage 2: to build or not to build --------------------------------------------------

    def _stage2(self, want: DesiredProject, have: ProjectRecord | None) -> ProjectRecord:
        name, sla = want.name, want.sla
        self.report(name, "resolving ref")
        try:
            commit = resolve_commit(
                sla.ml_repo_url, sla.ml_repo_ref, timeout=self.config.git_timeout
            )
        except GitRemoteError as error:
            return self._fail(want, None, "resolve", f"repo: {error}")
        ref = sla.ml_repo_ref or "HEAD"
        self.log.info(name, "resolve", f"{ref} of {sla.ml_repo_url} is {commit}")
        refs = image_refs(self.config.image_prefix, sla.ml_repo_url, commit)
        self.report(name, "checking registry")
        try:
            store = self._image_store()
            present = {role: store.exists(ref) for role, ref in refs.items()}
        except (RegistryError, BackendError) as error:
            return self._fail(want, commit, "registry", f"infrastructure: {error}")
        if all(present.values()):
            self.log.info(name, "registry", "images exist, no build needed: " + ", ".join(
                refs[role] for role in sorted(refs)))
            previous = have if have is not None and have.commit == commit else None
            return self._save(
                want,
                Phase.ready,
                commit=commit,
                images=refs,
                digests=previous.digests if previous else {},
                timings=previous.timings if previous else {},
                repairs=previous.repairs if previous else [],
            )
        missing = ", ".join(refs[role] for role, ok in sorted(present.items()) if not ok)
        self.log.info(name, "registry", f"missing: {missing}; a build is needed")
        return self._save(want, Phase.pending, commit=commit, images=refs)

    def _image_store(self) -> ImageStore:
        if self._images is None:
            if self.config.local_registry:
                hosts = self.config.image_builder_hosts()
                if not hosts:
                    raise BackendError(_NO_HOST)
                self._images = EngineImages(hosts[0].docker_host)
            else:
                self._images = RegistryImages(
                    self.config.registry, timeout=self.config.registry_timeout
                )
        return self._images

    # -- stage 3: builders ------------------------------------------------------------------

    def _run_builds(
        self,
        to_follow: list[ProjectRecord],
        to_build: list[tuple[DesiredProject, ProjectRecord, str]],
        recorded: dict[str, ProjectRecord],
        *,
        wait: bool,
    ) -> None:
        if not wait:
            for record in to_follow:
                recorded[record.project] = self._harvest(record, follow=False)
            running = sum(1 for r in recorded.values() if r.phase is Phase.building)
            for want, record, commit in to_build:
                if running >= self.config.max_concurrent_builds:
                    self.log.info(want.name, "queue", "waiting for a free build slot")
                    continue
                recorded[want.name] = self._start(want, record, commit)
                running += recorded[want.name].phase is Phase.building
            return
        for want, _, _ in to_build:
            self.report(want.name, "queued for a build slot")

        def follow(record: ProjectRecord) -> None:
            recorded[record.project] = self._harvest(record, follow=True)

        def build(job: tuple[DesiredProject, ProjectRecord, str]) -> None:
            want, record, commit = job
            started = self._start(want, record, commit)
            recorded[want.name] = started
            if started.phase is Phase.building:
                follow(started)

        with ThreadPoolExecutor(max_workers=self.config.max_concurrent_builds) as pool:
            futures = [pool.submit(follow, r) for r in to_follow]
            futures += [pool.submit(build, job) for job in to_build]
            for future in futures:
                future.result()

    def _start(self, want: DesiredProject, record: ProjectRecord, commit: str) -> ProjectRecord:
        hosts = self.config.image_builder_hosts()
        if not hosts:
            return self._fail(want, commit, "deploy", f"infrastructure: {_NO_HOST}", record)
        host = hosts[0]
        self.report(want.name, f"preparing builder image on {host.name}")
        try:
            self._ensure_builder_image(host)
        except BuilderImageError as error:
            return self._fail(want, commit, "deploy", f"infrastructure: {error}", record)
        spec = builder_spec(want, commit, self.config, host, self.env)
        build = BuildRecord(
            key=spec.build_key,
            name=spec.name,
            host=host.name,
            commit=commit,
            images=record.images,
            started_at=utc_now_iso(),
        )
        building = self._save(
            want, Phase.building, commit=commit, images=record.images, build=build
        )
        self.report(want.name, f"starting builder on {host.name}")
        try:
            self.backend.deploy(host, spec.name, render_compose(self.env, spec))
        except BackendError as error:
            return self._fail(want, commit, "deploy", f"infrastructure: {error}", building)
        self.log.info(want.name, "deploy", f"builder {spec.name} started on host {host.name}")
        return building

    def _ensure_builder_image(self, host: HostConfig) -> None:
        with self._image_lock:
            if host.name in self._builder_images_ready:
                return
            built = ensure_builder_image(
                host.docker_host,
                self.config.builder.image,
                self.config.builder.base_image,
                self.ws.template_dirs,
                force=False,
            )
            if built:
                print(f"built builder image {self.config.builder.image} on {host.name}")
            self._builder_images_ready.add(host.name)

    def _harvest(self, record: ProjectRecord, *, follow: bool) -> ProjectRecord:
        """Log the builder's new events; once it has exited, record its result and remove it."""
        build = record.build
        assert build is not None
        name = record.project
        host = self.backend.host(build.host)
        try:
            builder = self.backend.find(host, build.name) if host else None
            if builder is None or host is None:
                return self._finish(record, "builder", "infrastructure: the builder "
                                    f"{build.name} disappeared before reporting; it is rebuilt "
                                    "on the next pass")
            if not follow and self.backend.exit_code(builder) is None:
                return record
            return self._collect(record, builder)
        except BackendError as error:
            self.log.warn(name, "builder", f"cannot follow builder {build.name}: {error}")
            return record

    def _collect(self, record: ProjectRecord, builder: Builder) -> ProjectRecord:
        build = record.build
        assert build is not None
        name = record.project
        outcome = None
        noise: deque[str] = deque(maxlen=20)
        index = 0
        for output in self.backend.output(builder, follow=True):
            event = decode(output.line) if output.stream == "stdout" else None
            if event is None:
                if output.line.strip():
                    noise.append(output.line)
                continue
            if index >= build.events_logged:
                for line in event_lines(event):
                    self._write(name, line)
                    if line.message == "started":
                        self.report(name, line.stage)
                build.events_logged = index + 1
                self.store.save(record)
            if event.get("type") == "result":
                outcome = outcome_of(event)
            index += 1
        exit_code = self.backend.wait(builder)
        if outcome is None:
            outcome = no_result_outcome(exit_code, list(noise))
            self.log.error(name, "builder", outcome.error or "", list(noise))
        if outcome.ok:
            final = record.model_copy(update={
                "phase": Phase.ready, "images": outcome.images or build.images,
                "digests": outcome.digests, "timings": outcome.timings,
                "repairs": list(outcome.repairs), "error": None, "build": None,
                "updated_at": utc_now_iso(),
            })
        else:
            final = record.model_copy(update={
                "phase": Phase.failed, "error": outcome.error, "timings": outcome.timings,
                "build": None, "updated_at": utc_now_iso(),
            })
        self.store.save(final)
        self.report(name, final.phase.value)
        self._take_down(name, build, "its result is recorded")
        return final

    def _finish(self, record: ProjectRecord, stage: str, error: str) -> ProjectRecord:
        self.log.error(record.project, stage, error)
        final = record.model_copy(update={
            "phase": Phase.failed, "error": error, "build": None, "updated_at": utc_now_iso()})
        self.store.save(final)
        return final

    def _take_down(self, project: str, build: BuildRecord, why: str) -> None:
        host = self.backend.host(build.host)
        if host is None:
            self.log.warn(project, "cleanup", f"host {build.host} left the inventory; "
                          f"remove builder {build.name} there by hand")
            return
        try:
            self.backend.remove(host, build.name)
        except BackendError as error:
            self.log.warn(project, "cleanup", str(error))
            return
        self.log.info(project, "cleanup", f"builder {build.name} removed ({why})")

    # -- records ----------------------------------------------------------------------------

    def _invalid(self, want: InvalidProject, have: ProjectRecord | None) -> ProjectRecord:
        if have is not None and have.phase is Phase.invalid and have.error == want.error:
            return have
        self.log.error(want.name, "validate", want.error)
        if have is not None and have.build is not None:
            self._take_down(want.name, have.build, "the SLA became invalid")
        record = ProjectRecord(
            project=want.name, phase=Phase.invalid, sla_file=want.sla_file,
            error=want.error, updated_at=utc_now_iso(),
            commit=have.commit if have else None,
            images=have.images if have else {},
        )
        self.store.save(record)
        self.report(want.name, "invalid")
        return record

    def _delete(self, have: ProjectRecord) -> None:
        if have.build is not None:
            self._take_down(have.project, have.build, "its SLA file was removed")
        images = ", ".join(have.images.values()) or "none"
        self.log.info(have.project, "prune", f"SLA file {have.sla_file} removed; project "
                      f"record deleted; its images stay in the registry ({images})")
        self.store.delete(have.project)

    def _update(self, want: DesiredProject, have: ProjectRecord, item: PlanItem) -> ProjectRecord:
        self.log.info(want.name, "update", item.reason)
        record = have.model_copy(update={
            "sla": want.sla_dump, "sla_digest": want.sla_digest, "sla_file": want.sla_file,
            "updated_at": utc_now_iso()})
        self.store.save(record)
        return record

    def _fail(self, want: DesiredProject, commit: str | None, stage: str, error: str,
              previous: ProjectRecord | None = None) -> ProjectRecord:
        self.log.error(want.name, stage, error)
        self.report(want.name, "failed")
        images = previous.images if previous else {}
        return self._save(want, Phase.failed, commit=commit, images=images, error=error)

    def _save(self, want: DesiredProject, phase: Phase, *, commit: str | None,
              images: dict[str, str], error: str | None = None,
              build: BuildRecord | None = None, digests: dict[str, str] | None = None,
              timings: dict[str, float] | None = None,
              repairs: list[str] | None = None) -> ProjectRecord:
        record = ProjectRecord(
            project=want.name, phase=phase, sla_file=want.sla_file, sla=want.sla_dump,
            sla_digest=want.sla_digest, image_digest=want.image_digest, commit=commit,
            images=images, digests=digests or {}, timings=timings or {},
            repairs=repairs or [], error=error, build=build, updated_at=utc_now_iso(),
        )
        self.store.save(record)
        return record

    def _write(self, project: str, line: LogLine) -> None:
        self.log.write(project, line.level, line.stage, line.message, line.details)


_NO_HOST = (
    "no image-builder host: no [[hosts]] entry has addons = [\"image-builder\"]; "
    "add the addon to a host in the configuration"
)
