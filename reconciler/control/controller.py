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
from collections import defaultdict
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from reconciler.control.book import RecordBook
from reconciler.control.outages import Outages
from reconciler.control.post_training import PostTraining
from reconciler.control.reports import Notice, Report, StageReport, silent
from reconciler.control.runner import BuildRunner
from reconciler.control.settling import Settling
from reconciler.control.trainer import Trainer
from reconciler.core import transitions
from reconciler.core.build_request import project_build_key
from reconciler.core.failure import Failure, infrastructure
from reconciler.core.naming import image_refs
from reconciler.core.plan import Action, PlanItem, make_plan, tracked_refs
from reconciler.core.project import Desired, DesiredProject, InvalidProject, Phase, ProjectRecord
from reconciler.core.record import TrainingPhase
from reconciler.edges.backend import BackendError
from reconciler.edges.desired import DesiredDirMissing
from reconciler.edges.desired_repo import PullStatus
from reconciler.edges.git_remote import GitRemoteError, resolve_commit
from reconciler.edges.registry import RegistryError
from reconciler.edges.watcher import start_watching
from reconciler.workspace import RETRAIN_REQUEST, RETRY_REQUEST, Workspace

END_OF_BACKOFF = datetime.max.replace(tzinfo=UTC)  # a time at which every backoff is over
SETTLE_SECONDS = 30.0  # a stopping watch lets recorded results remove their builders/runs
MAX_PASSES_IN_A_ROW = 5  # watch: immediate passes after changing ones


def phase_of(record: ProjectRecord | None) -> Phase | None:
    return record.phase if record is not None else None


class Controller:
    """Runs reconcile passes over a workspace: `apply` (one pass, optionally until its builds
    are recorded) and `watch` (a pass on every change, due retry and resync).

    Where it sits: the top of the control layer, called by the CLI. A pass loads the desired
    state, plans it against the records (``core/plan.py``) and acts on each item: it resolves
    refs, asks the image store, records the result and hands pending projects to its
    ``BuildRunner``. It owns the wake-up event that follower threads set, the outage tracker,
    and the schedule of resyncs and pulls.
    """

    def __init__(self, workspace: Workspace, report: Report = silent) -> None:
        self.ws = workspace
        self.config = workspace.config
        self.clock = workspace.clock
        self.report = report
        self.book = RecordBook(workspace.store, workspace.clock,
                               log_max_bytes=self.config.observer_log_max_bytes,
                               log_keep=self.config.observer_log_keep)
        self.outages = Outages(report)
        self.wake = threading.Event()
        self.settling = Settling()
        self.runner = BuildRunner(workspace, self.book, self.outages, report, self.wake.set,
                                  self.settling)
        self.trainer = Trainer(workspace, self.book, self.outages, report, self.wake.set,
                               self.settling)
        self.post_training = PostTraining(workspace, self.book, self.outages, report)
        self._next_pull = 0.0  # monotonic time of the next `--pull` fetch

    # -- entry points ---------------------------------------------------------------------

    def apply(self, *, wait: bool) -> dict[str, ProjectRecord]:
        """One pass; with ``wait``, further passes until no build it can start is running.

        The first pass is the user's request, so it retries failed projects at once instead of
        waiting out their backoff (exhausted ones stay held: they need `reconciler retry`).
        """
        changed = self.reconcile(follow=wait, resync=True, now=END_OF_BACKOFF)
        # With `--wait` a pass follows a pass that changed something (images found ready make
        # their training run due), and one follows every end of a build or a run.
        while wait and (changed or self.runner.following() or self.trainer.following()):
            if not changed:
                self.wake.wait(self._first(self.runner.next_wake(), self.trainer.next_wake()))
                self.wake.clear()
            changed = self.reconcile(follow=True)
        return self.book.snapshot()

    @staticmethod
    def _first(*waits: float | None) -> float | None:
        known = [w for w in waits if w is not None]
        return min(known) if known else None

    def watch(self, stop: threading.Event) -> None:
        """Reconcile on every change in desired, every due retry and every resync interval,
        until ``stop`` is set. Builders and runs left running at the stop are adopted by the
        next start; those whose result is being recorded are first removed."""
        start_watching([self.ws.desired_dir, self.ws.requests_dir], self.wake.set, stop)
        next_resync = self.clock.monotonic()
        in_a_row = 0  # passes that followed a changing pass at once
        while not stop.is_set():
            resync = self.clock.monotonic() >= next_resync
            if resync:
                next_resync = self.clock.monotonic() + self.config.resync_interval
            changed: list[str] = []
            try:
                changed = self.reconcile(follow=True, resync=resync)
                self.outages.recovered("desired directory")
            except DesiredDirMissing as error:  # gone while watching (a checkout, a typo'd
                # mount): nothing is pruned; the watch waits for it to come back
                self.outages.failed("desired directory", str(error))
                next_resync = min(next_resync, self.clock.monotonic() + self.config.retry_base)
            # As in `apply --wait`, a pass that changed something is followed by another at
            # once (a retried project found ready makes its training run due now, not at the
            # next resync); bounded, so a project that changes on every pass cannot spin.
            in_a_row = in_a_row + 1 if changed and in_a_row < MAX_PASSES_IN_A_ROW else 0
            if not in_a_row:
                self.wake.wait(self.seconds_to_next_pass(next_resync))
            self.wake.clear()
        self.settling.wait(SETTLE_SECONDS)

    def seconds_to_next_pass(self, next_resync: float) -> float:
        """How long a watching loop may sleep: until the next resync, retry, build timeout,
        resting builder or pull, whichever comes first."""
        now = self.clock.monotonic()
        waits = [next_resync - now, self.next_due(), self.runner.next_wake(),
                 self.trainer.next_wake(), self._next_pull - now if self.ws.pull else None]
        return max(0.0, min(w for w in waits if w is not None))

    def reconcile(self, *, follow: bool = True, resync: bool = False,
                  now: datetime | None = None) -> list[str]:
        """One pass; the projects whose record it changed. ``follow``: follow builders and
        runs in threads; else harvest the ended ones. ``resync``: ask the remotes whether
        tracked refs of ready projects moved. ``now``: the time retry backoffs are measured
        against (default: the clock)."""
        self._consume_retry_requests()
        self._pull()
        desired = self.ws.load_desired()
        if resync:
            for record in self.book.matching(lambda r: r.training is not None
                                             and r.training.serving is not None):
                if record.project in desired:
                    self.post_training.check_serving(record)
        records = self.book.snapshot()
        moved = self._remote_commits(desired, records) if resync else {}
        acted = []
        for item in make_plan(desired, records, now or self.clock.now(), moved):
            before = self.book.get(item.project)
            if phase_of(before) is not phase_of(records.get(item.project)):
                # A follower recorded a result since the plan was made: acting on the old
                # plan would, e.g., start the build again at once, past its backoff. The
                # follower's end wakes the next pass, which plans from the new record.
                # (Events a follower logs change a record too, but not its phase.)
                continue
            self._act(item, desired.get(item.project), moved.get(item.project))
            if self.book.get(item.project) is not before:  # the pass changed this record
                acted.append(item.project)
        self._note_sources(acted, desired)
        self.runner.stop_overdue()
        self._start_builds(desired)
        self.runner.follow_all(background=follow)
        self.trainer.stop_overdue()
        self.trainer.follow_all(background=follow)
        return acted

    def next_due(self) -> float | None:
        """Seconds until the earliest retry falls due (so a waiting loop wakes for it)."""
        return transitions.seconds_to_retry(self.book.snapshot().values(), self.clock.now())

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
            self.book.note(want.name, "update", item.reason)
            self.book.put(transitions.with_sla(have, want))
        elif item.action is Action.train:
            assert isinstance(want, DesiredProject) and have is not None
            finished = have.training is not None \
                and have.training.phase is TrainingPhase.finished
            if finished and have.training is not None and have.training.run in item.reason:
                self.book.note(want.name, "plan", f"train: {item.reason}")
                self.post_training.step(want, have)
            elif have.phase is not Phase.training or item.reason.startswith("start run"):
                self.book.note(want.name, "plan", f"train: {item.reason}")
                self.trainer.start(want, have)
        else:
            assert isinstance(want, DesiredProject)
            self._build_or_follow(want, have, item, moved_to)

    def _build_or_follow(self, want: DesiredProject, have: ProjectRecord | None,
                         item: PlanItem, moved_to: str | None = None) -> None:
        if have is not None and have.training is not None \
                and have.training.phase is TrainingPhase.running:
            self.trainer.take_down(have.project, have.training, "its images change")
        if have is not None and have.build is not None:
            if have.image_digest == want.image_digest:
                if have.sla_digest != want.sla_digest:  # edited mid-build, same images
                    self.book.note(want.name, "update", "SLA changed during the build; the "
                                   "images stay the same, the build continues")
                    self.book.put(transitions.with_sla(have, want))
                return
            self._leave_build(have, "the image inputs changed")
        if have is not None and have.phase is Phase.pending and have.commit \
                and have.image_digest == want.image_digest:
            return  # resolved already, waits for a build slot
        retrying_outage = have is not None and have.phase is Phase.failed \
            and have.error_category == "infrastructure"
        if not retrying_outage:  # an outage's retries stay quiet until something changes
            self.book.note(want.name, "plan", f"{item.action.value}: {item.reason}")
        if moved_to is not None and have is not None and have.phase is Phase.ready:
            self.book.note(want.name, "resync", f"{want.sla.ml_repo_ref or 'HEAD'} moved "
                           f"from {have.commit} to {moved_to}")
            self._look_up_images(want, have, commit=moved_to)
            return
        self._look_up_images(want, have, quiet=retrying_outage)

    def _leave_build(self, have: ProjectRecord, why: str) -> None:
        """``have`` stops waiting for its builder; the builder goes when nobody waits."""
        build = have.build
        assert build is not None
        self.book.change(have.project, transitions.waiting)
        if not self.book.subscribers(build.name):
            self.book.note(have.project, "cancel", f"builder {build.name} cancelled: {why}")
            self.runner.take_down(build, why, have.project)

    def _look_up_images(self, want: DesiredProject, have: ProjectRecord | None, *,
                        quiet: bool = False, commit: str | None = None) -> None:
        """Stage 2: resolve the ref and ask the image store whether the images exist: ready,
        pending a build, or failed. ``quiet``: no INFO lines (a retry during an outage);
        errors and results still go. ``commit``: the ref's commit when the caller has just
        resolved it (a resync)."""
        name, sla = want.name, want.sla
        if commit is None:
            self.report(StageReport(name, "resolving ref"))
            try:
                commit = resolve_commit(sla.ml_repo_url, sla.ml_repo_ref,
                                        timeout=self.config.git_timeout)
            except GitRemoteError as error:
                self._fail(want, have, None, "resolve", Failure("repo", str(error)))
                return
            if not quiet:
                self.book.note(name, "resolve", f"{sla.ml_repo_ref or 'HEAD'} of "
                               f"{sla.ml_repo_url} is {commit}")
        refs = image_refs(self.config.image_prefix, sla.ml_repo_url, commit)
        self.report(StageReport(name, "checking registry"))
        try:
            store = self.ws.images
            platforms = tuple(sorted(p.value for p in sla.supported_platforms))
            present = {role: store.exists(ref, platforms) for role, ref in refs.items()}
            self.outages.recovered("registry")
        except (RegistryError, BackendError) as error:
            self.outages.failed("registry", str(error))
            self._fail(want, have, commit, "registry", infrastructure(str(error)))
            return
        key = project_build_key(want, commit, self.config)
        if all(present.values()):
            self.book.note(name, "registry", "images exist, no build needed: "
                           + ", ".join(refs[role] for role in sorted(refs)))
            same = have is not None and have.commit == commit
            self.book.put(transitions.observed(want, Phase.ready, commit=commit, images=refs,
                                               served_by=key, keep=have if same else None))
            self.report(StageReport(name, "ready"))
            return
        missing = ", ".join(refs[role] for role, ok in sorted(present.items()) if not ok)
        if not quiet:
            self.book.note(name, "registry", f"missing: {missing}; a build is needed")
        same_inputs = have is not None and have.image_digest == want.image_digest
        self.book.put(transitions.observed(want, Phase.pending, commit=commit, images=refs,
                                           served_by=key, keep=have if same_inputs else None))

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
                    self.report(StageReport(project.name, "waiting for a build slot"))
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
                self.outages.recovered(endpoint)
            elif self.outages.failed(endpoint, errors[name]):
                self.book.warn(name, "resync", errors[name])
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
                said = f"{path.name} is not committed in {repo.root} (an uncommitted edit)"
            else:
                author = f"{origin.author_name} <{origin.author_email}>"
                source = {"commit": origin.commit, "author": author, "date": origin.committed_at}
                said = (f"{path.name} as of desired-repo commit {origin.commit[:12]} by "
                        f"{author}, {origin.committed_at}")
            record = self.book.get(name)
            if source is not None and record is not None and record.source == source:
                continue  # said when it changed; a pass acting again has nothing new to say
            self.book.note(name, "source", said)
            self.book.change(name, partial(transitions.with_source, source=source))

    def _pull(self) -> None:
        """Fast-forward the desired repository from its remote every pull_interval; never
        reset or merge."""
        repo = self.ws.desired_repo
        if self.ws.pull is None or repo is None or self.clock.monotonic() < self._next_pull:
            return
        self._next_pull = self.clock.monotonic() + self.config.pull_interval
        result = repo.fast_forward(*self.ws.pull, timeout=self.config.git_timeout)
        endpoint = f"desired repository pull ({'/'.join(self.ws.pull)})"
        if result.status in (PullStatus.up_to_date, PullStatus.fast_forwarded):
            self.outages.recovered(endpoint)
            if result.status is PullStatus.fast_forwarded:
                self.report(Notice(f"reconciler: {result.message}"))
        else:
            self.outages.failed(endpoint, f"{result.status.value}: {result.message}")

    # -- records --------------------------------------------------------------------------

    def _invalid(self, want: InvalidProject, have: ProjectRecord | None) -> None:
        if have is not None and have.phase is Phase.invalid and have.error == want.error:
            return
        self.book.fail(want.name, "validate", want.error)
        if have is not None and have.build is not None:
            self._leave_build(have, "the SLA became invalid")
        self.book.put(transitions.invalid(want, have))
        self.report(StageReport(want.name, "invalid"))

    def _delete(self, have: ProjectRecord) -> None:
        if have.build is not None:
            self._leave_build(have, "its SLA file was removed")
        if have.training is not None and have.training.phase is TrainingPhase.running:
            self.trainer.take_down(have.project, have.training, "its SLA file was removed")
        self.post_training.stop_serving(have, "its SLA file was removed")
        images = ", ".join(have.images.values()) or "none"
        self.book.note(have.project, "prune", f"SLA file {have.sla_file} removed; project "
                       f"record deleted; its images stay in the registry ({images})")
        self.book.drop(have.project)

    def _fail(self, want: DesiredProject, have: ProjectRecord | None, commit: str | None,
              stage: str, failure: Failure) -> None:
        if have is None or have.error != failure.text:  # once per distinct failure
            self.book.fail(want.name, stage, failure.text)
        base = transitions.observed(want, Phase.failed, commit=commit,
                                    images=have.images if have else {}, keep=have)
        self.book.put(transitions.failed(base, failure, self.clock.now(), self.config))
        self.report(StageReport(want.name, "failed"))

    def _consume_retry_requests(self) -> None:
        directory = self.ws.requests_dir
        if not directory.is_dir():
            return
        for path in sorted(directory.glob(f"{RETRY_REQUEST}*")):
            project = path.name.removeprefix(RETRY_REQUEST)
            record = self.book.get(project)
            if record is not None and record.phase is Phase.failed:
                self.book.change(project, transitions.rearmed)
                self.book.note(project, "retry", "re-armed by `reconciler retry`")
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        for path in sorted(directory.glob(f"{RETRAIN_REQUEST}*")):
            project = path.name.removeprefix(RETRAIN_REQUEST)
            if self.book.get(project) is not None:
                self.book.change(project, lambda have: transitions.rearmed(
                    transitions.retrain_requested(have)))
                self.book.note(project, "retrain", "a new run is requested by `reconciler "
                               "retrain`")
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
