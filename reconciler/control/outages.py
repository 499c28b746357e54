"""Endpoints that are down (an engine, the registry, a git remote), reported once each.

Decision: a pass meets the same outage again and again; the tracker remembers which endpoints
are down, so an outage is reported when it starts and when it ends, never once per pass, and
callers learn whether a failure is new (they warn in the observer logs only then).
"""

from __future__ import annotations

import threading

from reconciler.control.reports import Notice, Report


class Outages:
    """The controller's record of unavailable endpoints.

    Where it sits: owned by the controller and shared with its build runner; the pass and the
    follower threads report failures and recoveries to it. It owns the set of endpoints that
    are down and tells the operator through the controller's ``Report`` callback.
    """

    def __init__(self, report: Report) -> None:
        self._report = report
        self._down: dict[str, str] = {}
        self._lock = threading.Lock()

    def failed(self, endpoint: str, error: str) -> bool:
        """Record a failure; True when it starts a new outage (the caller reports it)."""
        with self._lock:
            new = endpoint not in self._down
            self._down[endpoint] = error
        if new:
            self._report(Notice(f"reconciler: {endpoint} is unavailable: {error}", trouble=True))
        return new

    def recovered(self, endpoint: str) -> None:
        with self._lock:
            was_down = self._down.pop(endpoint, None) is not None
        if was_down:
            self._report(Notice(f"reconciler: {endpoint} is available again", trouble=True))

    def down(self) -> dict[str, str]:
        """Endpoint -> the last error, for every endpoint that is down now."""
        with self._lock:
            return dict(self._down)
