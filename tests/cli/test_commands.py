"""The command line without Docker: exit codes and output of validate, plan, status, logs,
check-repo, and the state lock, run as a user runs them (a real subprocess)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import VALID, reconciler
from support import flops_ml_repo_files, make_ml_repo, wait_until

from reconciler.builder.repairs import Repair
from reconciler.core.project import DesiredProject, Phase, ProjectRecord
from reconciler.edges.desired import load_file
from reconciler.edges.observer import ObserverLog
from reconciler.edges.state import StateStore


@pytest.fixture
def desired(tmp_path: Path) -> Path:
    path = tmp_path / "desired"
    path.mkdir()
    return path


def test_validate_exit_codes_name_the_file_and_key(tmp_path: Path, desired: Path) -> None:
    (desired / "good.yaml").write_text(VALID)
    assert reconciler(tmp_path, "validate").returncode == 0
    (desired / "bad.yaml").write_text(VALID + "training_configuraton: {}\n")
    result = reconciler(tmp_path, "validate")
    assert result.returncode == 1
    assert "bad.yaml" in result.stdout and "training_configuration" in result.stdout
    only_good = reconciler(tmp_path, "validate", str(desired / "good.yaml"))
    assert only_good.returncode == 0


def test_plan_exit_codes_and_json(tmp_path: Path, desired: Path) -> None:
    assert reconciler(tmp_path, "plan").returncode == 0  # nothing desired, nothing recorded
    (desired / "alpha.yaml").write_text(VALID)
    result = reconciler(tmp_path, "plan", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout) == [
        {"project": "alpha", "action": "create",
         "reason": "new project: resolve the ref, then build or adopt", "hold": False}
    ]
    assert not (tmp_path / "state" / "projects").exists()  # plan has no side effects


def test_a_broken_configuration_is_exit_2_with_one_line(tmp_path: Path, desired: Path) -> None:
    (tmp_path / "reconciler.toml").write_text('registry = "ftp://nowhere"\n')
    result = reconciler(tmp_path, "plan")
    assert result.returncode == 2
    assert "registry" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["apply", "watch", "plan", "doctor"])
def test_swarm_with_a_local_registry_stops_every_command_at_start(
    tmp_path: Path, desired: Path, command: str
) -> None:
    (tmp_path / "reconciler.toml").write_text('backend = "swarm"\nregistry = "local"\n')
    (desired / "alpha.yaml").write_text(VALID)
    result = reconciler(tmp_path, command)
    assert result.returncode == 2
    assert 'backend = "swarm" needs registry = "<URL>"' in result.stderr
    assert not (tmp_path / "state" / "projects").exists()  # nothing was done


def test_logs_of_an_unknown_project_is_exit_1(tmp_path: Path, desired: Path) -> None:
    result = reconciler(tmp_path, "logs", "nobody")
    assert result.returncode == 1
    assert "nobody" in result.stderr


def test_status_json_has_the_contract_fields_for_an_invalid_project(
    tmp_path: Path, desired: Path
) -> None:
    (desired / "broken.yaml").write_text("ml_model_flavor: sklearn\n")
    applied = reconciler(tmp_path, "apply")
    assert applied.returncode == 1
    (row,) = json.loads(reconciler(tmp_path, "status", "--json").stdout)
    assert set(row) >= {"project", "phase", "commit", "images", "error", "observer_log",
                        "sla_file"}
    assert row["phase"] == "invalid" and "ml_repo_url" in row["error"]
    assert Path(row["observer_log"]).read_text().count(" ERROR validate ") == 1
    logs = reconciler(tmp_path, "logs", "broken")
    assert logs.returncode == 0 and "ml_repo_url" in logs.stdout


def test_status_json_shows_the_recorded_repair_diffs_and_base_image(
    tmp_path: Path, desired: Path
) -> None:
    store = StateStore(tmp_path / "state")
    diff = Repair(("learner",), "learner: removed mlflow==2.9.2",
                      ("- mlflow==2.9.2  # conda.yaml:7",))
    store.save(ProjectRecord(project="repaired", phase=Phase.ready, sla_file="repaired.yaml",
                             commit="a" * 40, repairs=[diff.summary], repair_diffs=[diff],
                             base_image="python:3.11-slim"))
    store.save(ProjectRecord(project="plain", phase=Phase.ready, sla_file="plain.yaml"))
    result = reconciler(tmp_path, "status", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["project"]: row for row in json.loads(result.stdout)}
    assert rows["repaired"]["repair_diffs"] == [
        {"roles": ["learner"], "summary": "learner: removed mlflow==2.9.2",
         "diff": ["- mlflow==2.9.2  # conda.yaml:7"]}]
    assert rows["repaired"]["base_image"] == "python:3.11-slim"
    assert rows["plain"]["repair_diffs"] == [] and rows["plain"]["base_image"] is None


def test_a_second_writer_is_refused_naming_the_holder(tmp_path: Path, desired: Path) -> None:
    store = StateStore(tmp_path / "state")
    with store.lock("test holder"):
        result = reconciler(tmp_path, "apply")
    assert result.returncode == 2
    assert "in use by" in result.stderr and "test holder" in result.stderr


def test_check_repo_on_a_good_and_a_broken_repository(tmp_path: Path) -> None:
    good = make_ml_repo(tmp_path, "good", flops_ml_repo_files(extra_deps=["mlflow==2.9.2"]))
    result = reconciler(tmp_path, "check-repo", str(good), "--json")
    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["ok"] is True
    assert not any("mlflow" in line for line in verdict["requirements"]["learner"])
    assert any("mlflow" in line for line in verdict["requirements"]["aggregator"])
    (repair,) = [r for r in verdict["repairs"] if "mlflow" in r["summary"]]
    assert repair["roles"] == ["learner"]
    assert any(line.startswith("- mlflow==2.9.2") for line in repair["diff"])
    text = reconciler(tmp_path, "check-repo", str(good))
    assert text.returncode == 0 and "- mlflow==2.9.2" in text.stdout  # the diff, as logged

    files = flops_ml_repo_files()
    files["model_manager.py"] = files["model_manager.py"].replace("def fit_model", "def fit")
    broken = make_ml_repo(tmp_path, "broken", files)
    result = reconciler(tmp_path, "check-repo", str(broken), "--ref", "main")
    assert result.returncode == 1
    assert "fit_model" in result.stdout
    # A bare repository (what a builder clones from) is checked at its HEAD, like a URL.
    bare = reconciler(tmp_path, "check-repo", str(tmp_path / "broken.git"))
    assert bare.returncode == 1 and "fit_model" in bare.stdout
    assert "model_manager.py is missing" not in bare.stdout
    assert reconciler(tmp_path, "check-repo", str(tmp_path / "good.git")).returncode == 0


def test_check_repo_names_flops_utils_imports_the_images_do_not_provide(tmp_path: Path) -> None:
    files = flops_ml_repo_files()
    files["data_manager.py"] = ("from flops_utils.ml_repo_building_blocks import load_dataset\n"
                                "from flops_utils.ml_repo_building_blocks import fetch_remote\n"
                                + files["data_manager.py"])
    repo = make_ml_repo(tmp_path, "imports", files)
    result = reconciler(tmp_path, "check-repo", str(repo), "--json")
    assert result.returncode == 1
    [problem] = json.loads(result.stdout)["problems"]
    assert (problem["file"], problem["line"], problem["category"]) == ("data_manager.py", 2,
                                                                       "repo")
    assert "fetch_remote" in problem["message"] and "load_dataset" in problem["message"]


def test_a_pass_over_ready_projects_touches_no_engine_or_registry(
    tmp_path: Path, desired: Path
) -> None:
    """Pinned projects (a commit as ml_repo_ref) need nothing from outside; tracked ones have
    their remote asked (a one-shot apply sees new commits), and a dead remote is a warning in
    their log while they stay ready."""
    # Every outside endpoint is dead: any Docker, registry or git call would fail the pass.
    (tmp_path / "reconciler.toml").write_text(
        'registry = "http://127.0.0.1:9"\nregistry_timeout = "1s"\ngit_timeout = "5s"\n'
        '[[hosts]]\nname = "dead"\ndocker_host = "unix:///nonexistent/docker.sock"\n'
        'addons = ["image-builder"]\n'
    )
    store = StateStore(tmp_path / "state")
    for index in range(20):
        sla = desired / f"p{index}.yaml"
        ref = f"ml_repo_ref: {'a' * 40}\n" if index % 2 else ""
        sla.write_text(f"ml_repo_url: https://unreachable.invalid/o/r{index}.git\n"
                       f"ml_model_flavor: sklearn\n{ref}")
        project = load_file(sla, allow_file_repos=False)
        assert isinstance(project, DesiredProject)
        store.save(ProjectRecord(
            project=project.name, phase=Phase.ready, sla_file=project.sla_file,
            sla=project.sla_dump, sla_digest=project.sla_digest,
            image_digest=project.image_digest, commit="a" * 40,
        ))
    result = reconciler(tmp_path, "apply", "--json")
    assert result.returncode == 0, result.stderr
    assert {row["phase"] for row in json.loads(result.stdout)} == {"ready"}
    logs = sorted(p.stem for p in (tmp_path / "state" / "observers").glob("*.log"))
    assert logs == sorted(f"p{index}" for index in range(0, 20, 2))  # the pinned: nothing
    for name in logs:
        [line] = store.observer_path(name).read_text().splitlines()
        assert " WARN resync cannot read repository https://unreachable.invalid/" in line, line


@contextlib.contextmanager
def following(state: Path, project: str) -> Iterator[list[str]]:
    """`reconciler logs PROJECT --follow` running; yields the lines it printed so far."""
    command = [sys.executable, "-m", "reconciler", "--state", str(state), "logs", project,
               "--follow"]
    follower = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = follower.stdout
    assert output is not None
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(output.readline, "")))
    reader.start()
    try:
        yield seen
    finally:
        follower.terminate()
        follower.wait(timeout=20)
        reader.join(timeout=20)


def test_logs_follow_prints_lines_as_they_are_appended(tmp_path: Path, desired: Path) -> None:
    log = ObserverLog(StateStore(tmp_path / "state").observer_path)
    log.info("alpha", "plan", "first line")
    with following(tmp_path / "state", "alpha") as seen:
        wait_until(lambda: any("first line" in line for line in seen), timeout=20)
        log.warn("alpha", "build", "second line")
        wait_until(lambda: any("second line" in line for line in seen), timeout=20)
    assert [line.split(" ", 2)[1] for line in seen] == ["INFO", "WARN"]


def test_logs_follow_goes_on_across_a_rotation(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    log = ObserverLog(store.observer_path, rotate_bytes=16 * 1024, keep=2)
    filler = "f" * 1000
    log.info("alpha", "plan", f"event 0 {filler}")
    with following(tmp_path / "state", "alpha") as seen:
        for n in range(1, 50):  # about three files' worth: two rotations
            wait_until(lambda: len(seen) == n, timeout=20)  # noqa: B023 (n is current)
            log.info("alpha", "plan", f"event {n} {filler}")
        wait_until(lambda: len(seen) == 50, timeout=20)
    assert (store.observers_dir / "alpha.log.2").exists()
    assert [int(line.split()[4]) for line in seen] == list(range(50))
