"""Presentation: status rows, the status table and the live progress of ``apply --wait``.

Decision: a terminal gets rich's table and a live per-project view; anything else (a pipe, a
CI log) gets plain, stable lines, because that is what scripts and log collectors read.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from reconciler.core.project import ProjectRecord
from reconciler.core.text import visible
from reconciler.edges.state import StateStore


def status_row(record: ProjectRecord, store: StateStore) -> dict[str, Any]:
    return {
        "project": record.project,
        "phase": record.phase.value,
        "commit": record.commit,
        "images": record.images,
        "digests": record.digests,
        "timings": record.timings,
        "repairs": record.repairs,
        "repair_diffs": [repair.as_json() for repair in record.repair_diffs],
        "base_image": record.base_image,
        "error": record.error,
        "observer_log": str(store.observer_path(record.project)),
        "sla_file": record.sla_file,
        "source": record.source,
        "builder": record.build.name if record.build else None,
        "builder_node": record.build.node if record.build else None,
        "build_key": record.served_by,
        "attempts": record.attempts,
        "waits": record.waits,
        "retry_at": record.retry_at,
        "exhausted": record.exhausted,
        "updated_at": record.updated_at,
    }


def print_status(rows: list[dict[str, Any]], out: TextIO) -> None:
    """Every cell is data (an error may quote an SLA value): shown as plain text, never read as
    rich markup, with terminal control made visible."""
    if out.isatty():
        table = Table("project", "phase", "commit", "images / error", "desired source")
        for row in rows:
            detail = row["error"] or "\n".join(row["images"].values())
            table.add_row(_plain(row["project"]), _coloured(row["phase"]),
                          _short(row["commit"]), _plain(detail), _plain(_source(row["source"])))
        Console(file=out).print(table)
        return
    for row in rows:
        detail = row["error"] or " ".join(f"{k}={v}" for k, v in sorted(row["images"].items()))
        out.write(visible(f"{row['project']}\t{row['phase']}\t{_short(row['commit'])}\t{detail}"
                          f"\t{_source(row['source'])}") + "\n")


def _plain(text: str) -> Text:
    return Text(visible(text, keep_newlines=True))


class Progress:
    """Receives (project, stage text) reports from the pass, from any thread."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out
        self.live = out.isatty()
        self._lock = threading.Lock()
        self._stages: dict[str, tuple[str, float]] = {}
        self._view: Live | None = None

    def __call__(self, project: str, stage: str) -> None:
        with self._lock:
            # Elapsed time counts from the project's first report in this pass.
            since = self._stages.get(project, (stage, time.monotonic()))[1]
            self._stages[project] = (stage, since)
            if self._view is not None:
                self._view.update(self._table())
            elif not self.live:
                self.out.write(visible(f"{project}: {stage}") + "\n")
                self.out.flush()

    def __enter__(self) -> Progress:
        if self.live:
            self._view = Live(
                self._table(), console=Console(file=self.out), refresh_per_second=4,
                get_renderable=self._table,
            )
            self._view.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._view is not None:
            self._view.__exit__(kind, value, trace)
            self._view = None

    def _table(self) -> Table:
        table = Table("project", "stage", "elapsed")
        now = time.monotonic()
        for project, (stage, since) in sorted(self._stages.items()):
            table.add_row(_plain(project), _plain(stage), f"{now - since:5.1f}s")
        return table


def _source(source: dict[str, str] | None) -> str:
    if not source:
        return "-"
    return f"{source['commit'][:12]} {source['author']} {source['date']}"


def _short(commit: str | None) -> str:
    return commit[:12] if commit else "-"


def _coloured(phase: str) -> Text:
    colour = {"ready": "green", "failed": "red", "invalid": "red", "corrupt": "red",
              "building": "yellow"}
    return Text(phase, style=colour.get(phase, "white"))
