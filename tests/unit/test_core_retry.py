"""The retry policy: which failures use up attempts, how long each wait is, when it stops."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reconciler.core.config import Config
from reconciler.core.failure import Failure
from reconciler.core.project import Phase, ProjectRecord
from reconciler.core.retry import backoff_seconds, counts_as_attempt, failed_record

NOW = datetime(2026, 11, 28, 4, 0, tzinfo=UTC)
CONFIG = Config(retry_base=10, retry_cap=60, max_attempts=3)
BUILD_FAILED = Failure("build", "the Dockerfile step failed")
NO_NODE = Failure("infrastructure", "no image-builder node: no suitable node")


def wait_of(record: ProjectRecord) -> float:
    assert record.retry_at is not None
    return (datetime.fromisoformat(record.retry_at) - NOW).total_seconds()


@pytest.mark.parametrize(("category", "counted"), [
    ("repo", True), ("dependencies", True), ("build", True), ("push", True),
    ("infrastructure", False), ("", False), ("an unknown category", False),
])
def test_only_failures_of_the_build_itself_count_as_attempts(category: str, counted: bool) -> None:
    assert counts_as_attempt(category) is counted


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_seconds(n, 10, 60) for n in range(1, 6)] == [10, 20, 40, 60, 60]


def test_build_failures_back_off_and_exhaust() -> None:
    record = ProjectRecord(project="p", sla_file="desired/p.yaml", phase=Phase.building)
    waits = []
    for _ in range(3):
        record = failed_record(record, BUILD_FAILED, NOW, CONFIG)
        if record.retry_at is not None:
            waits.append(wait_of(record))
    assert waits == [10, 20]
    assert record.attempts == 3 and record.exhausted and record.retry_at is None
    assert record.phase is Phase.failed and record.error == "build: the Dockerfile step failed"
    assert record.error_category == "build"


def test_failures_that_are_not_the_projects_back_off_but_never_exhaust() -> None:
    record = ProjectRecord(project="p", sla_file="desired/p.yaml", phase=Phase.building)
    waits = []
    for _ in range(6):
        record = failed_record(record, NO_NODE, NOW, CONFIG)
        waits.append(wait_of(record))
    assert waits == [10, 20, 40, 60, 60, 60]
    assert record.attempts == 0 and record.waits == 6 and not record.exhausted


def test_a_build_failure_after_waits_starts_the_attempt_count_and_ends_the_waits() -> None:
    record = ProjectRecord(project="p", sla_file="desired/p.yaml", phase=Phase.building,
                           waits=4, attempts=1)
    record = failed_record(record, BUILD_FAILED, NOW, CONFIG)
    assert record.waits == 0 and record.attempts == 2
    assert wait_of(record) == 20
    assert datetime.fromisoformat(str(record.retry_at)) < NOW + timedelta(minutes=1)
