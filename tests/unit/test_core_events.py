"""Builder events -> observer-log lines and a build outcome; total over any input."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.builder.repairs import Repair
from reconciler.core.events import (
    DETAIL_LINES,
    DETAIL_WIDTH,
    MAP_LIMIT,
    MESSAGE_LIMIT,
    NAME_LIMIT,
    REPAIR_LIMIT,
    VALUE_LIMIT,
    LogLine,
    Outcome,
    error_summary,
    event_lines,
    no_result_outcome,
    outcome_of,
)
from reconciler.core.project import Phase, ProjectRecord
from reconciler.core.record import parse_record, record_json
from reconciler.edges.observer import LEVELS, format_event

COMMIT = "c" * 40
IMAGES = {
    "learner": f"127.0.0.1:5000/owner/repo/learner:{COMMIT}",
    "aggregator": f"127.0.0.1:5000/owner/repo/aggregator:{COMMIT}",
}
DIGESTS = {"learner": "sha256:" + "1" * 64, "aggregator": "sha256:" + "2" * 64}
TIMINGS = {"clone": 1.25, "check": 0.5, "build": 30.0, "push": 4.0}
MLFLOW_DIFF = ["- mlflow==2.9.2  # conda.yaml:7"]
MLFLOW_REPAIR = {"roles": ["learner"], "summary": "removed mlflow from the learner",
                 "diff": MLFLOW_DIFF}


def ok_result(**changes: Any) -> dict[str, Any]:
    return {"type": "result", "ok": True, "images": IMAGES, "digests": DIGESTS,
            "timings": TIMINGS, "repairs": ["removed mlflow from the learner"],
            "repair_diffs": [MLFLOW_REPAIR], "base_image": "python:3.11-slim", **changes}


def failed_result(**error: Any) -> dict[str, Any]:
    return {"type": "result", "ok": False, "timings": {"clone": 2.0}, "error": error}


def test_stage_start_and_end() -> None:
    assert event_lines({"type": "stage", "stage": "clone", "state": "start"}) == [
        LogLine("INFO", "clone", "started")
    ]
    seconds = 12.345
    end = event_lines({"type": "stage", "stage": "clone", "state": "end", "seconds": seconds})
    assert end == [LogLine("INFO", "clone", f"finished in {seconds:.1f}s")]


def test_a_stage_without_a_name_is_the_build_stage() -> None:
    assert event_lines({"type": "stage", "state": "start"})[0].stage == "build"
    assert event_lines({"type": "stage", "stage": "  ", "state": "start"})[0].stage == "build"


@pytest.mark.parametrize("level", LEVELS)
def test_log_events_keep_level_message_and_details(level: str) -> None:
    event = {"type": "log", "stage": "deps", "level": level, "message": "repaired",
             "details": ["torch without torchvision", "added torchvision"]}
    assert event_lines(event) == [
        LogLine(level, "deps", "repaired", ("torch without torchvision", "added torchvision"))
    ]


def test_log_events_with_unknown_level_or_no_message_still_make_a_line() -> None:
    [line] = event_lines({"type": "log", "level": "DEBUG"})
    assert (line.level, line.stage, line.message, line.details) == ("INFO", "build", "-", ())


def test_details_keep_the_last_twenty_lines_in_order_and_say_what_was_cut() -> None:
    details = [f"step {n}" for n in range(50)]
    [line] = event_lines({"type": "log", "message": "m", "details": details})
    assert line.details == ("... (30 earlier lines cut)", *details[-20:])
    [error] = event_lines(failed_result(message="boom", details=details))
    assert error.details == line.details


HOSTILE = "\x1b]0;pwned\x07\x1bc\x9b31m\u202eevil\x00"


def test_terminal_control_in_builder_text_is_made_visible() -> None:
    [line] = event_lines({"type": "log", "message": f"pip says {HOSTILE}", "stage": HOSTILE,
                          "details": [HOSTILE]})
    for text in (line.message, line.stage, *line.details):
        assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in text), text
        assert "\u202e" not in text
    assert line.message == "pip says \\x1b]0;pwned\\x07\\x1bc\\x9b31m\\u202eevil\\x00"


def test_every_builder_value_is_bounded_whatever_its_size() -> None:
    huge = "x" * 5_000_000
    event = {"type": "result", "ok": False, "timings": {f"s{i}": 1.0 for i in range(10_000)},
             "error": {"category": huge, "stage": huge, "message": huge, "hint": huge,
                       "details": [huge] * 10_000}}
    [line] = event_lines(event)
    assert len(line.message) < 3 * MESSAGE_LIMIT and "more characters cut" in line.message
    assert len(line.stage) < 2 * NAME_LIMIT
    assert len(line.details) == DETAIL_LINES + 1
    assert all(len(d) < 2 * DETAIL_WIDTH for d in line.details)
    outcome = outcome_of(event)
    assert len(outcome.timings) == MAP_LIMIT
    ok = outcome_of({"type": "result", "ok": True, "images": {str(i): huge for i in range(99)},
                     "repairs": [huge] * 999,
                     "repair_diffs": [{"summary": huge, "roles": [huge] * 99,
                                       "diff": [huge] * 999}] * 999})
    assert len(ok.images) == MAP_LIMIT and all(len(v) < 2 * VALUE_LIMIT
                                               for v in ok.images.values())
    assert len(ok.repairs) == len(ok.repair_diffs) == REPAIR_LIMIT
    repair = ok.repair_diffs[0]
    assert len(repair.roles) <= 4 and len(repair.diff) == DETAIL_LINES + 1
    assert len(repair.summary) < 2 * MESSAGE_LIMIT


def test_a_successful_result_lists_the_images_and_the_total_time() -> None:
    lines = event_lines(ok_result())
    assert all(line.level == "INFO" and line.stage == "result" for line in lines)
    messages = [line.message for line in lines]
    for role, ref in IMAGES.items():
        assert f"image {role} {ref} ({DIGESTS[role]})" in messages
    assert messages[-1] == f"build succeeded in {sum(TIMINGS.values()):.1f}s"


def test_a_failed_result_is_one_error_line_with_the_cause_and_the_fix() -> None:
    event = failed_result(stage="check", category="repo", message="model_manager.py is missing",
                          hint="add it at the repository root", details=["ls: ..."])
    assert event_lines(event) == [
        LogLine("ERROR", "check",
                "repo: model_manager.py is missing; add it at the repository root", ("ls: ...",))
    ]


def test_outcome_of_a_success() -> None:
    outcome = outcome_of(ok_result())
    assert outcome == Outcome(
        ok=True, images=IMAGES, digests=DIGESTS, timings=TIMINGS,
        repairs=("removed mlflow from the learner",),
        repair_diffs=(Repair(("learner",), "removed mlflow from the learner",
                                 ("- mlflow==2.9.2  # conda.yaml:7",)),),
        base_image="python:3.11-slim",
    )


def test_an_ok_result_without_a_chosen_base_or_repairs_records_none() -> None:
    outcome = outcome_of(ok_result(repair_diffs=[], base_image=None))
    assert outcome.repair_diffs == () and outcome.base_image is None
    older = {k: v for k, v in ok_result().items() if k not in ("repair_diffs", "base_image")}
    assert outcome_of(older).repair_diffs == () and outcome_of(older).base_image is None


def test_malformed_repair_diffs_keep_only_what_can_be_read() -> None:
    outcome = outcome_of(ok_result(
        repair_diffs=["text", None, {"diff": ["- x"]}, {"summary": "  "},
                      {"summary": "added torchvision", "roles": "learner", "diff": [1, None]},
                      MLFLOW_REPAIR],
        base_image=["not", "a", "string"],
    ))
    assert outcome.repair_diffs == (
        Repair((), "added torchvision", ("1", "None")),
        Repair(("learner",), "removed mlflow from the learner", tuple(MLFLOW_DIFF)),
    )
    assert outcome.base_image is None
    assert outcome_of(ok_result(repair_diffs={"summary": "x"})).repair_diffs == ()


def test_a_failed_result_carries_no_repairs_or_base() -> None:
    outcome = outcome_of({**failed_result(message="m"), "repair_diffs": [MLFLOW_REPAIR],
                          "base_image": "python:3.11-slim"})
    assert outcome.repair_diffs == () and outcome.base_image is None


def test_outcome_of_a_failure() -> None:
    outcome = outcome_of(failed_result(category="push", message="denied", hint="log in"))
    assert not outcome.ok
    assert outcome.error == "push: denied; log in"
    assert outcome.images == {}
    assert outcome.timings == {"clone": 2.0}


@pytest.mark.parametrize("ok", [False, None, "true", 1])
def test_only_ok_true_is_a_success(ok: Any) -> None:
    outcome = outcome_of({"type": "result", "ok": ok, "images": IMAGES})
    assert not outcome.ok
    assert outcome.error == "infrastructure: the builder reported a failure without a message"


def test_error_summary_defaults() -> None:
    assert error_summary({}) == "infrastructure: the builder reported a failure without a message"
    assert error_summary({"category": "build", "message": "x", "hint": ""}) == "build: x"


def test_no_result_outcome_says_how_the_builder_ended() -> None:
    outcome = no_result_outcome(137, ["Killed"])
    assert not outcome.ok
    assert outcome.error is not None
    assert "status 137" in outcome.error
    assert "Killed" in outcome.error
    assert "status None" in (no_result_outcome(None, []).error or "")


def test_unknown_events_are_kept_as_warnings() -> None:
    [line] = event_lines({"type": "telemetry", "x": 1})
    assert (line.level, line.stage) == ("WARN", "builder")
    assert "telemetry" in line.message


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"type": None},
        {"type": ["stage"]},
        {"type": "stage", "seconds": "ten"},
        {"type": "stage", "state": "end", "seconds": True},
        {"type": "stage", "state": "end", "seconds": 10**400},
        {"type": "stage", "stage": {"nested": 1}, "state": "start"},
        {"type": "log", "level": 3, "message": ["a"], "details": "not a list"},
        {"type": "log", "details": [None, 1, {"a": 1}]},
        {"type": "result", "ok": True, "images": "x", "digests": [1], "timings": "y"},
        {"type": "result", "ok": True, "timings": {"a": 10**400, "b": "x", "c": None}},
        {"type": "result", "ok": True, "timings": {"a": float("inf"), "b": float("-inf")}},
        {"type": "result", "ok": True, "repair_diffs": [{"summary": {"a": 1}}], "base_image": 5},
        {"type": "result", "ok": True, "repair_diffs": [{"summary": "s", "diff": "x"}]},
        {"type": "result", "ok": False, "error": "just text"},
        {"type": "result", "ok": False, "error": {"details": {"a": 1}, "stage": 5}},
    ],
)
def test_malformed_events_never_raise(event: dict[str, Any]) -> None:
    lines = event_lines(event)
    assert lines
    for line in lines:
        assert line.level in LEVELS
        assert isinstance(line.stage, str) and line.stage.strip()
        assert isinstance(line.message, str)
    outcome_of(event)


_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=15,
)
_KEYS = st.sampled_from(
    ["type", "stage", "state", "seconds", "level", "message", "details", "ok", "images",
     "digests", "timings", "repairs", "repair_diffs", "base_image", "error", "category",
     "hint", "summary", "roles", "diff"]
)
_EVENTS = st.dictionaries(st.one_of(_KEYS, st.text(max_size=8)), _JSON, max_size=8).flatmap(
    lambda base: st.sampled_from(["stage", "log", "result", "other"]).map(
        lambda kind: {**base, "type": kind} if kind != "other" else base
    )
)


@given(_EVENTS)
def test_any_event_becomes_printable_log_lines(event: dict[str, Any]) -> None:
    lines = event_lines(event)
    assert lines
    for line in lines:
        assert line.level in LEVELS
        assert len(line.details) <= 20
        assert all(isinstance(detail, str) for detail in line.details)
        assert format_event("2026-01-01T00:00:00.000Z", line.level, line.stage, line.message,
                            line.details)
    outcome = outcome_of(event)
    assert outcome.ok is (event.get("ok") is True)
    assert outcome.ok or outcome.error
    # Whatever the result says, the record that keeps it can be stored and read back.
    record = ProjectRecord(project="p", phase=Phase.ready, sla_file="p.yaml",
                           repairs=list(outcome.repairs),
                           repair_diffs=list(outcome.repair_diffs), base_image=outcome.base_image)
    assert parse_record(record_json(record)) == record


def test_a_record_holding_the_largest_outcome_stays_under_its_documented_bound() -> None:
    """README: one attempt adds at most about 200 KB to a project's record."""
    huge = "\x1b" * 100_000
    ok = outcome_of({"type": "result", "ok": True,
                     "images": {huge + str(i): huge for i in range(99)},
                     "digests": {huge + str(i): huge for i in range(99)},
                     "timings": {huge + str(i): 1.0 for i in range(99)},
                     "repairs": [huge] * 999, "base_image": huge,
                     "repair_diffs": [{"summary": huge, "roles": [huge] * 99,
                                       "diff": [huge] * 999}] * 999})
    failed = outcome_of({"type": "result", "ok": False, "error": {
        "category": huge, "message": huge, "hint": huge, "details": [huge] * 999}})
    record = ProjectRecord(
        project="p", phase=Phase.ready, sla_file="desired/p.yaml", images=ok.images,
        digests=ok.digests, timings=ok.timings, repairs=list(ok.repairs),
        repair_diffs=list(ok.repair_diffs), base_image=ok.base_image, error=failed.error)
    assert len(record_json(record)) < 200_000
