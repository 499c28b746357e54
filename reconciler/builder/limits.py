"""Bounds on what the builder takes from an ML repository and on what it says about it.

Decision: the repository is untrusted input, so every cap lives here, in one place. A file
larger than its read cap is a repository problem naming the cap (never a partial read), and
every event the builder writes passes through `bounded_event`: no message, hint, detail line,
repair or note is longer than these caps, and no event line is longer than `MAX_EVENT_BYTES`,
whatever the repository holds. A clipped value says so (`... (truncated, N more lines)`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

KIB = 1024
MIB = 1024 * KIB

# Reading the repository.
MAX_DEPENDENCY_FILE_BYTES = 1 * MIB  # conda.yaml, requirements.txt and every -r file
MAX_YAML_DEPTH = 20  # nested collections in a conda file (a real one needs four)
MAX_YAML_NODES = 100_000  # YAML values in a conda file (keeps pure-Python parsing ~2 s)
MAX_INCLUDE_DEPTH = 10  # -r inside -r inside ...
MAX_INCLUDED_FILES = 50  # requirement files inlined with -r, in all
# ast.parse needs up to ~0.9 KB of memory per byte of dense source ("a\n" * N); real code
# needs ~60. 512 KiB keeps one parse under ~500 MB and ~2 s whatever the file holds.
MAX_SOURCE_FILE_BYTES = 512 * KIB  # each Python file the checks parse
MAX_SCANNED_FILES = 2_000  # Python files the import scan parses
MAX_SCANNED_BYTES = 8 * MIB  # and their total size
MAX_SHOWN_NAMES = 20  # names missing from data_manager.py reported one by one
# Reading a trained model (a trained-model build): its MLmodel file (MLflow writes ~1 KiB).
MAX_MLMODEL_BYTES = 256 * KIB
# A model that comes as a carrier image (a swarm builder): its archive and its entries.
MAX_MODEL_BYTES = 4096 * MIB
MAX_MODEL_ENTRIES = 100_000

# Reporting.
MAX_TEXT_CHARS = 2_000  # one message or hint
MAX_LINE_CHARS = 500  # one detail line, repair summary or diff line
MAX_LINES = 20  # detail lines of one event, diff lines of one repair
MAX_REPAIRS = 50  # repairs in a result event, logged one by one, or in an image label
MAX_EVENT_BYTES = 64 * KIB  # one encoded event line, the result included
MAX_LOG_BYTES = 256 * KIB  # all log events of one build; later ones are counted, not sent
MAX_LABEL_BYTES = 32 * KIB  # the flops.repairs label of one image
MAX_LISTED = 50  # problems (and requirements per role) `check-repo` lists one by one

T = TypeVar("T")


@dataclass(frozen=True)
class Budget:
    """How much of each kind of value one event may carry."""

    text: int = MAX_TEXT_CHARS
    line: int = MAX_LINE_CHARS
    lines: int = MAX_LINES
    repairs: int = MAX_REPAIRS


# Tried in turn until the value fits its byte limit; the last always fits an event.
BUDGETS = (Budget(), Budget(500, 200, 10, 20), Budget(200, 100, 5, 5), Budget(80, 60, 2, 2))


def size_text(count: int) -> str:
    """`1048576` -> "1 MiB"; `524288` -> "512 KiB"; `1500` -> "1500 bytes"."""
    if count >= MIB and count % MIB == 0:
        return f"{count // MIB} MiB"
    if count >= MIB:
        return f"{count / MIB:.1f} MiB"
    if count >= KIB and count % KIB == 0:
        return f"{count // KIB} KiB"
    return f"{count} bytes"


def clip_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """The text, or its first `limit` characters and how many were left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... (truncated, {len(text) - limit} more characters)"


def clip_lines(
    lines: Sequence[str], limit: int = MAX_LINES, chars: int = MAX_LINE_CHARS,
    unit: str = "lines",
) -> list[str]:
    """At most `limit` lines, each clipped; the last says how many were left out."""
    if len(lines) <= limit:
        return [clip_text(str(line), chars) for line in lines]
    keep = max(limit - 1, 0)
    shown = [clip_text(str(line), chars) for line in lines[:keep]]
    return [*shown, f"... (truncated, {len(lines) - keep} more {unit})"]


def clip_repairs(repairs: Sequence[Any], budget: Budget = BUDGETS[0]) -> list[Any]:
    """Repair objects (`{"roles", "summary", "diff"}`) within the budget; a last object whose
    summary says how many repairs were left out."""
    def clip(item: Any) -> Any:
        if not isinstance(item, dict):
            return clip_text(str(item), budget.line)
        clipped = dict(item)
        if isinstance(clipped.get("summary"), str):
            clipped["summary"] = clip_text(clipped["summary"], budget.line)
        if isinstance(clipped.get("diff"), list):
            clipped["diff"] = clip_lines(clipped["diff"], budget.lines, budget.line)
        return clipped

    if len(repairs) <= budget.repairs:
        return [clip(item) for item in repairs]
    keep = max(budget.repairs - 1, 0)
    marker = {"roles": [], "summary": f"... (truncated, {len(repairs) - keep} more repairs)",
              "diff": []}
    return [*(clip(item) for item in repairs[:keep]), marker]


def fit(build: Callable[[Budget], T], size: Callable[[T], int], limit: int) -> T:
    """The value built with the most generous budget whose size is within `limit`."""
    value = build(BUDGETS[0])
    for budget in BUDGETS[1:]:
        if size(value) <= limit:
            return value
        value = build(budget)
    return value


def encoded_size(event: dict[str, Any]) -> int:
    """The length of the event's line as `protocol.encode` writes it (ASCII JSON)."""
    return len(json.dumps(event, ensure_ascii=True, separators=(",", ":")))


def bounded_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event with every repository-derived value clipped, at most MAX_EVENT_BYTES long.

    Only what can carry repository text is clipped (message, hint, details, repairs,
    repair_diffs, also inside `error`); images, digests, timings and the like are the
    reconciler's or the engine's and stay exact.
    """
    return fit(lambda budget: _clip_event(event, budget), encoded_size, MAX_EVENT_BYTES)


def _clip_event(event: dict[str, Any], budget: Budget) -> dict[str, Any]:
    clipped = dict(event)
    for key in ("message", "hint"):
        if isinstance(clipped.get(key), str):
            clipped[key] = clip_text(clipped[key], budget.text)
    if isinstance(clipped.get("details"), list):
        clipped["details"] = clip_lines(clipped["details"], budget.lines, budget.line)
    if isinstance(clipped.get("repairs"), list):
        clipped["repairs"] = clip_lines(clipped["repairs"], budget.repairs, budget.line,
                                        "repairs")
    if isinstance(clipped.get("repair_diffs"), list):
        clipped["repair_diffs"] = clip_repairs(clipped["repair_diffs"], budget)
    if isinstance(clipped.get("error"), dict):
        clipped["error"] = _clip_event(clipped["error"], budget)
    return clipped
