"""The controller: reconcile passes (desired + recorded -> plan -> actions), once or forever.

Decision: the pass is level-triggered and restartable, and it never waits for a build: it
starts builders and leaves them to follower threads (``BuildRunner``), which record results
and wake the loop. Every step first writes what it depends on (a `building` record names its
builder before the builder is started), so a controller killed at any point is continued by
the next one: running builders are followed again, finished ones are harvested from their
output, and nothing is built twice.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from reconciler.builds import BuildRunner
from reconciler.core.build_request import project_build_key
from reconciler.core.config import Config
from reconciler.core.naming import image_refs
from reconciler.core.plan import Action, PlanItem, make_plan, tracked_refs
from reconciler.core.project import Desired, DesiredProject, InvalidProject, Phase, ProjectRecord
from reconciler.core.render import make_environment
from reconciler.core.retry import failed_record
from reconciler.edges.backend import NO_HOST, BackendError
from reconciler.edges.desired import DesiredDirMissing, FileCache, load_committed, load_desired
from reconciler.edges.desired_repo import DesiredRepo, PullStatus, find_repo
from reconciler.edges.git_remote import GitRemoteError, RemoteRefs, resolve_commit
from reconciler.edges.registry import EngineImages, ImageStore, RegistryError, RegistryImages
from reconciler.edges.settings import ConfigError
from reconciler.edges.state import StateStore, atomic_write
from reconciler.edges.watcher import start_watching
from reconciler.records import RecordBook

Report = Callable[[str, str], None]
RETRY_REQUEST = "retry-"
END_OF_BACKOFF = datetime.max.replace(tzinfo=UTC)  # a time at which every backoff is over


def _silent(project: str, text: str) -> None:
    return None


@dataclass
class Workspace:
    """The places a pass reads and writes, and the configuration it runs with."""

    config: Config
    desired_dir: Path
    store: StateStore
    template_dirs: list[Path]
    source: str = "worktree"  # "head": only committed SLA content counts
    pull: tuple[str, str] | None = None  # (remote, branch) to fast-forward the desired repo from
    files: FileCache = field(default_factory=FileCache)

    @cached_property
    def desired_repo(self) -> DesiredRepo | None:
        """The git work tree around the desired directory, if any (looked up once)."""
        return find_repo(self.desired_dir)

    def load_desired(self) -> dict[str, Desired]:
        if self.source == "head":
            return load_committed(self.desired_dir, self._head_repo().head_documents(),
                                  allow_file_repos=self.config.allow_file_repos)
        return load_desired(
            self.desired_dir, allow_file_repos=self.config.allow_file_repos, cache=self.files
        )

    def ignored_edits(self) -> list[str]:
        """With ``--source head``: the SLA files whose uncommitted edits are ignored."""
        return self._head_repo().uncommitted() if self.source == "head" else []

    def _head_repo(self) -> DesiredRepo:
        repo = self.desired_repo
        if repo is None:
            raise ConfigError(f"--source head: {self.desired_dir} is not inside a git work "
                              "tree; commit the SLA files to a repository or use worktree")
        return repo

    def plan(self, *, refresh: bool = True) -> tuple[list[PlanItem], dict[str, str]]:
        """The plan, and the remotes that could not be asked (project -> why). ``refresh``:
        ask the remotes of tracked refs for their current commit, as `apply` does."""
        desired, recorded = self.load_desired(), self.store.load_all()
        commits, errors = self.remote_commits(desired, recorded) if refresh else ({}, {})
        return make_plan(desired, recorded, remote_commits=commits), errors

    def remote_commits(
        self, desired: dict[str, Desired], recorded: dict[str, ProjectRecord]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Project -> the commit its tracked ref names on the remote now, one ls-remote per
        repository (in parallel); and project -> why its remote could not be asked."""
        tracked = tracked_refs(desired, recorded)
        remotes = RemoteRefs(timeout=self.config.git_timeout)
        remotes.prefetch({want.sla.ml_repo_url for want in tracked.values()})
        commits: dict[str, str] = {}
        errors: dict[str, str] = {}
        for name, want in tracked.items():
            try:
                commits[name] = remotes.resolve(want.sla.ml_repo_url, want.sla.ml_repo_ref)
            except GitRemoteError as error:
                errors[name] = str(error)
        return commits, errors

    @property
    def requests_dir(self) -> Path:
        return self.store.root / "requests"

    def request_retry(self, project: str) -> Path:
        """Ask the controller that owns the state (now or on its next pass) to re-arm."""
        path = self.requests_dir / f"{RETRY_REQUEST}{project}"
        self.store.record_path(project)  # refuses unsafe names
        atomic_write(path, project)
        return path


class Controller:
    def __init__(self, workspace: Workspace, report: Report = _silent) -> None:
        self.ws = workspace
        self.config = workspace.config
        self.book = RecordBook(workspace.store, log_max_bytes=self.config.observer_log_max_bytes,
                               log_keep=self.config.observer_log_keep)
        self.report = report
        self.wake = threading.Event()
        self.runner = BuildRunner(
            self.config, self.book, make_environment(workspace.template_dirs),
            workspace.template_dirs, report, self.wake.set,
        )
        self._images: ImageStore | None = None
        self._next_pull = 0.0  # monotonic time of the next `--pull` fetch

    # -- entry points ---------------------------------------------------------------------

    def apply(self, *, wait: bool) -> dict[str, ProjectRecord]:
        """One pass; with ``wait``, further passes until no build it can start is running.

        The first pass is the user's request, so it retries failed projects at once instead of
        waiting out their backoff (exhausted ones stay held: they need `reconciler retry`).
        """
        self.reconcile(follow=wait, resync=True, now=END_OF_BACKOFF)
        while wait and self.runner.following():
            self.wake.wait(self.runner.next_wake())
            self.wake.clear()
            self.reconcile(follow=True)
        return self.book.snapshot()

    def watch(self, stop: threading.Event) -> None:
        """Reconcile on every change in desired, every due retry and every resync interval,
        until ``stop`` is set. Builders left running at the stop are adopted by the next start.
        """
        start_watching([self.ws.desired_dir, self.ws.requests_dir], self.wake.set, stop)
        interval = self.config.resync_interval
        next_resync = time.monotonic()
        while not stop.is_set():
            resync = time.monotonic() >= next_resync
            if resync:
                next_resync = time.monotonic() + interval
            try:
                self.reconcile(follow=True, resync=resync)
                self.runner.outages.recovered("desired directory")
            except DesiredDirMissing as error:  # gone while watching (a checkout, a typo'd
                # mount): nothing is pruned; the watch waits for it to come back
                self.runner.outages.failed("desired directory", str(error))
                next_resync = min(next_resync, time.monotonic() + self.config.retry_base)
            waits = [next_resync - time.monotonic(), self.next_due(), self.runner.next_wake(),
                     self._next_pull - time.monotonic() if self.ws.pull else None]
            self.wake.wait(max(0.0, min(w for w in waits if w is not None)))
            self.wake.clear()

    def reconcile(self, *, follow: bool = True, resync: bool = False,
                  now: datetime | None = None) -> None:
        """One pass. ``follow``: follow builders in threads; else harvest the exited ones.
        ``resync``: ask the remotes whether tracked refs of ready projects moved.
        ``now``: the time retry backoffs are measured against (default: the clock)."""
        self._consume_retry_requests()
        self._pull()
        desired = self.ws.load_desired()
        records = self.book.snapshot()
        moved = self._remote_commits(desired, records) if resync else {}
        acted = []
        for item in make_plan(desired, records, now, moved):
            before = self.book.get(item.project)
            self._act(item, desired.get(item.project), moved.get(item.project))
            if self.book.get(item.project) is not before:  # the pass changed this record
                acted.append(item.project)
        self._note_sources(acted, desired)
        self.runner.stop_overdue()
        self._start_builds(desired)
        self.runner.follow_all(background=follow)

    def next_due(self) -> float | None:
        """Seconds until the earliest retry falls due (so a waiting loop wakes for it)."""
        now = datetime.now(UTC)
        times = [
            datetime.fromisoformat(r.retry_at) for r in self.book.matching(
                lambda r: r.phase is Phase.failed and not r.exhausted and r.retry_at is not None)
            if r.retry_at is not None
        ]
        return max(0.0, (min(times) - now).total_seconds()) if times else None

    # -- actions --------------------------------------------------------------------------

    def _act(self, item: PlanItem, want: Desired | None, moved_to: str | None) -> None:
        """``moved_to``: the new commit of a ready project's tracked ref (a resync)."""
        have = self.book.get(item.project)
        if item.action is Action.noop or item.hold:
            return
        if item.action is Action.invalid:
            assert isinstance(want, InvalidProject)
            self._invalid(want, have)
        elif item.action is Action.delete:
            assert have is not None
            self._delete(have)
        elif item.action is Action.update:
            assert isinstance(want, DesiredProject) and have is not None
            self.book.log.info(want.name, "update", item.reason)
            self.book.put(_with_sla(have, want))
        else:
            assert isinstance(want, DesiredProject)
            self._build_or_follow(want, have, item, moved_to)

    def _build_or_follow(self, want: DesiredProject, have: ProjectRecord | None,
                         item: PlanItem, moved_to: str | None = None) -> None:
        if have is not None and have.build is not None:
            if have.image_digest == want.image_digest:
                if have.sla_digest != want.sla_digest:  # edited mid-build, same images
                    self.book.log.info(want.name, "update", "SLA changed during the build; "
                                       "the images stay the same, the build continues")
                    self.book.put(_with_sla(have, want))
                return
            self._leave_build(have, "the image inputs changed")
        if have is not None and have.phase is Phase.pending and have.commit \
                and have.image_digest == want.image_digest:
            return  # resolved already, waits for a build slot
        retrying_outage = have is not None and have.phase is Phase.failed \
            and (have.error or "").startswith("infrastructure:")
        if not retrying_outage:  # an outage's retries stay quiet until something changes
            self.book.log.info(want.name, "plan", f"{item.action.value}: {item.reason}")
        if moved_to is not None and have is not None and have.phase is Phase.ready:
            self.book.log.info(want.name, "resync", f"{want.sla.ml_repo_ref or 'HEAD'} moved "
                               f"from {have.commit} to {moved_to}")
            self._stage2(want, have, commit=moved_to)
            return
        self._stage2(want, have, quiet=retrying_outage)

    def _leave_build(self, have: ProjectRecord, why: str) -> None:
        """``have`` stops waiting for its builder; the builder goes when nobody waits."""
        build = have.build
        assert build is not None
        self.book.change(have.project, build=None, phase=Phase.pending)
        if not self.book.subscribers(build.name):
            self.book.log.info(have.project, "cancel", f"builder {build.name} cancelled: {why}")
            self.runner.take_down(build, why, have.project)

    def _stage2(self, want: DesiredProject, have: ProjectRecord | None, *,
                quiet: bool = False, commit: str | None = None) -> None:
        """Resolve the ref and ask the registry: ready, pending a build, or failed.
        ``quiet``: no INFO lines (a retry during an outage); errors and results still go.
        ``commit``: the ref's commit when the caller has just resolved it (a resync)."""
        name, sla = want.name, want.sla
        if commit is None:
            self.report(name, "resolving ref")
            try:
                commit = resolve_commit(sla.ml_repo_url, sla.ml_repo_ref,
                                        timeout=self.config.git_timeout)
            except GitRemoteError as error:
                self._fail(want, have, None, "resolve", f"repo: {error}")
                return
            if not quiet:
                self.book.log.info(name, "resolve", f"{sla.ml_repo_ref or 'HEAD'} of "
                                   f"{sla.ml_repo_url} is {commit}")
        refs = image_refs(self.config.image_prefix, sla.ml_repo_url, commit)
        self.report(name, "checking registry")
        try:
            store = self._image_store()
            platforms = tuple(sorted(p.value for p in sla.supported_platforms))
            present = {role: store.exists(ref, platforms) for role, ref in refs.items()}
            self.runner.outages.recovered("registry")
        except (RegistryError, BackendError) as error:
            self.runner.outages.failed("registry", str(error))
            self._fail(want, have, commit, "registry", f"infrastructure: {error}")
            return
        key = project_build_key(want, commit, self.config)
        if all(present.values()):
            self.book.log.info(name, "registry", "images exist, no build needed: "
                               + ", ".join(refs[role] for role in sorted(refs)))
            same = have is not None and have.commit == commit
            self._save(want, Phase.ready, commit=commit, images=refs, served_by=key,
                       keep=have if same else None)
            self.report(name, "ready")
            return
        missing = ", ".join(refs[role] for role, ok in sorted(present.items()) if not ok)
        if not quiet:
            self.book.log.info(name, "registry", f"missing: {missing}; a build is needed")
        self._save(want, Phase.pending, commit=commit, images=refs, served_by=key,
                   keep=have if have is not None and have.image_digest == want.image_digest
                   else None)

    def _start_builds(self, desired: dict[str, Desired]) -> None:
        """Start builders for pending projects: one per build key, up to the slot limit."""
        by_key: dict[str, list[DesiredProject]] = defaultdict(list)
        for record in self.book.matching(lambda r: r.phase is Phase.pending and bool(r.commit)):
            want = desired.get(record.project)
            if isinstance(want, DesiredProject) and record.served_by:
                by_key[record.served_by].append(want)
        running = {r.build.key: r.build for r in self.book.matching(lambda r: r.build is not None)
                   if r.build is not None}
        for key, projects in sorted(by_key.items()):
            if key in running:
                for project in projects:
                    self.runner.join(project, running[key])
                continue
            if len(running) >= self.config.max_concurrent_builds:
                for project in projects:
                    self.report(project.name, "waiting for a build slot")
                continue
            leader = self.book.get(projects[0].name)
            assert leader is not None and leader.commit is not None
            self.runner.start(projects[0], projects[1:], leader.commit)
            started = self.book.get(projects[0].name)
            if started is not None and started.build is not None:
                running[key] = started.build

    def _remote_commits(self, desired: dict[str, Desired],
                        records: dict[str, ProjectRecord]) -> dict[str, str]:
        """The current commits of tracked refs; a remote that does not answer is an outage,
        warned about once in the log of each project that tracks it."""
        commits, errors = self.ws.remote_commits(desired, records)
        for name, want in tracked_refs(desired, records).items():
            endpoint = f"git remote {want.sla.ml_repo_url}"
            if name not in errors:
                self.runner.outages.recovered(endpoint)
            elif self.runner.outages.failed(endpoint, errors[name]):
                self.book.log.warn(name, "resync", errors[name])
        return commits

    def _note_sources(self, acted: list[str], desired: dict[str, Desired]) -> None:
        """Record and log which desired-repository commit each acted-on SLA comes from."""
        repo = self.ws.desired_repo
        files = {name: Path(desired[name].sla_file) for name in acted
                 if name in desired and self.book.get(name) is not None}
        if repo is None or not files:
            return
        origins = repo.provenance(files.values())
        for name, path in files.items():
            origin = origins.get(path)
            if origin is None:
                source = None
                self.book.log.info(name, "source", f"{path.name} is not committed in "
                                   f"{repo.root} (an uncommitted edit)")
            else:
                source = {"commit": origin.commit, "author": f"{origin.author_name} "
                          f"<{origin.author_email}>", "date": origin.committed_at}
                self.book.log.info(name, "source", f"{path.name} as of desired-repo commit "
                                   f"{origin.commit[:12]} by {source['author']}, "
                                   f"{origin.committed_at}")
            self.book.change(name, source=source)

    def _pull(self) -> None:
        """Fast-forward the desired repository from its remote every pull_interval; never
        reset or merge."""
        repo = self.ws.desired_repo
        if self.ws.pull is None or repo is None or time.monotonic() < self._next_pull:
            return
        self._next_pull = time.monotonic() + self.config.pull_interval
        result = repo.fast_forward(*self.ws.pull, timeout=self.config.git_timeout)
        endpoint = f"desired repository pull ({'/'.join(self.ws.pull)})"
        if result.status in (PullStatus.up_to_date, PullStatus.fast_forwarded):
            self.runner.outages.recovered(endpoint)
            if result.status is PullStatus.fast_forwarded:
                print(f"reconciler: {result.message}", flush=True)
        else:
            self.runner.outages.failed(endpoint, f"{result.status.value}: {result.message}")

    # -- records --------------------------------------------------------------------------

    def _invalid(self, want: InvalidProject, have: ProjectRecord | None) -> None:
        if have is not None and have.phase is Phase.invalid and have.error == want.error:
            return
        self.book.log.error(want.name, "validate", want.error)
        if have is not None and have.build is not None:
            self._leave_build(have, "the SLA became invalid")
        self.book.put(ProjectRecord(
            project=want.name, phase=Phase.invalid, sla_file=want.sla_file, error=want.error,
            commit=have.commit if have else None, images=have.images if have else {},
        ))
        self.report(want.name, "invalid")

    def _delete(self, have: ProjectRecord) -> None:
        if have.build is not None:
            self._leave_build(have, "its SLA file was removed")
        images = ", ".join(have.images.values()) or "none"
        self.book.log.info(have.project, "prune", f"SLA file {have.sla_file} removed; project "
                           f"record deleted; its images stay in the registry ({images})")
        self.book.drop(have.project)

    def _fail(self, want: DesiredProject, have: ProjectRecord | None, commit: str | None,
              stage: str, error: str) -> None:
        if have is None or have.error != error:  # once per distinct failure, not per pass
            self.book.log.error(want.name, stage, error)
        base = _fresh_record(want, Phase.failed, commit=commit,
                             images=have.images if have else {}, keep=have)
        self.book.put(failed_record(base, error, datetime.now(UTC), self.config))
        self.report(want.name, "failed")

    def _save(self, want: DesiredProject, phase: Phase, *, commit: str | None,
              images: dict[str, str], served_by: str | None = None,
              keep: ProjectRecord | None = None) -> ProjectRecord:
        return self.book.put(_fresh_record(want, phase, commit=commit, images=images,
                                           served_by=served_by, keep=keep))

    def _consume_retry_requests(self) -> None:
        directory = self.ws.requests_dir
        if not directory.is_dir():
            return
        for path in sorted(directory.glob(f"{RETRY_REQUEST}*")):
            project = path.name.removeprefix(RETRY_REQUEST)
            record = self.book.get(project)
            if record is not None and record.phase is Phase.failed:
                self.book.change(project, attempts=0, waits=0, exhausted=False, retry_at=None)
                self.book.log.info(project, "retry", "re-armed by `reconciler retry`")
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _image_store(self) -> ImageStore:
        if self._images is None:
            if self.config.local_registry:
                hosts = self.config.image_builder_hosts()
                if not hosts:
                    raise BackendError(NO_HOST)
                self._images = EngineImages(hosts[0].docker_host)
            else:
                self._images = RegistryImages(self.config.registry,
                                              timeout=self.config.registry_timeout)
        return self._images


def _with_sla(have: ProjectRecord, want: DesiredProject) -> ProjectRecord:
    return have.model_copy(update={
        "sla": want.sla_dump, "sla_digest": want.sla_digest, "sla_file": want.sla_file})


def _fresh_record(want: DesiredProject, phase: Phase, *, commit: str | None,
                  images: dict[str, str], served_by: str | None = None,
                  keep: ProjectRecord | None = None) -> ProjectRecord:
    """A new record for ``want``; ``keep`` carries what the last build recorded (digests,
    timings, repairs, base image) and the retry state."""
    carried = {} if keep is None else {
        "digests": keep.digests, "timings": keep.timings, "repairs": keep.repairs,
        "repair_diffs": keep.repair_diffs, "base_image": keep.base_image,
        "attempts": keep.attempts, "exhausted": keep.exhausted,
        "waits": keep.waits if phase is not Phase.ready else 0,
        # The last failure stays visible until a build succeeds, and lets a repeat of
        # the same failure go unlogged.
        "error": keep.error if phase is not Phase.ready else None,
    }
    return ProjectRecord(
        project=want.name, phase=phase, sla_file=want.sla_file, sla=want.sla_dump,
        sla_digest=want.sla_digest, image_digest=want.image_digest, commit=commit,
        images=images, served_by=served_by, **carried,
    )
