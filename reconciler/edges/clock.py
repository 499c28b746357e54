"""The clock: wall-clock and monotonic time, from one object that can be replaced in tests.

Decision: the control layer (controller, build runner, record book) never asks
``datetime.now`` or ``time.monotonic`` itself; the workspace hands it one ``Clock``, so a test
drives backoffs, timeouts and resyncs with a clock it moves by hand.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

from reconciler.core.times import utc_iso

__all__ = ["Clock", "SystemClock", "utc_iso", "utc_now_iso"]


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for waits and intervals)."""

    def sleep(self, seconds: float) -> None:
        """Wait (a follower thread's pause between two looks at Docker)."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def utc_now_iso() -> str:
    """ISO-8601 UTC with milliseconds, e.g. ``2026-11-28T01:24:20.123Z``."""
    return utc_iso(datetime.now(UTC))
