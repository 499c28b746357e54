"""A dependency repair: what the builder changed, for which roles, as a before/after diff.

Decision: one value carries a repair everywhere it is shown: the observer log (a WARN event
whose details are the diff lines), the result event, the project's record, `check-repo`, and
the `flops.repairs` image label (``builder/repairs.py`` bounds and writes that label).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Repair:
    """One change to the requirements the repository asked for."""

    roles: tuple[str, ...]
    summary: str  # one line, starting with the roles: "learner: removed mlflow==2.9.2 (...)"
    diff: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {"roles": list(self.roles), "summary": self.summary, "diff": list(self.diff)}
