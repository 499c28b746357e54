"""The controller's book of project records: the in-memory view of the state directory.

Decision: one process owns a state directory (the lock), so the records are read from disk
once and every change goes through ``put``/``drop``, which write the file first and then the
memory, under one lock. Build threads and the pass therefore always see the same records,
and what is in memory is never ahead of what a restart would read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from reconciler.core.events import LogLine
from reconciler.core.project import ProjectRecord
from reconciler.edges.clock import utc_now_iso
from reconciler.edges.observer import KEEP, ROTATE_BYTES, ObserverLog
from reconciler.edges.state import StateStore


class RecordBook:
    def __init__(self, store: StateStore, *, log_max_bytes: int = ROTATE_BYTES,
                 log_keep: int = KEEP) -> None:
        self.store = store
        self.log = ObserverLog(store.observer_path, rotate_bytes=log_max_bytes, keep=log_keep)
        self._records = store.load_all()
        self._lock = threading.RLock()

    @contextmanager
    def locked(self) -> Iterator[dict[str, ProjectRecord]]:
        with self._lock:
            yield self._records

    def snapshot(self) -> dict[str, ProjectRecord]:
        with self._lock:
            return dict(self._records)

    def get(self, project: str) -> ProjectRecord | None:
        with self._lock:
            return self._records.get(project)

    def put(self, record: ProjectRecord) -> ProjectRecord:
        record = record.model_copy(update={"updated_at": utc_now_iso()})
        with self._lock:
            self.store.save(record)
            self._records[record.project] = record
        return record

    def change(self, project: str, **fields: object) -> ProjectRecord | None:
        """Update fields of a record that still exists; None when it is gone."""
        with self._lock:
            record = self._records.get(project)
            return None if record is None else self.put(record.model_copy(update=fields))

    def drop(self, project: str) -> None:
        with self._lock:
            self.store.delete(project)
            self._records.pop(project, None)

    def subscribers(self, builder: str) -> list[ProjectRecord]:
        """The projects whose current build is the builder named ``builder``."""
        with self._lock:
            return [
                r for r in self._records.values() if r.build is not None and r.build.name == builder
            ]

    def write(self, project: str, line: LogLine, at: str | None = None) -> None:
        self.log.write(project, line.level, line.stage, line.message, line.details, at=at)

    def matching(self, predicate: Callable[[ProjectRecord], bool]) -> list[ProjectRecord]:
        with self._lock:
            return [r for r in self._records.values() if predicate(r)]
