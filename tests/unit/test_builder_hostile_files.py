"""Hostile files in the ML repository (issue 9, items 2 and 3): symlinks out of the tree
(`requirements.txt -> /proc/self/environ`, `-> /etc/passwd`), FIFOs, links into `.git`, a
`.flops` symlink, and the walks that must not leave the tree. Real files in tmp_path, real
git repositories, the builder as a real process where the process's own environment matters.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from builder_support import MODEL_MANAGER, FakeEngine, build_request, commit_all, write_repo

from reconciler.builder import protocol
from reconciler.builder.checks import check_structure
from reconciler.builder.context import write_flops_dir, write_tar
from reconciler.builder.deps import plan_dependencies
from reconciler.builder.review import review_repository
from reconciler.builder.run import run

ROOT = Path(__file__).resolve().parents[2]
SECRET = "index-token-8d1f0c"  # in the builder's environment and its request, never its output


def request(repo: Path, sha: str) -> dict[str, Any]:
    return build_request(repo, sha, build_args={
        "PIP_INDEX_URL": f"https://user:{SECRET}@pypi.internal/simple"})


def check_repo(repo: Path) -> subprocess.CompletedProcess[str]:
    config = repo.parent / "reconciler.toml"
    config.write_text('registry = "local"\n')
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "--config", str(config), "check-repo", str(repo)],
        capture_output=True, text=True, timeout=60, cwd=repo.parent,
        env={**os.environ, "FLOPS_TEST_SECRET": SECRET},
    )


class RecordingEngine(FakeEngine):
    """Keeps the members and files of the last FL-actor build context."""

    @property
    def members(self) -> list[tarfile.TarInfo]:
        return self.tar_members[self.builds[-1][0]]

    @property
    def files(self) -> dict[str, bytes]:
        return self.contexts[self.builds[-1][0]]


@pytest.mark.parametrize(("target", "leak"), [("/proc/self/environ", SECRET),
                                              ("/etc/passwd", "root:")])
def test_a_requirements_symlink_out_of_the_repository_is_a_repo_problem(
    tmp_path: Path, target: str, leak: str
) -> None:
    repo = write_repo(tmp_path / "repo", {"model_manager.py": MODEL_MANAGER})
    (repo / "requirements.txt").symlink_to(target)
    checked = check_repo(repo)
    assert checked.returncode == 1, checked.stderr
    assert leak not in checked.stdout + checked.stderr
    assert (f"problem  requirements.txt is a symlink to a path outside the repository ({target})"
            "\n         fix: commit the file itself instead of a symlink to it") in checked.stdout
    [problem] = plan_dependencies(repo).problems
    assert (problem.category, problem.file) == ("repo", "requirements.txt")


def test_the_builder_never_reads_its_environment_through_a_committed_symlink(
    tmp_path: Path
) -> None:
    repo = write_repo(tmp_path / "repo", {"model_manager.py": MODEL_MANAGER})
    (repo / "requirements.txt").symlink_to("/proc/self/environ")
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps(request(repo, commit_all(repo))))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLOPS_TEST_SECRET": SECRET,
           "DOCKER_HOST": "unix:///nonexistent.sock",
           protocol.REQUEST_FILE_ENV: str(request_file)}
    proc = subprocess.run([sys.executable, "-m", "reconciler.builder"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    error = json.loads(proc.stdout.splitlines()[-1])["error"]
    assert (error["category"], error["stage"]) == ("repo", "dependencies")
    assert error["message"] == ("requirements.txt is a symlink to a path outside the repository "
                                "(/proc/self/environ)")


def test_a_conda_file_linked_out_of_the_tree_is_reported_not_read(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", {"model_manager.py": MODEL_MANAGER})
    (repo / "conda.yaml").symlink_to("/etc/passwd")
    [problem] = check_structure(repo)
    assert (problem.category, problem.file) == ("repo", "conda.yaml")
    assert "root:" not in problem.message + problem.hint


@pytest.mark.parametrize("name", ["model_manager.py", "conda.yaml", "requirements.txt"])
def test_a_fifo_is_reported_and_never_blocks_the_read(tmp_path: Path, name: str) -> None:
    files = {"model_manager.py": MODEL_MANAGER, "conda.yaml": "dependencies: [numpy]\n"}
    files.pop(name, None)
    repo = write_repo(tmp_path / "repo", files)
    os.mkfifo(repo / name)
    problems = review_repository(repo).problems  # what check-repo and the builder report
    assert [(p.category, p.file, p.message) for p in problems] == [
        ("repo", name, f"{name} is a FIFO, not a regular file")]


def test_a_dangling_symlink_names_the_link(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", {"conda.yaml": "dependencies: [numpy]\n"})
    (repo / "model_manager.py").symlink_to("src/gone.py")
    [problem] = check_structure(repo)
    assert problem.message == ("model_manager.py leads through the symlink model_manager.py -> "
                               "src/gone.py to nothing in the repository")


@pytest.mark.parametrize(("line", "message"), [
    ("-r through/passwd", "through/passwd is inside through, a symlink to a path outside the "
                          "repository (/etc)"),
    ("-r pipe.txt", "pipe.txt is a FIFO, not a regular file"),
    ("-r .git/config", ".git/config leads into .git, which is not one of the repository's "
                       "files"),
    ("-r git-link.txt", "git-link.txt leads into .git, which is not one of the repository's "
                        "files"),
])
def test_every_included_file_is_read_only_inside_the_repository(
    tmp_path: Path, line: str, message: str
) -> None:
    repo = write_repo(tmp_path / "repo", {"model_manager.py": MODEL_MANAGER,
                                         "requirements.txt": f"numpy\n{line}\n"})
    commit_all(repo)
    (repo / "through").symlink_to("/etc")
    (repo / "git-link.txt").symlink_to(".git/FETCH_HEAD")
    (repo / ".git" / "FETCH_HEAD").write_text(f"https://user:{SECRET}@git.example.org/x\n")
    os.mkfifo(repo / "pipe.txt")
    [problem] = plan_dependencies(repo).problems
    assert (problem.category, problem.file, problem.line) == ("repo", "requirements.txt", 2)
    target = line.split()[1]
    assert problem.message == f"requirements.txt:2 includes {target!r} (-r): {message}"


def test_an_include_that_names_a_path_outside_is_not_a_file_in_the_repository(
    tmp_path: Path
) -> None:
    (tmp_path / "outside.txt").write_text("numpy\n")
    repo = write_repo(tmp_path / "repo", {"model_manager.py": MODEL_MANAGER,
                                         "requirements.txt": "-r ../outside.txt\n"})
    [problem] = plan_dependencies(repo).problems
    assert "which is not a file in the repository" in problem.message


def test_a_symlink_that_stays_inside_the_repository_is_followed(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", {"model_manager.py": MODEL_MANAGER,
                                         "reqs/base.txt": "numpy==1.26.4\n",
                                         "reqs/dev.txt": "-r shared.txt\npytest\n"})
    (repo / "requirements.txt").symlink_to("reqs/dev.txt")
    (repo / "shared.txt").symlink_to("reqs/base.txt")  # -r is relative to requirements.txt
    plan = plan_dependencies(repo)
    assert plan.ok, plan.problems
    assert plan.requirements["learner"] == ["numpy==1.26.4", "pytest"]


def test_a_diamond_of_includes_reads_each_file_once(tmp_path: Path) -> None:
    files = {"model_manager.py": MODEL_MANAGER, "requirements.txt": "-r a0.txt\n-r b0.txt\n"}
    for level in range(8):  # each level includes the next twice: 2**8 reads before
        files[f"a{level}.txt"] = f"-r a{level + 1}.txt\n-r b{level + 1}.txt\n"
        files[f"b{level}.txt"] = f"-r a{level + 1}.txt\n-r b{level + 1}.txt\n"
    files["a8.txt"] = "numpy\n"
    files["b8.txt"] = "scipy\n"
    plan = plan_dependencies(write_repo(tmp_path / "repo", files))
    assert plan.ok, plan.problems
    assert plan.requirements["learner"] == ["numpy", "scipy"]


def test_the_misplaced_file_hint_does_not_follow_a_symlinked_directory(tmp_path: Path) -> None:
    outside = write_repo(tmp_path / "outside", {"model_manager.py": MODEL_MANAGER})
    repo = write_repo(tmp_path / "repo", {"conda.yaml": "dependencies: [numpy]\n",
                                         "a/b/c/model_manager.py": MODEL_MANAGER})
    (repo / "ext").symlink_to(outside)
    [problem] = check_structure(repo)
    assert problem.hint == "move a/b/c/model_manager.py to the repository root (FLOps imports " \
                           "it from there)"


def test_the_import_scan_stays_in_the_tree(tmp_path: Path) -> None:
    outside = write_repo(tmp_path / "outside", {"train.py": "import torchvision\n"})
    repo = write_repo(tmp_path / "repo", {"model_manager.py": MODEL_MANAGER,
                                         "requirements.txt": "torch==2.2.0\n"})
    (repo / "ext").symlink_to(outside)
    (repo / "linked.py").symlink_to(outside / "train.py")
    plan = plan_dependencies(repo)
    assert plan.requirements["learner"] == ["torch==2.2.0"]
    assert any("skipped 1 Python file" in w for w in plan.warnings)


def test_a_flops_symlink_is_replaced_and_nothing_is_written_through_it(tmp_path: Path) -> None:
    somewhere = tmp_path / "somewhere"
    somewhere.mkdir()
    repo = write_repo(tmp_path / "repo", {"model_manager.py": MODEL_MANAGER,
                                         "conda.yaml": "dependencies: [numpy]\n"})
    (repo / ".flops").symlink_to(somewhere)
    sha = commit_all(repo)
    engine = RecordingEngine()
    out = io.StringIO()
    code = run(json.dumps(request(repo, sha)), out, engine_factory=lambda: engine,
               workdir=tmp_path)
    assert code == 0, out.getvalue()
    assert list(somewhere.iterdir()) == []
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["message"] for e in events if e["type"] == "log" and ".flops" in e["message"]] == [
        f"the repository's .flops (a symlink to {somewhere}) was removed: the builder writes "
        "its generated files there"]
    flops = {m.name: m for m in engine.members if m.name.startswith(".flops")}
    assert flops[".flops"].isdir() and all(m.isfile() or m.isdir() for m in flops.values())
    assert not any(m.issym() for m in flops.values())
    assert engine.files[".flops/requirements-learner.txt"] == b"numpy\n"


@pytest.mark.parametrize("kind", ["file", "directory with a planted link"])
def test_whatever_the_repository_had_at_flops_is_removed_first(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "target.txt"
    target.write_text("untouched")
    repo = write_repo(tmp_path / "repo", {})
    if kind == "file":
        (repo / ".flops").write_text("x")
    else:
        (repo / ".flops").mkdir()
        (repo / ".flops" / "requirements-learner.txt").symlink_to(target)
    replaced = write_flops_dir(repo, {"learner": "FROM a\n"}, {"learner": ["numpy"]})
    assert replaced == ("a file" if kind == "file" else "a directory")
    assert target.read_text() == "untouched"
    assert not (repo / ".flops" / "requirements-learner.txt").is_symlink()
    assert (repo / ".flops" / "requirements-learner.txt").read_text() == "numpy\n"


def test_the_build_context_keeps_links_as_links_and_leaves_special_files_out(
    tmp_path: Path
) -> None:
    repo = write_repo(tmp_path / "repo", {"model_manager.py": MODEL_MANAGER})
    (repo / "passwd").symlink_to("/etc/passwd")
    (repo / "etc").symlink_to("/etc")
    os.mkfifo(repo / "pipe")
    with io.BytesIO() as out:
        write_tar(repo, out)
        with tarfile.open(fileobj=out) as tar:
            members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"model_manager.py", "passwd", "etc"}
    assert members["passwd"].issym() and members["passwd"].linkname == "/etc/passwd"
    assert members["etc"].issym() and members["etc"].linkname == "/etc"


def test_check_repo_shows_terminal_control_in_repository_text_as_escapes(
    tmp_path: Path
) -> None:
    repo = write_repo(tmp_path / "repo", {"model_manager.py": MODEL_MANAGER,
                                         "requirements.txt": "-r \x1b]0;owned\x07\x1bc.txt\n"})
    checked = check_repo(repo)
    assert checked.returncode == 1, checked.stderr
    assert "\x1b" not in checked.stdout and "\x07" not in checked.stdout
    assert "\\x1b]0;owned\\x07\\x1bc.txt" in checked.stdout
