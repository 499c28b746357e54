"""A desired directory inside a git repository: provenance, `--source head`, `--pull`.

Real git repositories; the projects here are invalid or resolved against nothing, so no
Docker, registry or network is involved.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support import git

VALID = "ml_repo_url: https://example.org/owner/repo.git\nml_model_flavor: sklearn\n"
INVALID = "ml_model_flavor: sklearn\n"  # no ml_repo_url: invalid without any outside call


def reconciler(root: Path, desired: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = root / "reconciler.toml"
    config.write_text('registry = "http://127.0.0.1:9"\nregistry_timeout = "1s"\n')
    command = [sys.executable, "-m", "reconciler", "--desired", str(desired),
               "--state", str(root / "state"), "--config", str(config), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def desired_repo(root: Path) -> Path:
    """A work tree whose `desired/` sub-directory holds the SLA files, with a bare origin."""
    work = root / "gitops"
    git(["init", "-q", "-b", "main", str(work)])
    (work / "desired").mkdir()
    (work / "README").write_text("gitops repo\n")
    git(["add", "-A"], cwd=work)
    git(["commit", "-q", "-m", "start"], cwd=work)
    git(["clone", "-q", "--bare", str(work), str(root / "origin.git")])
    git(["remote", "add", "origin", str(root / "origin.git")], cwd=work)
    git(["fetch", "-q", "origin"], cwd=work)
    return work


def commit_file(work: Path, name: str, text: str, message: str) -> str:
    (work / "desired").mkdir(exist_ok=True)
    (work / "desired" / name).write_text(text)
    git(["add", "-A"], cwd=work)
    git(["commit", "-q", "-m", message], cwd=work)
    return git(["rev-parse", "HEAD"], cwd=work)


def test_status_and_log_name_the_commit_that_last_changed_the_sla(tmp_path: Path) -> None:
    work = desired_repo(tmp_path)
    sha = commit_file(work, "alpha.yaml", INVALID, "add alpha")
    commit_file(work, "other.yaml", INVALID, "unrelated change")
    assert reconciler(tmp_path, work / "desired", "apply").returncode == 1
    rows = {r["project"]: r for r in json.loads(
        reconciler(tmp_path, work / "desired", "status", "--json").stdout)}
    assert rows["alpha"]["source"]["commit"] == sha
    assert "<" in rows["alpha"]["source"]["author"] and rows["alpha"]["source"]["date"]
    log = Path(rows["alpha"]["observer_log"]).read_text()
    assert f"desired-repo commit {sha[:12]}" in log

    assert reconciler(tmp_path, work / "desired", "apply").returncode == 1
    changed = commit_file(work, "alpha.yaml", "ml_model_flavor: [1]\n", "break alpha anew")
    assert reconciler(tmp_path, work / "desired", "apply").returncode == 1
    log = Path(rows["alpha"]["observer_log"]).read_text()
    assert log.count(f"desired-repo commit {sha[:12]}") == 1  # said once, when it changed
    assert log.count(f"desired-repo commit {changed[:12]}") == 1


def test_source_head_ignores_uncommitted_edits_and_plan_says_so(tmp_path: Path) -> None:
    work = desired_repo(tmp_path)
    commit_file(work, "alpha.yaml", VALID, "add alpha")
    (work / "desired" / "alpha.yaml").write_text(INVALID)  # uncommitted edit
    (work / "desired" / "beta.yaml").write_text(VALID)  # untracked file

    head = reconciler(tmp_path, work / "desired", "--source", "head", "plan", "--json")
    assert head.returncode == 1
    actions = {i["project"]: i["action"] for i in json.loads(head.stdout)}
    assert actions == {"alpha": "create"}  # committed content: valid; beta does not exist
    assert "ignores uncommitted edits" in head.stderr
    assert "alpha.yaml" in head.stderr and "beta.yaml" in head.stderr

    worktree = reconciler(tmp_path, work / "desired", "plan", "--json")
    actions = {i["project"]: i["action"] for i in json.loads(worktree.stdout)}
    assert actions == {"alpha": "invalid", "beta": "create"}


def test_pull_fast_forwards_and_never_resets_a_dirty_repository(tmp_path: Path) -> None:
    work = desired_repo(tmp_path)
    other = tmp_path / "colleague"
    git(["clone", "-q", str(tmp_path / "origin.git"), str(other)])
    commit_file(other, "pushed.yaml", INVALID, "add pushed")
    git(["push", "-q", "origin", "main"], cwd=other)

    pulled = reconciler(tmp_path, work / "desired", "--pull", "origin/main", "apply")
    assert pulled.returncode == 1, pulled.stderr
    assert (work / "desired" / "pushed.yaml").exists()
    assert git(["rev-parse", "HEAD"], cwd=work) == git(["rev-parse", "HEAD"], cwd=other)
    status = json.loads(reconciler(tmp_path, work / "desired", "status", "--json").stdout)
    assert [row["project"] for row in status] == ["pushed"]

    commit_file(other, "second.yaml", INVALID, "add second")
    git(["push", "-q", "origin", "main"], cwd=other)
    (work / "desired" / "local.yaml").write_text(INVALID)  # the work tree is now dirty
    refused = reconciler(tmp_path, work / "desired", "--pull", "origin/main", "apply")
    assert "dirty" in refused.stderr
    assert (work / "desired" / "local.yaml").read_text() == INVALID  # untouched
    assert not (work / "desired" / "second.yaml").exists()


def test_pull_rejects_an_option_like_branch(tmp_path: Path) -> None:
    work = desired_repo(tmp_path)
    result = reconciler(tmp_path, work / "desired", "--pull", "origin/--upload-pack=x", "apply")
    assert result.returncode == 2
    assert "branch" in result.stderr
