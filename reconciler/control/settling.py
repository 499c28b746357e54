"""Clean-ups that follow a recorded result (a builder or a training run removed once its
outcome is in the record), let finish when a watch stops.

Decision: a follower says "I am cleaning up" *before* it writes the result, and a stopping
watch waits (bounded) for exactly those followers; followers still waiting for a builder or a
run are not waited for: they are adopted by the next start. So whoever sees a project's new
phase and then stops the watch finds nothing of that build or run left behind, and a stop is
never held up by work that has not ended.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator


class Settling:
    """The threads between writing a result and removing what produced it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()

    @contextlib.contextmanager
    def cleaning_up(self) -> Iterator[None]:
        """Around writing a result and the removal that follows it."""
        thread = threading.current_thread()
        with self._lock:
            self._threads.add(thread)
        try:
            yield
        finally:
            with self._lock:
                self._threads.discard(thread)

    def wait(self, timeout: float) -> bool:
        """Wait until no clean-up is under way, at most ``timeout`` seconds; whether none is."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                threads = [t for t in self._threads if t is not threading.current_thread()]
            if not threads:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            threads[0].join(min(left, 0.5))
