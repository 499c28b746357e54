"""The live view of a pass: each project's stage, and the notices of the reconciler itself.

Decision: the controller reports through one callback; on a terminal the stages are a live
rich table, anywhere else one plain line per report. Notices about the reconciler as a whole
(an outage, a pull) are lines of their own: trouble on stderr, the rest on the same stream as
the stages (stderr when stdout carries JSON).
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from reconciler.cli.terminal import plain
from reconciler.control.reports import Notice, StageReport
from reconciler.core.text import visible


class Progress:
    """Receives the controller's reports, from any thread."""

    def __init__(self, out: TextIO = sys.stdout, trouble: TextIO | None = None) -> None:
        self.out = out
        self.trouble = trouble or sys.stderr
        self.live = out.isatty()
        self._lock = threading.Lock()
        self._stages: dict[str, tuple[str, float]] = {}
        self._view: Live | None = None

    def __call__(self, report: StageReport | Notice) -> None:
        if isinstance(report, Notice):
            self._notice(report)
            return
        with self._lock:
            # Elapsed time counts from the project's first report in this pass.
            since = self._stages.get(report.project, (report.stage, time.monotonic()))[1]
            self._stages[report.project] = (report.stage, since)
            if self._view is not None:
                self._view.update(self._table())
            elif not self.live:
                self.out.write(visible(f"{report.project}: {report.stage}") + "\n")
                self.out.flush()

    def _notice(self, notice: Notice) -> None:
        stream = self.trouble if notice.trouble else self.out
        with self._lock:
            print(notice.text, file=stream, flush=True)

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
            table.add_row(plain(project), plain(stage), f"{now - since:5.1f}s")
        return table
