"""Every change a project record goes through, as pure functions of the record and the time.

Decision: the controller and the build runner decide nothing about a record's fields
themselves; they pick a transition here and hand its result to the record book, which writes
it. Each transition keeps the record's invariants (``record_problems`` lists them), so any
sequence of them leaves a record that a restart reads back and plans from. Time is an
argument (``now``), never read from a clock here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from reconciler.core.config import Config
from reconciler.core.events import Outcome
from reconciler.core.failure import Failure
from reconciler.core.project import DesiredProject, InvalidProject
from reconciler.core.record import (
    BuildRecord,
    Phase,
    ProjectRecord,
    RoundRecord,
    TrainingPhase,
    TrainingRecord,
)
from reconciler.core.retry import failed_record
from reconciler.core.times import parse_utc, utc_iso

# -- from the desired state -----------------------------------------------------------------


def observed(want: DesiredProject, phase: Phase, *, commit: str | None,
             images: dict[str, str], served_by: str | None = None,
             keep: ProjectRecord | None = None) -> ProjectRecord:
    """A new record for ``want`` after its ref and images were looked up; ``keep`` carries
    what the last build recorded (digests, timings, repairs, base image) and the retry state."""
    carried = {} if keep is None else {
        "digests": keep.digests, "platform_digests": keep.platform_digests,
        "timings": keep.timings, "repairs": keep.repairs,
        "repair_diffs": keep.repair_diffs, "base_image": keep.base_image,
        "attempts": keep.attempts, "exhausted": keep.exhausted,
        # The same images: the last training run (finished or failed) and forced retrains.
        "training": keep.training, "retrain": keep.retrain,
        "waits": keep.waits if phase is not Phase.ready else 0,
        # The last failure stays visible until a build succeeds, and lets a repeat of
        # the same failure go unlogged.
        "error": keep.error if phase is not Phase.ready else None,
        "error_category": keep.error_category if phase is not Phase.ready else None,
    }
    return ProjectRecord(
        project=want.name, phase=phase, sla_file=want.sla_file, sla=want.sla_dump,
        sla_digest=want.sla_digest, image_digest=want.image_digest, commit=commit,
        images=images, served_by=served_by, **carried,  # type: ignore[arg-type]
    )


def with_sla(have: ProjectRecord, want: DesiredProject) -> ProjectRecord:
    """The SLA changed in keys that do not decide the images: record it, keep the rest."""
    return replace(have, sla=want.sla_dump, sla_digest=want.sla_digest, sla_file=want.sla_file)


def invalid(want: InvalidProject, have: ProjectRecord | None) -> ProjectRecord:
    """The SLA file no longer validates: the error, and the last commit and images seen."""
    return ProjectRecord(
        project=want.name, phase=Phase.invalid, sla_file=want.sla_file, error=want.error,
        commit=have.commit if have else None, images=have.images if have else {},
    )


def with_source(have: ProjectRecord, source: dict[str, str] | None) -> ProjectRecord:
    """The desired-repository commit that last changed the SLA file (None: uncommitted)."""
    return replace(have, source=source)


def rearmed(have: ProjectRecord) -> ProjectRecord:
    """`reconciler retry`: the attempt count starts again and the next pass may build."""
    return replace(have, attempts=0, waits=0, exhausted=False, retry_at=None)


# -- builds ---------------------------------------------------------------------------------


def new_build(*, key: str, name: str, host: str, commit: str, images: dict[str, str],
              leader: str, now: datetime) -> BuildRecord:
    return BuildRecord(key=key, name=name, host=host, commit=commit, images=images,
                       started_at=utc_iso(now), leader=leader)


def building(have: ProjectRecord, build: BuildRecord) -> ProjectRecord:
    """The project's builder is started (or about to be): its record names it first."""
    return replace(have, phase=Phase.building, build=build, served_by=build.key)


def joined(have: ProjectRecord, build: BuildRecord) -> ProjectRecord:
    """The project shares a builder started for the same build key; its own log starts at the
    builder's first event."""
    return building(have, replace(build, events_logged=0))


def placed(have: ProjectRecord, node: str) -> ProjectRecord:
    """The swarm placed the builder's task on ``node`` ("<node id> <hostname>")."""
    assert have.build is not None
    return replace(have, build=replace(have.build, node=node))


def events_logged(have: ProjectRecord, count: int) -> ProjectRecord:
    """The first ``count`` builder events are in the project's observer log."""
    assert have.build is not None
    return replace(have, build=replace(have.build, events_logged=count))


def waiting(have: ProjectRecord) -> ProjectRecord:
    """No builder serves the project any more (it left, or vanished before reporting): the
    project waits for the next pass to start one."""
    return replace(have, phase=Phase.pending, build=None)


def succeeded(have: ProjectRecord, outcome: Outcome) -> ProjectRecord:
    """The builder reported its images: ready, with what the build recorded; retries reset."""
    images = outcome.images or (have.build.images if have.build else {})
    return replace(
        have, phase=Phase.ready, images=images, digests=outcome.digests,
        platform_digests=outcome.platform_digests,
        timings=outcome.timings, repairs=list(outcome.repairs),
        repair_diffs=list(outcome.repair_diffs), base_image=outcome.base_image, error=None,
        error_category=None, build=None, attempts=0, retry_at=None, exhausted=False, waits=0,
    )


def failed(have: ProjectRecord, failure: Failure, now: datetime,
           config: Config) -> ProjectRecord:
    """A failure: attempts or waits, the backoff and exhaustion (core/retry.py)."""
    return failed_record(have, failure, now, config)


def stamped(record: ProjectRecord, now: datetime) -> ProjectRecord:
    """The record as it is written at ``now``."""
    return replace(record, updated_at=utc_iso(now))


# -- training runs ----------------------------------------------------------------------------


def new_run(*, run: str, name: str, aggregator: str, learners: list[str], total_rounds: int,
            now: datetime) -> TrainingRecord:
    return TrainingRecord(run=run, phase=TrainingPhase.running, name=name,
                          aggregator=aggregator, learners=learners, total_rounds=total_rounds,
                          started=utc_iso(now))


def training(have: ProjectRecord, run: TrainingRecord) -> ProjectRecord:
    """The run is started (or about to be): the record names it first, so a restart finds
    its actors by name and follows them instead of starting another run."""
    return replace(have, phase=Phase.training, training=run)


def round_done(have: ProjectRecord, result: RoundRecord, events_logged: int) -> ProjectRecord:
    """The aggregator reported a round; ``events_logged`` of its events are in the log."""
    assert have.training is not None
    rounds = [r for r in have.training.rounds if r.round != result.round] + [result]
    return replace(have, training=replace(have.training, rounds=rounds,
                                          events_logged=events_logged))


def run_events_logged(have: ProjectRecord, count: int) -> ProjectRecord:
    """The first ``count`` aggregator events are in the project's observer log."""
    assert have.training is not None
    return replace(have, training=replace(have.training, events_logged=count))


def trained(have: ProjectRecord, best_round: int | None, model: str | None,
            now: datetime) -> ProjectRecord:
    """The run finished and its model is kept: trained; retries reset."""
    assert have.training is not None
    run = replace(have.training, phase=TrainingPhase.finished, best_round=best_round,
                  model=model, finished=utc_iso(now))
    return replace(have, phase=Phase.trained, training=run, error=None, error_category=None,
                   attempts=0, retry_at=None, exhausted=False, waits=0)


def model_image_built(have: ProjectRecord, image: str, digest: str) -> ProjectRecord:
    """post_training_steps: the run's trained-model image exists; back to trained."""
    assert have.training is not None
    return replace(have, phase=Phase.trained, error=None, error_category=None, attempts=0,
                   retry_at=None, exhausted=False, waits=0,
                   training=replace(have.training, model_image=image,
                                    model_image_digest=digest))


def serving(have: ProjectRecord, url: str | None) -> ProjectRecord:
    """post_training_steps: the run's model is served at ``url`` (None: no longer)."""
    assert have.training is not None
    return replace(have, training=replace(have.training, serving=url))


def retrain_requested(have: ProjectRecord) -> ProjectRecord:
    """`reconciler retrain`: a new run key, so the next pass starts a new run."""
    return replace(have, retrain=have.retrain + 1)


# -- reading records --------------------------------------------------------------------------


def retry_note(record: ProjectRecord) -> str:
    """A failed record's error with what happens next (the observer log's ERROR line)."""
    if record.exhausted:
        return (f"{record.error}; retries exhausted after {record.attempts} attempts: change "
                f"the image inputs or run `reconciler retry {record.project}`")
    return f"{record.error}; next attempt after {record.retry_at}"


def overdue(build: BuildRecord, timeout: float, now: datetime) -> bool:
    """The builder has run longer than ``timeout`` seconds."""
    return (now - parse_utc(build.started_at)).total_seconds() > timeout


def seconds_to_retry(records: Iterable[ProjectRecord], now: datetime) -> float | None:
    """Seconds until the earliest retry of a failed, not exhausted project falls due."""
    times = [parse_utc(r.retry_at) for r in records
             if r.phase is Phase.failed and not r.exhausted and r.retry_at is not None]
    return max(0.0, (min(times) - now).total_seconds()) if times else None


def seconds_to_timeouts(records: Iterable[ProjectRecord], timeout: float,
                        now: datetime) -> list[float]:
    """For every running build: seconds until it exceeds ``timeout`` (negative: overdue)."""
    return [timeout - (now - parse_utc(r.build.started_at)).total_seconds()
            for r in records if r.build is not None]


def record_problems(record: ProjectRecord) -> list[str]:
    """The invariants every transition keeps; what a record breaks of them."""
    problems = []
    if (record.phase is Phase.building) != (record.build is not None):
        problems.append(f"phase {record.phase.value} with build {record.build}")
    if record.phase is Phase.failed and not (record.error and record.error_category):
        problems.append("failed without an error and its category")
    if record.phase is Phase.ready and (record.error or record.error_category):
        problems.append("ready with an error")
    if record.exhausted and record.retry_at is not None:
        problems.append("exhausted but a retry time is set")
    if record.attempts < 0 or record.waits < 0:
        problems.append("negative attempts or waits")
    if record.build is not None and record.build.key != record.served_by:
        problems.append("served by another build key than its running build's")
    running = record.training is not None and record.training.phase is TrainingPhase.running
    if (record.phase is Phase.training) != running:
        problems.append(f"phase {record.phase.value} with training {record.training}")
    if record.phase is Phase.trained and (
            record.training is None or record.training.phase is not TrainingPhase.finished):
        problems.append("trained without a finished run")
    return problems
