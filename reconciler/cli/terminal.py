"""What a terminal shows: rich tables for status and the live progress of a pass.

Decision: every cell is data (an error may quote an SLA value), so it is shown as plain text,
never read as rich markup, with terminal control made visible. Only commands writing to a
terminal import this module (and rich with it).
"""

from __future__ import annotations

from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from reconciler.cli.present import phase_text, short_commit, source_text
from reconciler.core.text import visible

PHASE_COLOURS = {"ready": "green", "trained": "green", "failed": "red", "invalid": "red",
                 "corrupt": "red", "building": "yellow", "training": "yellow"}


def print_table(rows: list[dict[str, Any]], out: TextIO) -> None:
    table = Table("project", "phase", "commit", "images / error", "desired source")
    for row in rows:
        detail = row["error"] or "\n".join(row["images"].values())
        table.add_row(plain(row["project"]), coloured(row["phase"], phase_text(row)),
                      short_commit(row["commit"]), plain(detail),
                      plain(source_text(row["source"])))
    Console(file=out).print(table)


def plain(text: str) -> Text:
    return Text(visible(text, keep_newlines=True))


def coloured(phase: str, text: str | None = None) -> Text:
    return Text(text or phase, style=PHASE_COLOURS.get(phase, "white"))
