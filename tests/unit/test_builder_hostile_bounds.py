"""Bounds on what the builder reports and on the work its checks do (issue 9, items 1, 2
and 5): 20,000 pip entries plan in linear time, every event line stays under 64 KiB and says
what it cut, one build's log events stop at 256 KiB, image labels stay under 32 KiB, and
`-r` chains are bounded.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from builder_support import MODEL_MANAGER, run_builder, write_repo

from reconciler.builder.deps import plan_dependencies
from reconciler.builder.limits import (
    MAX_EVENT_BYTES,
    MAX_INCLUDE_DEPTH,
    MAX_INCLUDED_FILES,
    MAX_LABEL_BYTES,
    MAX_LINES,
    MAX_LISTED,
    MAX_LOG_BYTES,
    MAX_REPAIRS,
    MAX_TEXT_CHARS,
    bounded_event,
    encoded_size,
)
from reconciler.builder.problems import StageFailure
from reconciler.builder.repairs import Repair, label_value
from reconciler.builder.run import Reporter

ENTRIES = 20_000


def twenty_thousand(root: Path, conflicting: bool = False) -> Path:
    """conda.yaml's pip list and requirements.txt name the same 20,000 packages: each is
    merged (or, `conflicting`, each is a problem naming both lines)."""
    pip = "".join(f"    - package-{i}==1.{i}\n" for i in range(ENTRIES))
    other = 2 if conflicting else 1
    requirements = "".join(f"package-{i}=={other}.{i}\n" for i in range(ENTRIES))
    return write_repo(root, {
        "model_manager.py": MODEL_MANAGER,
        "conda.yaml": f"dependencies:\n  - python=3.11\n  - pip:\n{pip}",
        "requirements.txt": requirements,
    })


def build(repo: Path) -> str:
    return run_builder(repo)[1]


def test_twenty_thousand_pip_entries_are_planned(tmp_path: Path) -> None:
    # Before: merging was quadratic (16 s for these entries, 300,000 never finished).
    plan = plan_dependencies(twenty_thousand(tmp_path))
    assert plan.ok, plan.problems[:3]
    assert len(plan.requirements["learner"]) == ENTRIES
    assert plan.requirements["aggregator"][-1] == f"package-{ENTRIES - 1}==1.{ENTRIES - 1}"
    assert len(plan.repair_diffs) == ENTRIES
    warn = [n for n in plan.notes if n.level == "WARN"]
    assert len(warn) == MAX_REPAIRS
    assert warn[-1].message == (f"... and {ENTRIES - MAX_REPAIRS + 1} more repairs, not logged "
                                "one by one")


def test_twenty_thousand_conflicts_make_one_bounded_result_and_bounded_check_repo(
    tmp_path: Path
) -> None:
    repo = twenty_thousand(tmp_path / "repo", conflicting=True)
    config = tmp_path / "reconciler.toml"
    config.write_text('registry = "local"\n')
    checked = subprocess.run(
        [sys.executable, "-m", "reconciler", "--config", str(config), "check-repo", str(repo),
         "--json"], capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert checked.returncode == 1, checked.stderr
    verdict = json.loads(checked.stdout)
    assert (len(verdict["problems"]), verdict["problem_count"]) == (MAX_LISTED, ENTRIES)
    stdout = build(repo)
    result = json.loads(stdout.splitlines()[-1])
    assert len(stdout.splitlines()[-1]) <= MAX_EVENT_BYTES
    error = result["error"]
    assert error["message"].endswith(f"(and {ENTRIES - 1} more problems, see details)")
    assert len(error["details"]) == MAX_LINES
    assert error["details"][-1] == f"... (truncated, {ENTRIES - MAX_LINES + 1} more lines)"
    assert error["hint"].endswith("more characters)")


def test_every_event_fits_its_line_and_says_what_was_cut() -> None:
    wide = "\U0001f600" * 10_000  # 12 bytes each in ASCII JSON
    images = {"learner": "registry.example.org/a/b/learner:" + "f" * 40}
    event = {
        "type": "result", "ok": True, "images": images, "digests": {"learner": "sha256:0"},
        "timings": {"clone": 1.0}, "repairs": [wide] * 10_000,
        "repair_diffs": [{"roles": ["learner"], "summary": wide, "diff": [wide] * 1000}] * 10_000,
        "base_image": None,
    }
    bounded = bounded_event(event)
    assert encoded_size(bounded) <= MAX_EVENT_BYTES
    assert bounded["images"] == images and bounded["timings"] == event["timings"]
    assert bounded["repairs"][-1].startswith("... (truncated, ")
    assert bounded["repair_diffs"][-1]["summary"] == bounded["repairs"][-1]
    assert bounded["repair_diffs"][0]["diff"][-1].endswith("more lines)")
    failed = bounded_event({"type": "result", "ok": False, "error": {
        "category": "repo", "stage": "check", "message": "m" * 100_000, "hint": wide,
        "details": ["d" * 10_000] * 10_000}})
    assert encoded_size(failed) <= MAX_EVENT_BYTES
    assert failed["error"]["message"] == "m" * MAX_TEXT_CHARS + \
        f"... (truncated, {100_000 - MAX_TEXT_CHARS} more characters)"
    small = {"type": "log", "level": "INFO", "stage": "clone", "message": "ok"}
    assert bounded_event(small) == small


def test_log_events_stop_at_the_budget_and_the_result_always_follows() -> None:
    out = io.StringIO()
    reporter = Reporter(out)
    for index in range(10_000):
        reporter.log("WARN", f"repair {index}", ["x" * 400] * 30)
    reporter.failed(StageFailure("dependencies", "m", "h", ["d"] * 10))
    lines = out.getvalue().splitlines()
    assert len(out.getvalue()) <= MAX_LOG_BYTES + 2 * MAX_EVENT_BYTES
    events = [json.loads(line) for line in lines]
    assert events[-1]["type"] == "result"
    sent = sum(1 for e in events if e["type"] == "log" and e["message"].startswith("repair "))
    assert 0 < sent < 10_000
    assert events[-2]["message"] == (f"{10_000 - sent} more log events were not sent: a build "
                                     "sends at most 256 KiB of log events")


def test_an_image_label_stays_under_its_cap_and_says_so() -> None:
    repairs = [Repair(("learner",), "s" * 5000, ("- " + "d" * 5000,) * 100)] * 1000
    label = label_value(repairs, "learner")
    assert len(label.encode("utf-8")) <= MAX_LABEL_BYTES
    parsed = json.loads(label)
    assert parsed[-1]["summary"].startswith("... (truncated, ")
    assert label_value(repairs, "aggregator") == "[]"


def test_includes_nest_and_multiply_only_so_far(tmp_path: Path) -> None:
    chain = {f"r{i}.txt": f"-r r{i + 1}.txt\n" for i in range(MAX_INCLUDE_DEPTH + 5)}
    repo = write_repo(tmp_path / "deep", {"model_manager.py": MODEL_MANAGER,
                                         "requirements.txt": "-r r0.txt\n", **chain})
    [problem] = plan_dependencies(repo).problems
    assert "beyond the builder's limits" in problem.message
    many = {f"f{i}.txt": f"package-{i}\n" for i in range(MAX_INCLUDED_FILES + 5)}
    listing = "".join(f"-r {name}\n" for name in many)
    repo = write_repo(tmp_path / "wide", {"model_manager.py": MODEL_MANAGER,
                                         "requirements.txt": listing, **many})
    problems = plan_dependencies(repo).problems
    assert len(problems) == 5 and all("beyond the builder's limits" in p.message
                                      for p in problems)
