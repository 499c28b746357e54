"""When to try a failed build again: exponential backoff with a cap and an attempt limit.

Decision: only failures of the build itself (the user's repository, its dependencies, the
build or the push) count as attempts; an outage of the engine, registry or git remote is
retried on every pass without using attempts up, because it is not the project's fault.
"""

from __future__ import annotations

from datetime import datetime, timedelta

COUNTED_CATEGORIES = ("repo", "dependencies", "build", "push")


def counts_as_attempt(error: str) -> bool:
    """Errors are written ``<category>: <message>``; only build failures use an attempt."""
    return error.split(":", 1)[0].strip() in COUNTED_CATEGORIES


def backoff_seconds(attempts: int, base: float, cap: float) -> float:
    """The wait after the ``attempts``-th failure: base, 2*base, 4*base, ... up to cap."""
    return float(min(cap, base * 2 ** max(attempts - 1, 0)))


def retry_time(now: datetime, attempts: int, base: float, cap: float) -> datetime:
    return now + timedelta(seconds=backoff_seconds(attempts, base, cap))
