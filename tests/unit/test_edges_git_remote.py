"""Resolving refs with ls-remote, against real git repositories made in a temporary directory."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.edges.git_remote import GitRemoteError, resolve_commit

TIMEOUT = 60.0
# No user or system configuration may change what these repositories look like.
GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.org",
}


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True,
                            capture_output=True, text=True)
    return result.stdout.strip()


@dataclass(frozen=True)
class Repo:
    path: Path

    def rev(self, name: str) -> str:
        return git(self.path, "rev-parse", name)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    path = tmp_path_factory.mktemp("remote") / "ml repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "model_manager.py").write_text("class ModelManager: ...\n")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "first")
    git(path, "tag", "-a", "v1", "-m", "release 1")
    git(path, "tag", "light")
    git(path, "branch", "feature")
    git(path, "commit", "-q", "--allow-empty", "-m", "second on main")
    git(path, "checkout", "-q", "feature")
    git(path, "commit", "-q", "--allow-empty", "-m", "on feature")
    git(path, "branch", "same-name")
    git(path, "tag", "-a", "same-name", "-m", "a tag named like a branch", "main~1")
    git(path, "checkout", "-q", "main")
    return Repo(path)


def test_no_ref_means_the_remote_head(repo: Repo) -> None:
    assert resolve_commit(str(repo.path), None, timeout=TIMEOUT) == repo.rev("HEAD")
    assert resolve_commit(str(repo.path), "HEAD", timeout=TIMEOUT) == repo.rev("HEAD")


def test_a_branch(repo: Repo) -> None:
    commit = resolve_commit(str(repo.path), "feature", timeout=TIMEOUT)
    assert commit == repo.rev("feature")
    assert commit != repo.rev("main")


def test_an_annotated_tag_is_peeled_to_its_commit(repo: Repo) -> None:
    commit = resolve_commit(str(repo.path), "v1", timeout=TIMEOUT)
    assert commit == repo.rev("v1^{commit}")
    assert commit != repo.rev("v1"), "the tag object itself is not a commit"
    assert git(repo.path, "cat-file", "-t", commit) == "commit"


def test_a_lightweight_tag(repo: Repo) -> None:
    assert resolve_commit(str(repo.path), "light", timeout=TIMEOUT) == repo.rev("light")


def test_full_ref_names(repo: Repo) -> None:
    assert resolve_commit(str(repo.path), "refs/heads/feature", timeout=TIMEOUT) == repo.rev(
        "feature"
    )
    assert resolve_commit(str(repo.path), "refs/tags/v1", timeout=TIMEOUT) == repo.rev(
        "v1^{commit}"
    )


def test_a_branch_wins_over_a_tag_of_the_same_name(repo: Repo) -> None:
    commit = resolve_commit(str(repo.path), "same-name", timeout=TIMEOUT)
    assert commit == repo.rev("refs/heads/same-name")
    assert commit != repo.rev("refs/tags/same-name^{commit}")


def test_a_file_url_works_like_a_path(repo: Repo) -> None:
    url = repo.path.as_uri()
    assert url.startswith("file://")
    assert resolve_commit(url, "feature", timeout=TIMEOUT) == repo.rev("feature")
    assert resolve_commit(url, "v1", timeout=TIMEOUT) == repo.rev("v1^{commit}")


def test_a_full_commit_id_is_returned_as_is_without_asking(tmp_path: Path) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    assert resolve_commit(str(tmp_path / "nowhere"), commit, timeout=TIMEOUT) == commit


def test_a_missing_ref_is_an_error_naming_it(repo: Repo) -> None:
    with pytest.raises(GitRemoteError) as info:
        resolve_commit(str(repo.path), "no-such-branch", timeout=TIMEOUT)
    assert "'no-such-branch'" in str(info.value)
    assert str(repo.path) in str(info.value)
    assert "ml_repo_ref" in str(info.value)


def test_a_ref_must_match_a_whole_name(repo: Repo) -> None:
    with pytest.raises(GitRemoteError):
        resolve_commit(str(repo.path), "eature", timeout=TIMEOUT)


@pytest.mark.parametrize("as_url", [False, True])
def test_a_missing_repository_is_an_error(tmp_path: Path, as_url: bool) -> None:
    missing = tmp_path / "gone"
    url = missing.as_uri() if as_url else str(missing)
    with pytest.raises(GitRemoteError) as info:
        resolve_commit(url, "main", timeout=TIMEOUT)
    assert url in str(info.value)
    assert "does not exist" in str(info.value)


def test_a_directory_that_is_not_a_repository_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(GitRemoteError) as info:
        resolve_commit(str(tmp_path), None, timeout=TIMEOUT)
    message = str(info.value)
    assert str(tmp_path) in message
    assert "\n" not in message


def test_an_empty_repository_has_no_head(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q", "-b", "main")
    with pytest.raises(GitRemoteError, match="no HEAD"):
        resolve_commit(str(empty), None, timeout=TIMEOUT)
