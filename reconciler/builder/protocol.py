"""The builder's side of the wire contract: writing events, each clipped to its bounds.

Decision: the contract itself (the request file, the events and their kinds) is
``reconciler/protocol/``, shared with the reconciler; this module adds only what the builder
does with it, ``emit``, which bounds every event (``limits.py``) before it reaches stdout.
"""

from __future__ import annotations

from typing import Any, TextIO

from reconciler.protocol.events import (
    CATEGORIES,
    LEVELS,
    REQUEST_FILE,
    REQUEST_FILE_ENV,
    REQUEST_SECRET,
    ROLES,
    decode,
    encode,
)

from .limits import bounded_event

__all__ = ["CATEGORIES", "LEVELS", "REQUEST_FILE", "REQUEST_FILE_ENV", "REQUEST_SECRET", "ROLES",
           "decode", "emit", "encode"]


def emit(event: dict[str, Any], stream: TextIO) -> int:
    """Write the event, clipped to the bounds above, as one line; the line's length."""
    line = encode(bounded_event(event))
    stream.write(line + "\n")
    stream.flush()
    return len(line) + 1
