"""The record book: the one door through which the control layer changes anything it keeps.

Decision: one process owns a state directory (the lock), so the records are read from disk
once, and every change is a record from ``core/transitions.py`` handed to ``put`` (or a
``drop``), which writes the file first and then the memory, under one lock. Build threads and
the pass therefore always see the same records, and what is in memory is never ahead of what a
restart would read. Everything a user reads goes through the same object as intents (``note``,
``warn``, ``fail``, ``events``), each formatted once into observer-log text.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from reconciler.core.events import LogLine
from reconciler.core.project import ProjectRecord
from reconciler.core.times import utc_iso
from reconciler.core.transitions import stamped
from reconciler.edges.clock import Clock
from reconciler.edges.observer import KEEP, ROTATE_BYTES, ObserverLog, format_event
from reconciler.edges.state import StateStore


class RecordBook:
    """The controller's and the build runner's view of every project: its record and its
    observer log.

    Where it sits: below the controller (passes) and the build runner (follower threads),
    above the state store and the observer logs. It owns the in-memory records and their
    lock; it decides nothing about them (that is ``core/transitions.py``).
    """

    def __init__(self, store: StateStore, clock: Clock, *, log_max_bytes: int = ROTATE_BYTES,
                 log_keep: int = KEEP) -> None:
        self.store = store
        self._clock = clock
        self._log = ObserverLog(store.observer_path, lambda: utc_iso(clock.now()),
                                rotate_bytes=log_max_bytes, keep=log_keep)
        self._records = store.load_all()
        self._lock = threading.RLock()

    # -- records ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, ProjectRecord]:
        with self._lock:
            return dict(self._records)

    def get(self, project: str) -> ProjectRecord | None:
        with self._lock:
            return self._records.get(project)

    def put(self, record: ProjectRecord) -> ProjectRecord:
        record = stamped(record, self._clock.now())
        with self._lock:
            self.store.save(record)
            self._records[record.project] = record
        return record

    def change(self, project: str,
               transition: Callable[[ProjectRecord], ProjectRecord]) -> ProjectRecord | None:
        """Apply ``transition`` to the project's record if it still exists (None when gone),
        under the lock, so a build thread and the pass never lose each other's change."""
        with self._lock:
            record = self._records.get(project)
            return None if record is None else self.put(transition(record))

    def drop(self, project: str) -> None:
        with self._lock:
            self.store.delete(project)
            self._records.pop(project, None)

    def subscribers(self, builder: str) -> list[ProjectRecord]:
        """The projects whose current build is the builder named ``builder``."""
        return self.matching(lambda r: r.build is not None and r.build.name == builder)

    def matching(self, predicate: Callable[[ProjectRecord], bool]) -> list[ProjectRecord]:
        with self._lock:
            return [r for r in self._records.values() if predicate(r)]

    # -- what users read --------------------------------------------------------------------

    def note(self, project: str, stage: str, message: str) -> None:
        self._log.write(project, "INFO", stage, message)

    def warn(self, project: str, stage: str, message: str) -> None:
        self._log.write(project, "WARN", stage, message)

    def fail(self, project: str, stage: str, message: str, details: Iterable[str] = ()) -> None:
        self._log.write(project, "ERROR", stage, message, details)

    def events(self, project: str, lines: list[LogLine], at: str, *, resumed: bool) -> bool:
        """One builder event's lines, stamped with Docker's time for its output line; False
        when they were in the log already. ``resumed``: the first event after a restart,
        which may have been written just before a crash: not written again when the log
        already ends with it."""
        text = "".join(format_event(at, line.level, line.stage, line.message, line.details)
                       for line in lines)
        if resumed and self._log.ends_with(project, text):
            return False
        self._log.append(project, text)
        return True
