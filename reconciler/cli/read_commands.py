"""The read commands that need no configuration: `status` and `logs`.

Decision: they read only the state directory, so they import only the state store and the
plain presentation: no configuration, no validation library, no Docker client. `status --json`
on a hundred projects starts about as fast as the interpreter (bench/startup.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from reconciler.cli.present import dump_json, print_status, status_row
from reconciler.edges.state import StateStore

OK, PROBLEMS = 0, 1


def status(args: argparse.Namespace) -> int:
    store = StateStore(args.state)
    records = store.load_all()
    rows = [status_row(r, store) for _, r in sorted(records.items())]
    if args.project:
        rows = [row for row in rows if row["project"] == args.project]
    if args.json:
        dump_json(rows)
    else:
        print_status(rows, sys.stdout)
    return OK


def logs(args: argparse.Namespace) -> int:
    store = StateStore(args.state)
    try:
        path = store.observer_path(args.project)
    except ValueError:
        path = None
    if path is None or not path.exists():
        print(f"reconciler: no observer log for project {args.project!r}", file=sys.stderr)
        return PROBLEMS
    stream = path.open(encoding="utf-8", errors="replace")
    try:
        sys.stdout.write(stream.read())
        sys.stdout.flush()
        if args.follow:
            import watchfiles  # only a follower watches the directory

            # The directory, not the file: a rotation renames the file away.
            # The timeout makes it look at least twice a second even when no change was
            # reported (one written before the watcher started, or a missed event).
            for _ in watchfiles.watch(path.parent, raise_interrupt=False, debounce=50, step=20,
                                      rust_timeout=500, yield_on_timeout=True):
                sys.stdout.write(stream.read())
                if _rotated(path, stream.fileno()):  # go on with the new file, from its start
                    stream.close()
                    stream = path.open(encoding="utf-8", errors="replace")
                    sys.stdout.write(stream.read())
                sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        stream.close()
    return OK


def _rotated(path: Path, fd: int) -> bool:
    try:
        return path.stat().st_ino != os.fstat(fd).st_ino
    except FileNotFoundError:
        return False
