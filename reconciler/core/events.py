"""Turning the builder's stdout events into observer-log lines and a build outcome.

Decision: the translation is pure and total: any event, including malformed or unknown ones,
maps to a line, so nothing the builder says is ever dropped and nothing it says can crash the
reconciler. And it is bounded: the builder relays what an untrusted repository holds, so every
text is made visible (no terminal control) and cut to the limits below before it reaches the
observer log or the state, whatever the builder sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reconciler.core.failure import INFRASTRUCTURE, Failure
from reconciler.core.text import cut_lines, shown
from reconciler.protocol.repair import Repair

# Per event: a message, its details (the last lines of a tool's output), the repairs of a
# result; names and values of its maps. With these, one event is at most about 8 KB of log.
MESSAGE_LIMIT = 1000
DETAIL_LINES, DETAIL_WIDTH = 20, 300
REPAIR_LIMIT = 10
# MAP_LIMIT: a three-platform build reports 21 stage timings.
NAME_LIMIT, VALUE_LIMIT, MAP_LIMIT = 40, 300, 24


@dataclass(frozen=True)
class LogLine:
    level: str
    stage: str
    message: str
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    ok: bool
    images: dict[str, str] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)
    # role -> platform -> the digest of that platform's image (``digests``: the index's)
    platform_digests: dict[str, dict[str, str]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    repairs: tuple[str, ...] = ()
    repair_diffs: tuple[Repair, ...] = ()  # the builder's own repair values
    base_image: str | None = None  # the FROM image the builder chose; None: the default base
    failure: Failure | None = None

    @property
    def error(self) -> str | None:
        """The failure as people read it (None after a success)."""
        return self.failure.text if self.failure is not None else None


def translate(event: dict[str, Any]) -> tuple[list[LogLine], Outcome | None]:
    """An event's observer-log lines, and the build's outcome when it is the result."""
    if event.get("type") != "result":
        return event_lines(event), None
    outcome = outcome_of(event)
    return _result_lines(event, outcome), outcome


def event_lines(event: dict[str, Any]) -> list[LogLine]:
    kind = event.get("type")
    stage = _text(event.get("stage"), "build", NAME_LIMIT)
    if kind == "stage":
        # a stage of one platform in a multi-platform build: "build:learner linux/arm64 ..."
        platform = _text(event.get("platform"), "", NAME_LIMIT)
        lead = f"{platform} " if platform else ""
        if event.get("state") == "start":
            return [LogLine("INFO", stage, f"{lead}started")]
        seconds = _seconds(event.get("seconds"))
        return [LogLine("INFO", stage, f"{lead}finished in {seconds:.1f}s")]
    if kind == "log":
        level = _text(event.get("level"), "INFO")
        level = level if level in ("INFO", "WARN", "ERROR") else "INFO"
        return [LogLine(level, stage, _text(event.get("message"), "-"), _details(event))]
    if kind == "result":
        return _result_lines(event, outcome_of(event))
    return [LogLine("WARN", "builder", shown(f"unrecognised builder event: {event}",
                                               MESSAGE_LIMIT))]


def outcome_of(event: dict[str, Any]) -> Outcome:
    timings = {
        shown(str(k), NAME_LIMIT): _seconds(v)
        for k, v in list(_mapping(event.get("timings")).items())[:MAP_LIMIT]
    }
    if event.get("ok") is True:
        return Outcome(
            ok=True,
            images=_str_mapping(event.get("images")),
            digests=_str_mapping(event.get("digests")),
            platform_digests={
                role: _str_mapping(value)
                for role, value in _str_keyed(event.get("platform_digests")).items()},
            timings=timings,
            repairs=tuple(shown(str(r), VALUE_LIMIT)
                          for r in _list(event.get("repairs"))[:REPAIR_LIMIT]),
            repair_diffs=tuple(_repair_diffs(event.get("repair_diffs"))),
            base_image=_text(event.get("base_image"), "") or None,
        )
    error = _mapping(event.get("error"))
    return Outcome(ok=False, timings=timings, failure=failure_of(error))


def failure_of(error: dict[str, Any]) -> Failure:
    """The failure a result's ``error`` object reports; its hint follows the message."""
    category = _text(error.get("category"), INFRASTRUCTURE, NAME_LIMIT)
    message = _text(error.get("message"), "the builder reported a failure without a message")
    hint = _text(error.get("hint"), "")
    return Failure(category, message + (f"; {hint}" if hint else ""))


def error_summary(error: dict[str, Any]) -> str:
    return failure_of(error).text


def no_result_outcome(exit_code: int | None, last_lines: list[str]) -> Outcome:
    tail = f": {shown(last_lines[-1], VALUE_LIMIT)}" if last_lines else ""
    return Outcome(ok=False, failure=Failure(
        INFRASTRUCTURE, f"the builder exited with status {exit_code} without a result{tail}; "
        "check the builder image and the Docker engine"))


def _result_lines(event: dict[str, Any], outcome: Outcome) -> list[LogLine]:
    if outcome.ok:
        lines = []
        for role, ref in sorted(outcome.images.items()):
            lines.append(
                LogLine("INFO", "result", f"image {role} {ref} ({outcome.digests.get(role, '?')})"))
            platforms = outcome.platform_digests.get(role, {})
            if len(platforms) > 1:  # a multi-platform image: what each platform pulls
                lines.extend(LogLine("INFO", "result", f"image {role} {ref} {platform} "
                                     f"({digest})") for platform, digest in platforms.items())
        total = sum(outcome.timings.values())
        return [*lines, LogLine("INFO", "result", f"build succeeded in {total:.1f}s")]
    error = _mapping(event.get("error"))
    stage = _text(error.get("stage"), "result", NAME_LIMIT)
    return [LogLine("ERROR", stage, outcome.error or "failed", _details(error))]


def _repair_diffs(value: Any) -> list[Repair]:
    """The well-formed entries of ``repair_diffs``: an entry without a summary is not a
    repair anyone could read, so it is left out (the WARN events already logged it)."""
    found = []
    for item in _list(value)[:REPAIR_LIMIT]:
        entry = _mapping(item)
        summary = _text(entry.get("summary"), "")
        if summary:
            found.append(Repair(
                roles=tuple(shown(str(r), NAME_LIMIT) for r in _list(entry.get("roles"))[:4]),
                summary=summary,
                diff=tuple(cut_lines([str(line) for line in _list(entry.get("diff"))],
                                     DETAIL_LINES, DETAIL_WIDTH)),
            ))
    return found


def _details(source: dict[str, Any]) -> tuple[str, ...]:
    lines = [str(line) for line in _list(source.get("details"))]
    return tuple(cut_lines(lines, DETAIL_LINES, DETAIL_WIDTH))


def _text(value: Any, default: str, limit: int = MESSAGE_LIMIT) -> str:
    """A text field: visible and cut; ``default`` when absent or blank."""
    if not isinstance(value, str) or not value.strip():
        return default
    return shown(value, limit)


def _seconds(value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return 0.0
    try:
        return float(value)
    except OverflowError:  # an int too large for a float: as malformed as a string
        return 0.0


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str_mapping(value: Any) -> dict[str, str]:
    return {shown(str(k), NAME_LIMIT): shown(str(v), VALUE_LIMIT)
            for k, v in list(_mapping(value).items())[:MAP_LIMIT]}


def _str_keyed(value: Any) -> dict[str, Any]:
    return {shown(str(k), NAME_LIMIT): v for k, v in list(_mapping(value).items())[:MAP_LIMIT]}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
