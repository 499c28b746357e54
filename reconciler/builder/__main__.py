"""`python -m reconciler.builder`: the builder container's entry point.

Decision: the request comes only from the FLOPS_BUILD_REQUEST environment variable and the
answer only as events on stdout (see protocol.py); the exit status mirrors the result.
"""

import os
import signal
import sys

from .protocol import REQUEST_ENV
from .run import run

# As PID 1 the program would ignore SIGTERM; stop at once instead, so `compose down` is quick.
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
raise SystemExit(run(os.environ.get(REQUEST_ENV), sys.stdout))
