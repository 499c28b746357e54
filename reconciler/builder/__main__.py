"""`python -m reconciler.builder`: the builder container's entry point.

Decision: the request comes only from its file (``/run/secrets/flops-build-request``, or the
path in FLOPS_BUILD_REQUEST_FILE) and the answer only as events on stdout (see protocol.py);
the exit status mirrors the result. A missing or unreadable file is still answered with a
result event: `run` reports the malformed request.
"""

import os
import signal
import sys

from .protocol import REQUEST_FILE, REQUEST_FILE_ENV
from .run import run


def read_request(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as stream:
            return stream.read()
    except (OSError, UnicodeDecodeError):
        return None


# As PID 1 the program would ignore SIGTERM; stop at once instead, so `compose down` is quick.
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
raise SystemExit(run(read_request(os.environ.get(REQUEST_FILE_ENV) or REQUEST_FILE), sys.stdout))
