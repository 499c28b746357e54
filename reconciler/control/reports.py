"""What the control layer tells the person running it, through one callback.

Decision: the controller, the build runner and the outage tracker never print; they hand a
``StageReport`` (a project's progress) or a ``Notice`` (about the reconciler as a whole: an
outage, a pull, a builder image built) to the ``Report`` callback the CLI gave them, and the
CLI decides where and how it is shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class StageReport:
    """A project reached a stage ("resolving ref", "ready", a builder stage, ...)."""

    project: str
    stage: str


@dataclass(frozen=True)
class Notice:
    """One line for the operator; ``trouble``: something is wrong (shown on stderr)."""

    text: str
    trouble: bool = False


Report = Callable[[StageReport | Notice], None]


def silent(report: StageReport | Notice) -> None:
    return None
