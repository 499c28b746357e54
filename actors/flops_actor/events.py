"""The event channel: one JSON object per line on stdout, each with a ``"type"`` key.

Decision: at start-up the program keeps the real stdout for events and points file
descriptor 1 (and so ``print``, Flower, Keras progress bars, any library or subprocess) at
stderr. A repository that prints cannot corrupt the channel the reconciler parses.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
from typing import Any, TextIO


def _plain(value: Any) -> Any:
    """JSON-safe: numpy scalars become Python numbers, NaN and infinities become null."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class Events:
    """Writes events; safe to call from Flower's gRPC threads."""

    def __init__(self, stream: TextIO, role: str) -> None:
        self._stream = stream
        self._role = role
        self._lock = threading.Lock()

    def emit(self, type_: str, **fields: Any) -> None:
        line = json.dumps({"type": type_, **_plain(fields)}, allow_nan=False)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def error(self, message: str, **fields: Any) -> None:
        """The one clear line of a failure: an error event, and the same text on stderr."""
        self.emit("error", message=message, **fields)
        print(f"flops-{self._role}: error: {message}", file=sys.stderr, flush=True)


def take_stdout(role: str) -> Events:
    """Keep stdout for events and send everything else written to fd 1 to stderr."""
    sys.stdout.flush()
    events_fd = os.dup(1)
    os.dup2(2, 1)
    return Events(os.fdopen(events_fd, "w", encoding="utf-8", buffering=1), role)
