"""The state directory: one JSON record per project, written atomically, guarded by a lock.

Decision: a record is replaced, never edited: write a temporary file in the same directory,
fsync it, rename it over the old one and fsync the directory. A crash at any instant leaves
the previous or the next record, never a torn one. Keys are checked before they become file
names, so nothing outside the state directory can ever be written.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from reconciler.core.record import Phase, ProjectRecord, parse_record, record_json

# Project names, storage keys of badly named files (`slug~hash`) and builder names: no dots or
# slashes, so a key can never leave its directory.
_KEY = re.compile(r"^[a-z0-9_-]{1,63}(~[0-9a-f]{8})?$")


class LockHeld(RuntimeError):
    """Another reconciler owns this state directory."""


class StateStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.projects_dir = root / "projects"
        self.observers_dir = root / "observers"
        self.builds_dir = root / "builds"

    def record_path(self, key: str) -> Path:
        return self.projects_dir / f"{checked_key(key)}.json"

    def observer_path(self, key: str) -> Path:
        return self.observers_dir / f"{checked_key(key)}.log"

    def build_dir(self, builder_name: str) -> Path:
        return self.builds_dir / checked_key(builder_name)

    def load_all(self) -> dict[str, ProjectRecord]:
        """Every record; one that cannot be read stands in as a `corrupt` record naming the
        file and the reason (the file itself is left alone)."""
        records: dict[str, ProjectRecord] = {}
        if not self.projects_dir.is_dir():
            return records
        for path in self.projects_dir.glob("*.json"):
            if _KEY.match(path.stem):
                record = self._read(path)
                records[record.project] = record
        return records

    def load(self, key: str) -> ProjectRecord | None:
        path = self.record_path(key)
        return self._read(path) if path.exists() else None

    def save(self, record: ProjectRecord) -> None:
        if record.phase is Phase.corrupt:  # a stand-in: the file on disk stays as it is
            raise ValueError(f"refusing to overwrite the corrupt record of {record.project}")
        atomic_write(self.record_path(record.project), record_json(record))

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.record_path(key).unlink()
        _fsync_dir(self.projects_dir)

    @contextlib.contextmanager
    def lock(self, command: str) -> Iterator[None]:
        """Hold the directory's lock; raise LockHeld naming the holder when it is taken."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / "lock"
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "an unknown process"
            handle.close()
            raise LockHeld(
                f"state directory {self.root} is in use by {holder}; stop that reconciler "
                "or use another --state directory"
            ) from None
        try:
            _write_holder(handle, command)
            yield
        finally:
            handle.truncate(0)
            handle.close()

    @staticmethod
    def _read(path: Path) -> ProjectRecord:
        try:
            record = parse_record(path.read_bytes())
            if record.project == path.stem:
                return record
            why = f"it names project {record.project[:80]!r}, not {path.stem!r}"
        except (OSError, ValueError) as error:
            why = _first_line(error)
        return ProjectRecord(
            project=path.stem, phase=Phase.corrupt, sla_file="",
            error=f"state record {path} cannot be read ({why}); nothing is done for this "
                  "project until it is repaired or removed (removing it makes the next pass "
                  "start the project afresh)",
        )


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines() or [type(error).__name__]
    return lines[0][:200] if len(lines) == 1 else f"{lines[0][:100]} {lines[-1].strip()[:100]}"


def checked_key(key: str) -> str:
    if not _KEY.match(key):
        raise ValueError(f"refusing unsafe state key {key!r}")
    return key


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_holder(handle: IO[str], command: str) -> None:
    handle.seek(0)
    handle.truncate(0)
    handle.write(
        json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command})
    )
    handle.flush()
