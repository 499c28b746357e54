"""``flops_utils.logging.logger``: the logger FLOps repositories and our actors share.

It writes to stderr, never stdout: stdout of the learner and aggregator is their event
channel (one JSON object per line). The level comes from ``FLOPS_LOG_LEVEL`` (default INFO).
"""

from __future__ import annotations

import logging as _logging
import os
import sys
from typing import Any, TextIO

LOGGER_NAME = "flops"


class _StderrHandler(_logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at the time of each record."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _configure() -> _logging.Logger:
    log = _logging.getLogger(LOGGER_NAME)
    if not log.handlers:  # importing twice (e.g. reloaded in tests) must not double lines
        handler = _StderrHandler()
        handler.setFormatter(_logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
    log.setLevel(os.environ.get("FLOPS_LOG_LEVEL", "INFO").upper())
    log.propagate = False
    return log


logger: _logging.Logger = _configure()
