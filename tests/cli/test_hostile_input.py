"""Hostile and careless input at the command line (issue 9): terminal control and rich markup
in SLA files and file names, a missing desired directory, keys written twice, twin project
names, a corrupt state record, unknown RECONCILER_* variables. No Docker: every project here
is invalid or held, so nothing reaches an engine."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path

import pytest
from cli_support import VALID, command, reconciler

from reconciler.core.project import Phase, ProjectRecord
from reconciler.edges.state import StateStore

OSC_TITLE = "\x1b]0;owned\x07"  # sets the terminal's title
RESET = "\x1bc"  # resets (clears) the terminal


def on_a_terminal(argv: list[str]) -> tuple[int, bytes]:
    """Run ``argv`` with a real pseudo-terminal as its stdin, stdout and stderr."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "300"}
    process = subprocess.Popen(argv, stdin=terminal, stdout=terminal, stderr=terminal, env=env)
    os.close(terminal)
    output = bytearray()
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the last writer closed its end
            break
        if not chunk:
            break
        output += chunk
    code = process.wait(timeout=120)
    os.close(controller)
    return code, bytes(output)


def test_markup_and_terminal_control_in_slas_and_file_names_stay_inert(tmp_path: Path) -> None:
    desired = tmp_path / "desired"
    desired.mkdir()
    (desired / "markup.yaml").write_text(VALID.replace("sklearn", "'[/]'"))
    (desired / f"evil{OSC_TITLE}.yaml").write_text(VALID)
    (desired / "keys.yaml").write_text(VALID + '"\\ec[bold]key": 1\n')  # YAML's ESC
    applied = reconciler(tmp_path, "apply")
    assert applied.returncode == 1, applied.stderr
    assert "\x1b" not in applied.stdout

    code, screen = on_a_terminal(command(tmp_path, "status"))
    assert code == 0, screen.decode(errors="replace")
    text = screen.decode(errors="replace")
    assert b"\x1b]" not in screen and b"\x1bc" not in screen  # only rich's own colours
    assert "[/]" in text  # shown as written, not read as markup
    assert "\\x1b]0;owned\\x07" in text.replace("\r\n", "")
    rows = json.loads(reconciler(tmp_path, "status", "--json").stdout)
    assert {row["phase"] for row in rows} == {"invalid"}
    for log in (tmp_path / "state" / "observers").iterdir():
        content = log.read_text()
        assert "\x1b" not in content and "\x07" not in content, log.name
    assert any("\\x1bc[bold]key" in log.read_text()
               for log in (tmp_path / "state" / "observers").iterdir())


@pytest.mark.parametrize("verb", ["plan", "apply", "validate", "watch"])
def test_a_missing_desired_directory_is_exit_2_and_prunes_nothing(
    tmp_path: Path, verb: str
) -> None:
    store = StateStore(tmp_path / "state")
    record = ProjectRecord(project="kept", phase=Phase.ready, sla_file="desired/kept.yaml",
                           commit="a" * 40)
    store.save(record)
    result = reconciler(tmp_path, verb)
    assert result.returncode == 2
    assert "desired directory" in result.stderr and "does not exist" in result.stderr
    assert "--desired" in result.stderr
    assert store.load("kept") == record


def test_keys_written_twice_and_twin_files_are_invalid_in_validate_as_in_plan(
    tmp_path: Path,
) -> None:
    desired = tmp_path / "desired"
    desired.mkdir()
    (desired / "twice.yaml").write_text(VALID + "ml_model_flavor: pytorch\n")
    (desired / "twin.yaml").write_text(VALID)
    (desired / "twin.yml").write_text(VALID)
    result = reconciler(tmp_path, "validate")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any("twice.yaml: key `ml_model_flavor` is written twice (lines 2 and 3)" in line
               for line in lines), lines
    twins = [line for line in lines if "twin.y" in line]
    assert len(twins) == 2 and all(line.startswith("invalid") for line in twins), lines
    plan = json.loads(reconciler(tmp_path, "plan", "--json", "--offline").stdout)
    assert {item["project"]: item["action"] for item in plan} == {
        "twice": "invalid", "twin": "invalid"}


def test_a_corrupt_record_is_shown_held_and_kept(tmp_path: Path) -> None:
    desired = tmp_path / "desired"
    desired.mkdir()
    (desired / "broken.yaml").write_text(VALID)
    record = tmp_path / "state" / "projects" / "broken.json"
    record.parent.mkdir(parents=True)
    record.write_text('{"project": "broken", "phase": ')
    [row] = json.loads(reconciler(tmp_path, "status", "--json").stdout)
    assert row["phase"] == "corrupt" and str(record) in row["error"]
    [item] = json.loads(reconciler(tmp_path, "plan", "--json", "--offline").stdout)
    assert (item["action"], item["hold"]) == ("invalid", True)
    assert reconciler(tmp_path, "apply").returncode == 1
    (desired / "broken.yaml").unlink()  # not even a removed SLA deletes it
    assert reconciler(tmp_path, "apply").returncode == 1
    assert record.read_text() == '{"project": "broken", "phase": '


def test_an_unknown_reconciler_variable_stops_every_command(tmp_path: Path) -> None:
    (tmp_path / "desired").mkdir()
    result = reconciler(tmp_path, "status", env={"RECONCILER_REGSTRY": "http://x:5000"})
    assert result.returncode == 2
    assert "RECONCILER_REGSTRY (did you mean RECONCILER_REGISTRY?)" in result.stderr
