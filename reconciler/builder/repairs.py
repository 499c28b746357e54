"""A dependency repair: what the builder changed, for which roles, as a before/after diff.

Decision: one value carries a repair everywhere it is shown: the observer log (a WARN event
whose details are the diff lines), the result event, `check-repo`, and the `flops.repairs`
image label, which holds the repairs of that image's role as a JSON array of
`{"roles": [...], "summary": str, "diff": [str]}` objects.

The label is bounded like an event (limits.py): at most 50 repairs, 20 diff lines each, and
32 KiB in all; a clipped label says so in its last repair's summary.

Diff lines are unified-diff-like: `- ` a line as the repository wrote it, `+ ` what the
image installs instead, `  ` a line that stays (context); each names its origin after `  # `.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from reconciler.protocol.repair import Repair

from .limits import MAX_LABEL_BYTES, clip_repairs, fit
from .protocol import ROLES

__all__ = ["BOTH_ROLES", "REPAIRS_LABEL", "Repair", "added", "kept", "label_value", "removed"]

REPAIRS_LABEL = "flops.repairs"
BOTH_ROLES = " and ".join(ROLES)  # how a summary starts when a repair applies to every role


def removed(text: str, origin: str) -> str:
    return f"- {text}  # {origin}"


def added(text: str, why: str = "") -> str:
    return f"+ {text}" + (f"  # {why}" if why else "")


def kept(text: str, origin: str) -> str:
    return f"  {text}  # {origin} (kept)"


def label_value(repairs: Iterable[Repair], role: str) -> str:
    """The `flops.repairs` label of a role's image: that role's repairs as compact JSON,
    at most MAX_LABEL_BYTES of UTF-8."""
    mine = [r.as_json() for r in repairs if role in r.roles]
    return fit(
        lambda budget: json.dumps(clip_repairs(mine, budget), separators=(",", ":"),
                                  ensure_ascii=False),
        lambda text: len(text.encode("utf-8")), MAX_LABEL_BYTES,
    )
