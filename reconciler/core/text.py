"""Untrusted text made safe to show: no terminal control, bounded length.

Decision: text that comes from SLA files, ML repositories or builder output is shown to people
on terminals and in logs they `tail -f`, so every control character (C0 but tab, DEL, C1, the
bidirectional overrides that reorder what a reader sees) is written out as a visible escape
(``\\x1b``), never passed through; and every such text is cut at a stated length that says how
much was left out. One implementation, used by the observer log, the state and the CLI.
"""

from __future__ import annotations

import re

# C0 controls but tab (newlines are split into lines by the callers that allow them), DEL,
# C1 controls, and the Unicode format characters that can hide or reorder text on screen.
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_UNSAFE_KEEP_NEWLINES = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control character written as an escape (``ESC`` -> ``\\x1b``)."""
    pattern = _UNSAFE_KEEP_NEWLINES if keep_newlines else _UNSAFE
    return pattern.sub(_escape, text)


def cut(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its start and how much is cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters cut)"


def shown(text: str, limit: int) -> str:
    """Visible and cut: what any one line of untrusted text becomes before it is shown.
    Only the part that is kept is scanned, so a huge text costs no more than a short one."""
    if len(text) <= limit:
        return cut(visible(text), limit)
    return f"{visible(text[:limit])[:limit]}... ({len(text) - limit} more characters cut)"


def cut_lines(lines: list[str], count: int, width: int) -> list[str]:
    """At most ``count`` lines (the last ones: a tool's output ends with its error), each
    visible and cut at ``width``; says how many were left out."""
    kept = [shown(line, width) for line in lines[-count:]]
    if len(lines) > count:
        kept.insert(0, f"... ({len(lines) - count} earlier lines cut)")
    return kept
