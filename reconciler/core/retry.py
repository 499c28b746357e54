"""When to try a failed build again: exponential backoff with a cap and an attempt limit.

Decision: only failures of the build itself (the user's repository, its dependencies, the
build or the push) count as attempts and can exhaust them. Failures that are not the
project's fault (an outage of the engine, registry or git remote; no node that may build)
back off the same way, counted separately, but never exhaust: the project recovers by itself
once the cause is gone.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from reconciler.core.config import Config
from reconciler.core.failure import BUILD_CATEGORIES, TRAINING_CATEGORIES, Failure
from reconciler.core.record import Phase, ProjectRecord, TrainingPhase


def counts_as_attempt(category: str) -> bool:
    """Only the project's own failures use an attempt: its build (repo, dependencies, build,
    push) or its training run (data, learner, aggregator)."""
    return category in BUILD_CATEGORIES or category in TRAINING_CATEGORIES


def backoff_seconds(attempts: int, base: float, cap: float) -> float:
    """The wait after the ``attempts``-th failure: base, 2*base, 4*base, ... up to cap."""
    return float(min(cap, base * 2 ** max(attempts - 1, 0)))


def retry_time(now: datetime, attempts: int, base: float, cap: float) -> datetime:
    return now + timedelta(seconds=backoff_seconds(attempts, base, cap))


def failed_record(record: ProjectRecord, failure: Failure, now: datetime,
                  config: Config) -> ProjectRecord:
    """The record after a failure: attempts or waits, backoff and exhaustion."""
    counted = counts_as_attempt(failure.category)
    attempts = record.attempts + (1 if counted else 0)
    waits = 0 if counted else record.waits + 1
    exhausted = counted and attempts >= config.max_attempts
    retry_at = None if exhausted else retry_time(
        now, attempts if counted else waits, config.retry_base, config.retry_cap
    ).isoformat(timespec="milliseconds")
    training = record.training
    if training is not None and training.phase is TrainingPhase.running:
        training = replace(training, phase=TrainingPhase.failed)
    return replace(record, phase=Phase.failed, error=failure.text,
                   error_category=failure.category, build=None, attempts=attempts,
                   waits=waits, exhausted=exhausted, retry_at=retry_at, training=training)
