"""Record transitions (core/transitions.py): each one alone, and any sequence of them, keeps a
record that validates and reads back equal from its JSON."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.builder.repairs import Repair
from reconciler.core import transitions
from reconciler.core.config import Config
from reconciler.core.events import Outcome
from reconciler.core.failure import Failure
from reconciler.core.project import DesiredProject, InvalidProject, Phase, ProjectRecord
from reconciler.core.record import BuildRecord, parse_record, record_json
from reconciler.core.sla import parse_sla

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
CONFIG = Config(retry_base=10, retry_cap=40, max_attempts=3)
COMMIT = "0123456789abcdef0123456789abcdef01234567"
IMAGES = {"learner": f"flops.local/o/r/learner:{COMMIT}",
          "aggregator": f"flops.local/o/r/aggregator:{COMMIT}"}


def desired(rounds: int = 3, flavor: str = "sklearn") -> DesiredProject:
    sla = parse_sla({"ml_repo_url": "https://github.com/o/r.git", "ml_model_flavor": flavor,
                     "training_configuration": {"mode": "classic", "training_rounds": rounds}},
                    allow_file_repos=False)
    return DesiredProject("demo", "desired/demo.yaml", sla)


def pending() -> ProjectRecord:
    return transitions.observed(desired(), Phase.pending, commit=COMMIT, images=IMAGES,
                                served_by="k" * 16)


def build(key: str = "k" * 16) -> BuildRecord:
    return transitions.new_build(key=key, name=f"flops-build-demo-{key[:12]}", host="local",
                                 commit=COMMIT, images=IMAGES, leader="demo", now=NOW)


SUCCESS = Outcome(ok=True, images=IMAGES, digests={"learner": "sha256:1"},
                  timings={"clone": 1.5}, repairs=("learner: removed mlflow",),
                  repair_diffs=(Repair(("learner",), "learner: removed mlflow", ("- mlflow",)),),
                  base_image="python:3.11-slim")
BUILD_FAILED = Failure("build", "the Dockerfile step failed")
OUTAGE = Failure("infrastructure", "registry down")


def test_a_build_starts_is_shared_and_succeeds() -> None:
    started = transitions.building(pending(), build())
    assert started.phase is Phase.building and started.served_by == "k" * 16
    assert started.build is not None and started.build.started_at == "2026-11-30T12:00:00.000Z"
    shared = transitions.joined(pending(), transitions.events_logged(started, 7).build or build())
    assert shared.build is not None and shared.build.events_logged == 0
    done = transitions.succeeded(transitions.failed(started, BUILD_FAILED, NOW, CONFIG), SUCCESS)
    assert done.phase is Phase.ready and done.error is None and done.error_category is None
    assert done.attempts == 0 and done.build is None and done.repairs == ["learner: removed mlflow"]


def test_a_failure_records_its_category_apart_from_its_text() -> None:
    failed = transitions.failed(transitions.building(pending(), build()), OUTAGE, NOW, CONFIG)
    assert failed.error == "infrastructure: registry down"
    assert failed.error_category == "infrastructure"
    assert failed.waits == 1 and failed.attempts == 0 and failed.build is None
    assert transitions.retry_note(failed) == \
        "infrastructure: registry down; next attempt after 2026-11-30T12:00:10.000+00:00"


def test_the_last_failure_stays_visible_until_a_build_succeeds() -> None:
    failed = transitions.failed(pending(), BUILD_FAILED, NOW, CONFIG)
    again = transitions.observed(desired(), Phase.pending, commit=COMMIT, images=IMAGES,
                                 keep=failed)
    assert again.error == failed.error and again.error_category == "build"
    ready = transitions.observed(desired(), Phase.ready, commit=COMMIT, images=IMAGES,
                                 keep=failed)
    assert ready.error is None and ready.error_category is None and ready.waits == 0


def test_exhausted_retries_say_how_to_go_on_and_a_rearm_clears_them() -> None:
    record = pending()
    for _ in range(3):
        record = transitions.failed(record, BUILD_FAILED, NOW, CONFIG)
    assert record.exhausted
    assert transitions.retry_note(record).endswith(
        "retries exhausted after 3 attempts: change the image inputs or run "
        "`reconciler retry demo`")
    rearmed = transitions.rearmed(record)
    assert rearmed.attempts == 0 and not rearmed.exhausted and rearmed.retry_at is None


def test_sla_source_invalid_and_placement() -> None:
    updated = transitions.with_sla(pending(), desired(rounds=9))
    assert updated.sla is not None and updated.sla["training_configuration"]["training_rounds"] == 9
    sourced = transitions.with_source(updated, {"commit": "c", "author": "a", "date": "d"})
    assert sourced.source == {"commit": "c", "author": "a", "date": "d"}
    invalid = transitions.invalid(InvalidProject("demo", "desired/demo.yaml", "bad"), sourced)
    assert invalid.phase is Phase.invalid and invalid.commit == COMMIT
    placed = transitions.placed(transitions.building(pending(), build()), "n1 worker")
    assert placed.build is not None and placed.build.node == "n1 worker"
    assert transitions.waiting(placed).phase is Phase.pending


def test_timeouts_and_due_retries_are_measured_against_now() -> None:
    running = transitions.building(pending(), build())
    assert running.build is not None
    assert not transitions.overdue(running.build, 60, NOW + timedelta(seconds=60))
    assert transitions.overdue(running.build, 60, NOW + timedelta(seconds=61))
    assert transitions.seconds_to_timeouts([running, pending()], 60,
                                           NOW + timedelta(seconds=15)) == [45]
    failed = transitions.failed(pending(), BUILD_FAILED, NOW, CONFIG)
    assert transitions.seconds_to_retry([failed, running], NOW) == 10
    assert transitions.seconds_to_retry([failed], NOW + timedelta(hours=1)) == 0
    assert transitions.seconds_to_retry([running], NOW) is None
    assert transitions.stamped(failed, NOW).updated_at == "2026-11-30T12:00:00.000Z"


# -- any sequence -------------------------------------------------------------------------------

Step = Callable[[ProjectRecord], ProjectRecord]
STEPS: dict[str, Step] = {
    "observed pending": lambda r: transitions.observed(
        desired(), Phase.pending, commit=COMMIT, images=IMAGES, served_by="k" * 16, keep=r),
    "observed ready": lambda r: transitions.observed(
        desired(), Phase.ready, commit=COMMIT, images=IMAGES, served_by="k" * 16, keep=r),
    "image inputs changed": lambda r: transitions.observed(
        desired(flavor="pytorch"), Phase.pending, commit=COMMIT, images=IMAGES,
        served_by="p" * 16, keep=None),
    "sla edited": lambda r: transitions.with_sla(r, desired(rounds=5)),
    "building": lambda r: transitions.building(r, build(r.served_by or "k" * 16)),
    "joined": lambda r: transitions.joined(r, build("j" * 16)),
    "events": lambda r: transitions.events_logged(r, 3) if r.build else r,
    "placed": lambda r: transitions.placed(r, "n1 worker") if r.build else r,
    "waiting": transitions.waiting,
    "succeeded": lambda r: transitions.succeeded(r, SUCCESS),
    "build failed": lambda r: transitions.failed(r, BUILD_FAILED, NOW, CONFIG),
    "outage": lambda r: transitions.failed(r, OUTAGE, NOW, CONFIG),
    "rearmed": lambda r: transitions.rearmed(r) if r.phase is Phase.failed else r,
    "source": lambda r: transitions.with_source(r, {"commit": "c", "author": "a", "date": "d"}),
    "stamped": lambda r: transitions.stamped(r, NOW),
    "invalid": lambda r: transitions.invalid(InvalidProject("demo", "d.yaml", "bad"), r),
}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(sorted(STEPS)), max_size=25))
def test_any_sequence_of_transitions_leaves_a_record_that_validates(steps: list[str]) -> None:
    record = pending()
    for step in steps:
        record = STEPS[step](record)
        assert transitions.record_problems(record) == [], (step, record)
        assert parse_record(record_json(record)) == record
