"""Wall-clock and monotonic time, in one place so that timestamps have one format."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def utc_now_iso() -> str:
    """ISO-8601 UTC with milliseconds, e.g. ``2026-11-28T01:24:20.123Z``."""
    return utc_iso(datetime.now(UTC))


def utc_iso(moment: datetime) -> str:
    """``moment`` (timezone-aware) in the format of :func:`utc_now_iso`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def monotonic() -> float:
    return time.monotonic()
