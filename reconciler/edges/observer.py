"""Per-project observer logs: the lines a user reads with ``tail -f``.

Decision: one event is one ``write`` of one or more complete lines on a file opened with
O_APPEND, so concurrent writers (build threads, a second pass) never interleave inside a line.
Format: ``<ISO-8601 UTC> <LEVEL> <stage> <message>``; multi-line output is indented below.
Every line is made visible (no terminal control reaches a ``tail -f``) and bounded: an event is
at most ``LINE_LIMIT`` characters a line and ``DETAIL_LIMIT`` indented lines. A log that has
grown past ``rotate_bytes`` is renamed ``<project>.log.1`` (older ones shift up to ``keep``)
before the next event, so a project's logs never hold more than ``(keep + 1) * rotate_bytes``
plus one event.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from reconciler.core.text import cut_lines, shown
from reconciler.edges.clock import utc_now_iso

LEVELS = ("INFO", "WARN", "ERROR")
DETAIL_INDENT = "    "
LINE_LIMIT = 2000
DETAIL_LIMIT = 50
ROTATE_BYTES = 10 * 1024 * 1024
KEEP = 3


def format_event(
    now: str, level: str, stage: str, message: str, details: Iterable[str] = ()
) -> str:
    if level not in LEVELS:
        raise ValueError(f"unknown level {level}")
    first, *rest = (message.strip() or "-").splitlines() or ["-"]
    stage_word = shown("".join(stage.split()), 80) or "-"
    lines = [f"{now} {level} {stage_word} {shown(first, LINE_LIMIT)}"]
    extra = [part.rstrip() for text in [*rest, *details] for part in text.splitlines() or [""]]
    lines.extend(DETAIL_INDENT + part for part in cut_lines(extra, DETAIL_LIMIT, LINE_LIMIT))
    return "\n".join(lines) + "\n"


class ObserverLog:
    def __init__(self, path_for: Callable[[str], Path], clock: Callable[[], str] = utc_now_iso,
                 *, rotate_bytes: int = ROTATE_BYTES, keep: int = KEEP) -> None:
        self._path_for = path_for
        self._clock = clock
        self._rotate_bytes = rotate_bytes
        self._keep = keep
        self._rotating = threading.Lock()

    def path(self, project: str) -> Path:
        return self._path_for(project)

    def write(
        self,
        project: str,
        level: str,
        stage: str,
        message: str,
        details: Iterable[str] = (),
        at: str | None = None,
    ) -> None:
        """Append one event; ``at`` replaces the clock (builder events carry their own time)."""
        self.append(project, format_event(at or self._clock(), level, stage, message, details))

    def append(self, project: str, text: str) -> None:
        """Append text already formatted by :func:`format_event` (one event or several)."""
        path = self._path_for(project)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._rotate_if_full(path)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            os.write(fd, text.encode("utf-8", "replace"))
        finally:
            os.close(fd)

    def _rotate_if_full(self, path: Path) -> None:
        with self._rotating:
            try:
                if path.stat().st_size < self._rotate_bytes:
                    return
            except FileNotFoundError:
                return
            for index in range(self._keep, 0, -1):
                older = path.with_name(f"{path.name}.{index}")
                if index == self._keep:
                    older.unlink(missing_ok=True)
                newer = path.with_name(f"{path.name}.{index - 1}") if index > 1 else path
                with contextlib.suppress(FileNotFoundError):
                    newer.rename(older)

    def ends_with(self, project: str, text: str) -> bool:
        """Whether the log's last bytes are exactly ``text`` (an event written just before)."""
        data = text.encode("utf-8", "replace")
        try:
            with self._path_for(project).open("rb") as stream:
                stream.seek(0, os.SEEK_END)
                size = stream.tell()
                if size < len(data):
                    return False
                stream.seek(size - len(data))
                return stream.read() == data
        except FileNotFoundError:
            return False

    def info(self, project: str, stage: str, message: str) -> None:
        self.write(project, "INFO", stage, message)

    def warn(self, project: str, stage: str, message: str) -> None:
        self.write(project, "WARN", stage, message)

    def error(self, project: str, stage: str, message: str, details: Iterable[str] = ()) -> None:
        self.write(project, "ERROR", stage, message, details)
