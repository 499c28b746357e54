"""Per-project observer logs: the lines a user reads with ``tail -f``.

Decision: one event is one ``write`` of one or more complete lines on a file opened with
O_APPEND, so concurrent writers (build threads, a second pass) never interleave inside a line.
Format: ``<ISO-8601 UTC> <LEVEL> <stage> <message>``; multi-line output is indented below.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from reconciler.edges.clock import utc_now_iso

LEVELS = ("INFO", "WARN", "ERROR")
DETAIL_INDENT = "    "


def format_event(
    now: str, level: str, stage: str, message: str, details: Iterable[str] = ()
) -> str:
    if level not in LEVELS:
        raise ValueError(f"unknown level {level}")
    first, *rest = (message.strip() or "-").splitlines() or ["-"]
    stage_word = "".join(stage.split()) or "-"
    lines = [f"{now} {level} {stage_word} {first}"]
    for extra in [*rest, *details]:
        lines.extend(DETAIL_INDENT + part.rstrip() for part in extra.splitlines() or [""])
    return "\n".join(lines) + "\n"


class ObserverLog:
    def __init__(self, path_for: Callable[[str], Path], clock: Callable[[], str] = utc_now_iso):
        self._path_for = path_for
        self._clock = clock

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
        text = format_event(at or self._clock(), level, stage, message, details)
        path = self._path_for(project)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, text.encode("utf-8", "replace"))
        finally:
            os.close(fd)

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
