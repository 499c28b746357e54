"""One line out of a failed Docker CLI call, for messages that must stay on one line.

Decision: the Docker CLI puts the cause in the last line of its stderr, so that line is the
message everywhere a python-on-whales call fails; callers add what to do about it.
"""

from __future__ import annotations

from python_on_whales.exceptions import DockerException


def last_line(error: DockerException) -> str:
    lines = (error.stderr or str(error)).strip().splitlines()
    return lines[-1] if lines else "no output"
