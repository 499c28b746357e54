"""Observer logs (DESIGN §5): `<ISO-8601 UTC> <LEVEL> <stage> <message>`, details indented."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.edges.clock import utc_now_iso
from reconciler.edges.observer import (
    DETAIL_INDENT,
    DETAIL_LIMIT,
    LEVELS,
    LINE_LIMIT,
    ObserverLog,
    format_event,
)
from reconciler.edges.state import StateStore

LINE = re.compile(
    r"^(?P<time>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z) (?P<level>INFO|WARN|ERROR) "
    r"(?P<stage>\S+) (?P<message>\S.*)$"
)
NOW = "2026-11-28T01:24:20.123Z"


def read_lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return text.splitlines()


def log_in(tmp_path: Path) -> ObserverLog:
    return ObserverLog(lambda project: tmp_path / "observers" / f"{project}.log")


def test_a_line_has_time_level_stage_and_message(tmp_path: Path) -> None:
    log = log_in(tmp_path)
    before = datetime.now(UTC).replace(microsecond=0)
    log.info("demo", "clone", "started")
    after = datetime.now(UTC)
    [line] = read_lines(log.path("demo"))
    match = LINE.match(line)
    assert match, line
    stamp = datetime.fromisoformat(match["time"].replace("Z", "+00:00"))
    assert stamp.tzinfo is not None and stamp.utcoffset() == UTC.utcoffset(None)
    assert before <= stamp <= after
    assert (match["level"], match["stage"], match["message"]) == ("INFO", "clone", "started")


def test_the_clock_is_iso8601_utc_with_milliseconds() -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", utc_now_iso())


def test_helpers_write_their_levels_in_order(tmp_path: Path) -> None:
    log = log_in(tmp_path)
    log.info("demo", "a", "one")
    log.warn("demo", "b", "two")
    log.error("demo", "c", "three")
    matches = [LINE.match(line) for line in read_lines(log.path("demo"))]
    assert [(m["level"], m["stage"], m["message"]) for m in matches if m] == [
        ("INFO", "a", "one"), ("WARN", "b", "two"), ("ERROR", "c", "three")
    ]


def test_multi_line_messages_and_details_are_indented_under_the_event() -> None:
    text = format_event(NOW, "ERROR", "build", "pip failed\nexit status 1",
                        ["Collecting torch", "ERROR: no matching distribution\n  for torch  "])
    assert text.splitlines() == [
        f"{NOW} ERROR build pip failed",
        f"{DETAIL_INDENT}exit status 1",
        f"{DETAIL_INDENT}Collecting torch",
        f"{DETAIL_INDENT}ERROR: no matching distribution",
        f"{DETAIL_INDENT}  for torch",
    ]
    assert text.endswith("\n")


def test_empty_message_and_stage_with_spaces_stay_one_token_each() -> None:
    assert format_event(NOW, "INFO", "build images", "   ") == f"{NOW} INFO buildimages -\n"
    assert format_event(NOW, "INFO", "", "x") == f"{NOW} INFO - x\n"


def test_an_empty_detail_line_is_kept_as_an_indented_blank() -> None:
    assert format_event(NOW, "INFO", "s", "m", [""]).splitlines()[1] == DETAIL_INDENT


@pytest.mark.parametrize("level", ["DEBUG", "info", "WARNING", "", "INFO "])
def test_unknown_levels_are_rejected(tmp_path: Path, level: str) -> None:
    with pytest.raises(ValueError, match="unknown level"):
        format_event(NOW, level, "s", "m")
    with pytest.raises(ValueError):
        log_in(tmp_path).write("demo", level, "s", "m")
    assert not log_in(tmp_path).path("demo").exists()


@given(
    level=st.sampled_from(LEVELS),
    stage=st.text(),
    message=st.text(),
    details=st.lists(st.text(), max_size=4),
)
def test_any_event_is_one_header_line_plus_indented_lines(
    level: str, stage: str, message: str, details: list[str]
) -> None:
    text = format_event(NOW, level, stage, message, details)
    assert text.endswith("\n")
    header, *rest = text.splitlines()
    match = LINE.match(header)
    assert match, header
    assert (match["time"], match["level"]) == (NOW, level)
    assert all(line.startswith(DETAIL_INDENT) for line in rest)
    assert len(text.split("\n")) == len(text.splitlines()) + 1, "only \\n ends lines"


def test_unencodable_text_is_replaced_not_raised(tmp_path: Path) -> None:
    log = log_in(tmp_path)
    log.info("demo", "s", "bad \udcff surrogate")
    [line] = read_lines(log.path("demo"))
    assert LINE.match(line)


def test_writes_append_and_never_truncate(tmp_path: Path) -> None:
    log = log_in(tmp_path)
    path = log.path("demo")
    path.parent.mkdir(parents=True)
    path.write_text("earlier line\n", encoding="utf-8")
    log.info("demo", "sla", "removed")
    assert read_lines(path)[0] == "earlier line"
    assert len(read_lines(path)) == 2


def test_concurrent_writers_never_interleave_inside_a_line(tmp_path: Path) -> None:
    log = log_in(tmp_path)
    threads_count, events_each = 8, 60
    barrier = threading.Barrier(threads_count)
    filler = "x" * 1900  # an event of about 8 KB, under the line limit

    def writer(thread: int) -> None:
        barrier.wait()
        for event in range(events_each):
            details = [f"t{thread} e{event} d{n} {filler}" for n in range(3)]
            log.write("demo", "INFO", f"t{thread}", f"e{event} {filler}", details)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = read_lines(log.path("demo"))
    assert len(lines) == threads_count * events_each * 4
    seen: set[tuple[str, str]] = set()
    for index in range(0, len(lines), 4):
        match = LINE.match(lines[index])
        assert match, lines[index][:80]
        author, event = match["stage"], match["message"].split(" ", 1)[0]
        assert match["message"] == f"{event} {filler}"
        assert lines[index + 1 : index + 4] == [
            f"{DETAIL_INDENT}{author} {event} d{n} {filler}" for n in range(3)
        ]
        seen.add((author, event))
    assert len(seen) == threads_count * events_each


def test_terminal_control_and_huge_output_are_made_visible_and_bounded(tmp_path: Path) -> None:
    log = log_in(tmp_path)
    hostile = "\x1b]0;owned\x07\x1bc\u202e"
    log.write("demo", "ERROR", f"bu{hostile}ild", f"failed {hostile}",
              [f"line {n} {'y' * 10_000}" for n in range(500)])
    text = log.path("demo").read_text()
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "failed \\x1b]0;owned\\x07\\x1bc\\u202e" in text
    lines = text.splitlines()
    assert len(lines) == 1 + DETAIL_LIMIT + 1  # the event, the cut note, the kept details
    assert lines[1] == f"{DETAIL_INDENT}... ({500 - DETAIL_LIMIT} earlier lines cut)"
    assert all(len(line) < LINE_LIMIT + 100 for line in lines)


def test_a_full_log_is_rotated_and_only_keep_old_logs_stay(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    log = ObserverLog(store.observer_path, lambda: "2026-11-30T00:00:00.000Z",
                      rotate_bytes=1000, keep=2)
    for n in range(100):
        log.info("demo", "plan", f"event {n:03d} " + "z" * 80)
    path = log.path("demo")
    logs = sorted(p.name for p in path.parent.iterdir())
    assert logs == ["demo.log", "demo.log.1", "demo.log.2"]
    sizes = [p.stat().st_size for p in path.parent.iterdir()]
    assert all(size < 1000 + 200 for size in sizes), sizes
    newest = path.read_text().splitlines()
    assert newest[-1].endswith("event 099 " + "z" * 80)
    # Nothing lost between the kept files: their events are consecutive.
    numbers = [int(line.split("event ")[1][:3]) for name in ("demo.log.2", "demo.log.1",
                                                              "demo.log")
               for line in (path.parent / name).read_text().splitlines()]
    assert numbers == list(range(numbers[0], 100))
