"""The state store (DESIGN §5): atomic records, safe keys, one reconciler per directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.builder.repairs import Repair
from reconciler.core.project import BuildRecord, Phase, ProjectRecord
from reconciler.core.record import record_json
from reconciler.edges.state import LockHeld, StateStore, atomic_write, checked_key

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def record(name: str = "demo", **changes: Any) -> ProjectRecord:
    fields: dict[str, Any] = {
        "project": name,
        "phase": Phase.building,
        "sla_file": f"desired/{name}.yaml",
        "sla": {"ml_repo_url": "https://github.com/o/r.git", "training_configuration": {"a": 1}},
        "sla_digest": "1" * 64,
        "image_digest": "2" * 64,
        "commit": COMMIT,
        "images": {"learner": f"flops.local/o/r/learner:{COMMIT}"},
        "digests": {"learner": "sha256:" + "3" * 64},
        "timings": {"clone": 1.5},
        "repairs": ["removed mlflow"],
        "repair_diffs": [Repair(roles=("learner",), summary="removed mlflow",
                                diff=("- mlflow==2.9.2  # conda.yaml:7",))],
        "base_image": "python:3.11-slim",
        "error": None,
        "build": BuildRecord(key="k" * 16, name="flops-build-demo-kkkkkkkkkkkk", host="local",
                             commit=COMMIT, images={}, started_at="2026-01-01T00:00:00.000Z",
                             events_logged=3),
        "updated_at": "2026-01-01T00:00:01.000Z",
    }
    fields.update(changes)
    return ProjectRecord(**fields)


def files_in(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    saved = record()
    store.save(saved)
    assert store.load("demo") == saved
    assert StateStore(tmp_path).load_all() == {"demo": saved}
    assert files_in(store.projects_dir) == ["demo.json"], "no temporary file is left behind"


@settings(max_examples=30, deadline=None)
@given(error=st.text(), repairs=st.lists(st.text(), max_size=3), seconds=st.floats(0, 1e6))
def test_any_text_round_trips(error: str, repairs: list[str], seconds: float) -> None:
    with tempfile.TemporaryDirectory() as directory:
        store = StateStore(Path(directory))
        saved = record(error=error, repairs=repairs, timings={"build": seconds})
        store.save(saved)
        assert store.load("demo") == saved


def test_save_replaces_the_previous_record(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save(record(phase=Phase.building))
    store.save(record(phase=Phase.ready, build=None))
    loaded = store.load("demo")
    assert loaded is not None
    assert (loaded.phase, loaded.build) == (Phase.ready, None)
    assert files_in(store.projects_dir) == ["demo.json"]


def test_load_of_an_unknown_project_is_none(tmp_path: Path) -> None:
    assert StateStore(tmp_path).load("nobody") is None
    assert StateStore(tmp_path / "missing").load_all() == {}


def test_delete_removes_the_record_and_tolerates_absence(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save(record("a"))
    store.save(record("b"))
    store.delete("a")
    store.delete("a")
    assert set(store.load_all()) == {"b"}


def test_a_temp_file_left_by_a_crash_is_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = StateStore(tmp_path)
    store.save(record("x"))
    (store.projects_dir / ".x.json.123.tmp").write_text('{"project": "x", "pha')
    (store.projects_dir / ".y.json.456.tmp").write_text(record_json(record("y")))
    assert set(store.load_all()) == {"x"}
    assert store.load("x") == record("x")
    assert capsys.readouterr().err == ""


def test_a_crash_before_the_rename_keeps_the_previous_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = StateStore(tmp_path)
    before = record(phase=Phase.building)
    store.save(before)

    def crash(source: str, target: str) -> None:
        raise OSError("simulated crash")

    monkeypatch.setattr("reconciler.edges.state.os.replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        store.save(record(phase=Phase.ready, build=None))
    monkeypatch.undo()
    assert store.load("demo") == before
    assert files_in(store.projects_dir) == ["demo.json"]


def test_atomic_write_creates_missing_directories(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "file.txt"
    atomic_write(target, "héllo\n")
    assert target.read_text(encoding="utf-8") == "héllo\n"


@pytest.mark.parametrize(
    "content",
    [
        "{",
        "",
        "[]",
        json.dumps({"project": "bad"}),
        json.dumps({"project": "bad", "phase": "exploded", "sla_file": "x"}),
    ],
)
def test_an_unreadable_record_stays_on_disk_and_shows_as_corrupt(
    tmp_path: Path, content: str
) -> None:
    store = StateStore(tmp_path)
    store.save(record("good"))
    bad = store.projects_dir / "bad.json"
    bad.write_text(content)
    records = store.load_all()
    assert set(records) == {"good", "bad"}
    assert records["good"] == record("good")
    corrupt = records["bad"]
    assert corrupt.phase is Phase.corrupt
    assert corrupt.error is not None and corrupt.error.startswith(f"state record {bad} ")
    assert "repaired or removed" in corrupt.error
    with pytest.raises(ValueError, match="corrupt record"):
        store.save(corrupt)
    assert bad.read_text() == content, "the file is kept as it was"


def test_a_record_that_is_not_utf8_or_names_another_project_is_corrupt(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.projects_dir.mkdir(parents=True)
    (store.projects_dir / "bin.json").write_bytes(b"\xff\xfe{")
    (store.projects_dir / "other.json").write_text(record_json(record("good")))
    records = store.load_all()
    assert {name: r.phase for name, r in records.items()} == {
        "bin": Phase.corrupt, "other": Phase.corrupt}
    assert "names project 'good', not 'other'" in (records["other"].error or "")


@pytest.mark.parametrize(
    "key", ["../x", "a/b", ".", "..", "", "A", "x.json", "a b", "a\nb", "/abs", "a" * 64, "a~b"]
)
def test_unsafe_keys_are_refused(tmp_path: Path, key: str) -> None:
    store = StateStore(tmp_path)
    for use in (checked_key, store.record_path, store.observer_path, store.build_dir, store.load,
                store.delete):
        with pytest.raises(ValueError, match="unsafe state key"):
            use(key)
    with pytest.raises(ValueError):
        store.save(record(key))
    assert not (tmp_path / "x.json").exists()
    assert not store.projects_dir.exists() or files_in(store.projects_dir) == []


@pytest.mark.parametrize(
    "key", ["demo", "a", "mnist_sklearn-2", "bad-name~5c6afd4b", "flops-build-demo-0123456789ab"]
)
def test_safe_keys_stay_inside_their_directories(tmp_path: Path, key: str) -> None:
    store = StateStore(tmp_path)
    assert checked_key(key) == key
    assert store.record_path(key).parent == store.projects_dir
    assert store.observer_path(key) == store.observers_dir / f"{key}.log"
    assert store.build_dir(key).parent == store.builds_dir


# --- the lock -------------------------------------------------------------------------------

_TRY_LOCK = """
import sys
from pathlib import Path
from reconciler.edges.state import LockHeld, StateStore
try:
    with StateStore(Path(sys.argv[1])).lock("second"):
        print("acquired")
except LockHeld as error:
    print(error)
    sys.exit(3)
"""

_HOLD_LOCK = """
import sys
from pathlib import Path
from reconciler.edges.state import StateStore
with StateStore(Path(sys.argv[1])).lock("reconciler watch"):
    print("locked", flush=True)
    sys.stdin.read()
"""


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_a_second_process_cannot_take_a_held_lock(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    with store.lock("reconciler apply"):
        holder = json.loads((tmp_path / "lock").read_text())
        assert holder["pid"] == os.getpid()
        assert holder["command"] == "reconciler apply"
        second = subprocess.run(python(_TRY_LOCK, str(tmp_path)), capture_output=True,
                                text=True, env=child_env(), timeout=60)
    assert second.returncode == 3, second.stderr
    assert f'"pid": {os.getpid()}' in second.stdout
    assert "reconciler apply" in second.stdout
    assert str(tmp_path) in second.stdout
    released = subprocess.run(python(_TRY_LOCK, str(tmp_path)), capture_output=True,
                              text=True, env=child_env(), timeout=60)
    assert (released.returncode, released.stdout.strip()) == (0, "acquired")


def test_a_lock_held_by_another_process_names_its_pid(tmp_path: Path) -> None:
    holder = subprocess.Popen(python(_HOLD_LOCK, str(tmp_path)), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=child_env())
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockHeld) as info, StateStore(tmp_path).lock("second"):
            pass
        message = str(info.value)
        assert f'"pid": {holder.pid}' in message
        assert "reconciler watch" in message
        assert "another --state directory" in message
        holder.stdin.close()
        assert holder.wait(timeout=60) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    with StateStore(tmp_path).lock("after"):
        assert json.loads((tmp_path / "lock").read_text())["command"] == "after"
    assert (tmp_path / "lock").read_text() == "", "the holder is cleared on release"
