"""Noticing changes in the desired directory (and retry requests) with watchfiles.

Decision: the watcher only says "something changed" (it calls ``on_change``); it never says
what. The controller then re-reads the whole directory, so a burst of edits coalesces into one
pass and a missed or merged notification can never lead to a wrong state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import watchfiles


def start_watching(
    paths: list[Path], on_change: Callable[[], None], stop: threading.Event
) -> threading.Thread:
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)

    def run() -> None:
        for _ in watchfiles.watch(
            *paths, stop_event=stop, debounce=50, step=20, raise_interrupt=False,
            rust_timeout=1000, yield_on_timeout=False,
        ):
            on_change()

    thread = threading.Thread(target=run, name="watch-desired", daemon=True)
    thread.start()
    return thread
