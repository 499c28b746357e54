"""`reconciler apply` and `reconciler watch`: passes of the controller, with their progress.

Decision: both take the state directory's lock first (one controller per state directory),
hand the controller a workspace and a progress view, and map the records it leaves to the
exit codes of DESIGN §3; `watch` stops on SIGINT or SIGTERM (once the builders and runs whose
results it has recorded are removed) and leaves running builders and runs to
the next start.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from types import FrameType

from reconciler.cli.options import OK, PROBLEMS, workspace
from reconciler.cli.present import dump_json, print_status, status_row
from reconciler.cli.progress import Progress
from reconciler.control.controller import Controller
from reconciler.core.project import Phase, ProjectRecord
from reconciler.edges.desired import sla_files


def apply(args: argparse.Namespace) -> int:
    ws = workspace(args)
    with ws.store.lock("reconciler apply"):
        progress = Progress(sys.stderr if args.json else sys.stdout)
        with progress if args.wait else contextlib.nullcontext():
            records = Controller(ws, report=progress).apply(wait=args.wait)
    rows = [status_row(r, ws.store) for _, r in sorted(records.items())]
    if args.json:
        dump_json(rows)
    else:
        print_status(rows, sys.stdout)
    return apply_exit_code(list(records.values()))


def apply_exit_code(records: list[ProjectRecord]) -> int:
    """0 when every project is ready (or still building without failure), 1 otherwise."""
    if any(r.phase in (Phase.failed, Phase.invalid, Phase.corrupt) for r in records):
        return PROBLEMS
    return OK


def watch(args: argparse.Namespace) -> int:
    ws = workspace(args)
    sla_files(ws.desired_dir)  # a missing desired directory stops the start, exit 2
    stop = threading.Event()
    with ws.store.lock("reconciler watch"):
        controller = Controller(ws, report=Progress(sys.stdout))

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()
            controller.wake.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        print(f"watching {ws.desired_dir} (resync every {ws.config.resync_interval:g}s)",
              flush=True)
        controller.watch(stop)
    print("stopped; running builders are adopted by the next start", flush=True)
    return OK
