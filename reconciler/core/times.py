"""Timestamps as the reconciler writes them: ISO-8601 UTC with milliseconds and a ``Z``.

Decision: one format everywhere (records, observer logs, builder output), produced and read
here; the current time itself comes from the clock edge (``edges/clock.py``), never from here.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_iso(moment: datetime) -> str:
    """``moment`` (timezone-aware) as e.g. ``2026-11-28T01:24:20.123Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_utc(text: str) -> datetime:
    """A timestamp written by :func:`utc_iso` (or with ``+00:00``) as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
