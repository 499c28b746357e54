"""Desired-repo provenance, against real git repositories made in a temporary directory."""

from __future__ import annotations

import itertools
import os
import subprocess
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import pytest

from reconciler.edges.desired import sla_files
from reconciler.edges.desired_repo import (
    DesiredRepo,
    Provenance,
    PullStatus,
    check_ref_part,
    find_repo,
)

TIMEOUT = 60.0
ALICE = ("Alice Example", "alice@example.org")
BOB = ("Bob Example", "bob@example.org")
_EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z
_ticks = itertools.count(1)


@pytest.fixture(autouse=True)
def hermetic_git(monkeypatch: pytest.MonkeyPatch) -> None:
    """No user or system git configuration, for the tests' git and the module's git alike."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def run_git(cwd: Path, *args: str, author: tuple[str, str] = ALICE, check: bool = True,
            when: int | None = None) -> str:
    name, email = author
    stamp = f"{_EPOCH + (next(_ticks) if when is None else when)} +0000"
    env = {**os.environ, "GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
           "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email,
           "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
    result = subprocess.run(["git", *args], cwd=cwd, env=env, check=False,
                            capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
    return result.stdout.strip()


class Work:
    """A git work tree; ``desired`` is the desired directory inside it."""

    def __init__(self, root: Path, desired: str = ".") -> None:
        self.root = root
        self.desired = root / desired
        self.desired.mkdir(parents=True, exist_ok=True)

    @classmethod
    def init(cls, root: Path, desired: str = ".") -> Work:
        root.mkdir(parents=True, exist_ok=True)
        run_git(root, "init", "-q", "-b", "main")
        return cls(root, desired)

    def git(self, *args: str, author: tuple[str, str] = ALICE, check: bool = True) -> str:
        return run_git(self.root, *args, author=author, check=check)

    def write(self, name: str, text: str, *, where: Path | None = None) -> Path:
        path = (where or self.desired) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def commit(self, message: str, *, author: tuple[str, str] = ALICE,
               when: int | None = None) -> str:
        run_git(self.root, "add", "-A", author=author)
        run_git(self.root, "commit", "-q", "--allow-empty", "-m", message, author=author,
                when=when)
        return self.git("rev-parse", "HEAD")

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    def last_change(self, path: Path) -> str:
        """What git says on its own, one file at a time: the oracle for provenance."""
        return self.git("log", "-1", "--format=%H", "--", str(path.relative_to(self.root)))

    def repo(self) -> DesiredRepo:
        repo = find_repo(self.desired)
        assert repo is not None
        return repo


def commit_of(found: Provenance | None) -> str:
    assert found is not None, "expected a commit"
    return found.commit


def iso(commit: str, work: Work) -> str:
    return work.git("show", "-s", "--format=%cI", commit)


# --- finding the repository ------------------------------------------------------------------


def test_a_directory_outside_any_work_tree_has_no_repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    desired = tmp_path / "desired"
    desired.mkdir()
    (desired / "a.yaml").write_text("x: 1\n")
    assert find_repo(desired) is None
    assert find_repo(tmp_path / "missing") is None


def test_a_bare_repository_and_the_git_dir_are_not_work_trees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    run_git(tmp_path, "init", "-q", "--bare", "bare.git")
    assert find_repo(tmp_path / "bare.git") is None
    work = Work.init(tmp_path / "work")
    assert find_repo(work.root / ".git") is None
    assert find_repo(work.root) is not None


def test_the_root_and_the_desired_path_relative_to_it(tmp_path: Path) -> None:
    work = Work.init(tmp_path / "repo", "deploy/desired")
    repo = work.repo()
    assert repo.root.resolve() == work.root.resolve()
    assert repo.relative == PurePosixPath("deploy/desired")
    at_root = find_repo(work.root)
    assert at_root is not None
    assert at_root.relative == PurePosixPath(".")


# --- provenance --------------------------------------------------------------------------------


@pytest.mark.parametrize("desired", [".", "deploy/desired"])
def test_provenance_names_the_commit_that_last_changed_each_file(
    tmp_path: Path, desired: str
) -> None:
    work = Work.init(tmp_path / "repo", desired)
    a = work.write("a.yaml", "a: 1\n")
    b = work.write("b.yaml", "b: 1\n")
    gone = work.write("f.yaml", "f: 1\n")
    first = work.commit("add a, b, f", author=ALICE)
    a.write_text("a: 2\n")
    second = work.commit("change a", author=BOB)
    c = work.write("c.yaml", "c: 1\n")
    gone.unlink()
    third = work.commit("add c, drop f", author=ALICE)
    # Later commits that touch other files (one of them named like an SLA file, elsewhere).
    work.write("other/a.yaml", "elsewhere: true\n", where=work.root)
    work.write("notes.txt", "not an SLA\n")
    work.commit("unrelated", author=BOB)
    untracked = work.write("d.yaml", "d: 1\n")
    staged = work.write("e.yaml", "e: 1\n")
    work.git("add", "--", str(staged))
    gone.write_text("f: back, but not committed\n")

    repo = work.repo()
    files = sla_files(work.desired)
    result = repo.provenance(files)

    assert set(result) == set(files)
    assert result[a] == Provenance(second, *BOB, iso(second, work))
    assert result[b] == Provenance(first, *ALICE, iso(first, work))
    assert result[c] == Provenance(third, *ALICE, iso(third, work))
    assert result[untracked] is None
    assert result[staged] is None, "staged is not committed"
    assert result[gone] is None, "deleted at HEAD, then re-created in the working tree"
    for path in (a, b, c):
        assert commit_of(result[path]) == work.last_change(path)


def test_provenance_after_a_merge_credits_the_commit_whose_content_is_at_head(
    tmp_path: Path,
) -> None:
    work = Work.init(tmp_path / "repo")
    a = work.write("a.yaml", "v: base\n")
    b = work.write("b.yaml", "v: base\n")
    c = work.write("c.yaml", "v: base\n")
    work.commit("base", when=100)
    work.git("checkout", "-q", "-b", "side")
    a.write_text("v: side\n")
    c.write_text("v: side\n")
    side = work.commit("side changes a and c", author=BOB, when=200)
    work.git("checkout", "-q", "main")
    a.write_text("v: main\n")
    discarded = work.commit("main changes a (newer, later discarded)", when=300)
    work.git("merge", "-q", "--no-edit", "side", check=False)  # a conflict on a.yaml
    assert (work.root / ".git" / "MERGE_HEAD").exists()
    a.write_text("v: side\n")  # the conflict is resolved to the older side's version
    b.write_text("v: only in the merge\n")  # and the merge itself changes b
    merge = work.commit("merge side", when=400)

    result = work.repo().provenance([a, b, c])

    assert commit_of(result[a]) == side != discarded
    assert commit_of(result[b]) == merge
    assert commit_of(result[c]) == side
    for path in (a, b, c):
        assert commit_of(result[path]) == work.last_change(path)


def test_provenance_of_a_thousand_files_is_one_git_log_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = Work.init(tmp_path / "repo", "desired")
    commits: dict[str, str] = {}
    for batch in range(4):
        names = [f"p{batch}-{index:03d}.yaml" for index in range(250)]
        for name in names:
            work.write(name, f"n: {name}\n")
        sha = work.commit(f"batch {batch}")
        commits.update(dict.fromkeys(names, sha))
    touched = [f"p0-{index:03d}.yaml" for index in range(0, 250, 25)]
    for name in touched:
        work.write(name, "changed: true\n")
    last = work.commit("touch ten files of the first batch")
    commits.update(dict.fromkeys(touched, last))
    files = sla_files(work.desired)
    assert len(files) == 1000

    trace = tmp_path / "trace2.json"
    monkeypatch.setenv("GIT_TRACE2_EVENT", str(trace))  # git itself logs every process it runs
    repo = work.repo()
    trace.unlink()  # find_repo's own rev-parse is not part of provenance
    result = repo.provenance(files)

    assert {path.name: found.commit for path, found in result.items() if found} == commits
    assert repo.git_calls == Counter({"ls-tree": 1, "log": 1})
    starts = [line for line in trace.read_text().splitlines() if '"event":"start"' in line]
    assert len(starts) == 2, starts


# --- committed content ------------------------------------------------------------------------


@pytest.mark.parametrize("desired", [".", "deploy/desired"])
def test_head_documents_are_the_committed_content(tmp_path: Path, desired: str) -> None:
    work = Work.init(tmp_path / "repo", desired)
    a = work.write("a.yaml", "a: committed\n")
    work.write("aa-big.yaml", "x" * 300)
    work.write("b.json", '{"b": 1}')
    work.write(".hidden.yaml", "h: 1\n")
    work.write("notes.txt", "not an SLA\n")
    work.write("sub/nested.yaml", "n: 1\n")
    (work.desired / "link.yaml").symlink_to("a.yaml")
    work.commit("desired state")
    a.write_text("a: edited, not committed\n")
    work.write("c.yaml", "c: untracked\n")
    work.write("b.json", '{"b": "staged"}')
    work.git("add", "--", str(work.desired / "b.json"))

    repo = work.repo()
    documents = repo.head_documents(max_bytes=100)

    assert documents == {
        "a.yaml": b"a: committed\n",
        "aa-big.yaml": b"x" * 101,  # cut at max_bytes + 1: the reader sees it is too large
        "b.json": b'{"b": 1}',
    }
    assert repo.git_calls == Counter({"ls-tree": 1, "cat-file": 1})
    assert repo.head_documents()["aa-big.yaml"] == b"x" * 300


def test_head_documents_without_commits_or_without_a_committed_desired_dir(
    tmp_path: Path,
) -> None:
    work = Work.init(tmp_path / "repo", "desired")
    work.write("a.yaml", "a: 1\n")
    assert work.repo().head_documents() == {}, "no commit yet"
    work.write("README", "hello\n", where=work.root)
    work.git("add", "--", "README")
    work.git("commit", "-q", "-m", "only a readme")
    assert work.git("ls-files") == "README"
    assert work.repo().head_documents() == {}, "the desired directory is not committed"
    assert work.repo().provenance([work.desired / "a.yaml"]) == {work.desired / "a.yaml": None}


@pytest.mark.parametrize("desired", [".", "deploy/desired"])
def test_uncommitted_lists_modified_staged_untracked_ignored_and_deleted_files(
    tmp_path: Path, desired: str
) -> None:
    work = Work.init(tmp_path / "repo", desired)
    for name in ("a.yaml", "b.yaml", "c.yml", "d.json", "clean.yaml", "notes.txt"):
        work.write(name, f"{name}: 1\n")
    work.write(".gitignore", "g.yaml\n")
    work.commit("desired state")
    repo = work.repo()
    assert repo.uncommitted() == []

    work.write("a.yaml", "a: modified\n")
    work.write("b.yaml", "b: staged\n")
    work.git("add", "--", str(work.desired / "b.yaml"))
    (work.desired / "c.yml").unlink()
    work.write("e.yaml", "e: untracked\n")
    work.write("g.yaml", "g: ignored by git, still read from the working tree\n")
    work.write("notes.txt", "modified, not an SLA\n")
    work.write(".hidden.yaml", "untracked, hidden\n")
    work.write("sub/f.yaml", "untracked, not directly in desired\n")
    work.write("outside.yaml", "untracked, not in desired\n", where=work.root / "elsewhere")

    assert repo.uncommitted() == ["a.yaml", "b.yaml", "c.yml", "e.yaml", "g.yaml"]
    assert repo.git_calls == Counter({"status": 2})


# --- fast-forward -------------------------------------------------------------------------------


class Remote:
    """A bare "remote", a clone that pushes to it, and the reconciler's clone."""

    def __init__(self, tmp_path: Path) -> None:
        self.bare = tmp_path / "remote.git"
        run_git(tmp_path, "init", "-q", "--bare", "-b", "main", str(self.bare))
        self.upstream = Work.init(tmp_path / "upstream", "desired")
        self.upstream.write("a.yaml", "a: 1\n")
        self.upstream.commit("first")
        self.upstream.git("remote", "add", "origin", str(self.bare))
        self.upstream.git("push", "-q", "origin", "main")
        run_git(tmp_path, "clone", "-q", str(self.bare), "local")
        self.local = Work(tmp_path / "local", "desired")

    def push(self, name: str, text: str) -> str:
        self.upstream.write(name, text)
        sha = self.upstream.commit(f"upstream changes {name}")
        self.upstream.git("push", "-q", "origin", "main")
        return sha


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return Remote(tmp_path)


def test_fast_forward_when_up_to_date(remote: Remote) -> None:
    before = remote.local.head()
    result = remote.local.repo().fast_forward("origin", "main", TIMEOUT)
    assert result.status is PullStatus.up_to_date
    assert result.old == result.new == before
    assert remote.local.head() == before


def test_fast_forward_moves_the_branch_and_updates_the_files(remote: Remote) -> None:
    before = remote.local.head()
    remote.push("a.yaml", "a: 2\n")
    after = remote.push("b.yaml", "b: 1\n")

    result = remote.local.repo().fast_forward("origin", "main", TIMEOUT)

    assert result.status is PullStatus.fast_forwarded, result.message
    assert (result.old, result.new) == (before, after)
    assert f"{before[:12]}..{after[:12]}" in result.message
    assert remote.local.head() == after
    assert remote.local.git("symbolic-ref", "--short", "HEAD") == "main"
    assert (remote.local.desired / "a.yaml").read_text() == "a: 2\n"
    assert (remote.local.desired / "b.yaml").read_text() == "b: 1\n"
    assert remote.local.git("status", "--porcelain") == ""


@pytest.mark.parametrize("edit", ["modified", "untracked"])
def test_fast_forward_refuses_a_dirty_work_tree_and_touches_nothing(
    remote: Remote, edit: str
) -> None:
    before = remote.local.head()
    remote.push("a.yaml", "a: 2\n")
    if edit == "modified":
        remote.local.write("a.yaml", "a: local edit\n")
    else:
        remote.local.write("new.yaml", "n: local\n")

    result = remote.local.repo().fast_forward("origin", "main", TIMEOUT)

    assert result.status is PullStatus.dirty, result.message
    assert "uncommitted changes" in result.message
    assert remote.local.head() == before
    expected = "a: local edit\n" if edit == "modified" else "a: 1\n"
    assert (remote.local.desired / "a.yaml").read_text() == expected
    assert remote.local.git("stash", "list") == "", "never stashed"


@pytest.mark.parametrize("upstream_moves", [True, False])
def test_fast_forward_refuses_local_commits_and_keeps_them(
    remote: Remote, upstream_moves: bool
) -> None:
    if upstream_moves:
        remote.push("a.yaml", "a: 2\n")
    remote.local.write("a.yaml", "a: local commit\n")
    local = remote.local.commit("local change")

    result = remote.local.repo().fast_forward("origin", "main", TIMEOUT)

    assert result.status is PullStatus.diverged, result.message
    assert "1 commit(s)" in result.message
    assert remote.local.head() == local
    assert (remote.local.desired / "a.yaml").read_text() == "a: local commit\n"
    assert remote.local.git("rev-list", "--count", "--merges", "HEAD") == "0"


def test_fast_forward_errors_name_the_problem_and_change_nothing(remote: Remote) -> None:
    before = remote.local.head()
    remote.push("a.yaml", "a: 2\n")
    remote.local.git("remote", "add", "gone", str(remote.bare.parent / "no-such-repo.git"))
    repo = remote.local.repo()

    unknown_remote = repo.fast_forward("upstream", "main", TIMEOUT)
    assert unknown_remote.status is PullStatus.error
    assert "unknown remote 'upstream'" in unknown_remote.message
    assert "origin" in unknown_remote.message

    unknown_branch = repo.fast_forward("origin", "no-such-branch", TIMEOUT)
    assert unknown_branch.status is PullStatus.error
    assert "'no-such-branch' does not exist on remote 'origin'" in unknown_branch.message

    unreachable = repo.fast_forward("gone", "main", TIMEOUT)
    assert unreachable.status is PullStatus.error
    assert "git fetch gone main failed" in unreachable.message
    assert "no-such-repo.git" in unreachable.message

    assert remote.local.head() == before
    assert (remote.local.desired / "a.yaml").read_text() == "a: 1\n"


@pytest.mark.parametrize(
    ("remote_name", "branch"),
    [
        ("origin", "--upload-pack=touch pwned"),
        ("--upload-pack=x", "main"),
        ("origin", "-b"),
        ("origin", "a b"),
        ("origin", "main\n"),
        ("origin", "a\tb"),
        ("origin", ""),
        ("origin", "a..b"),
        ("origin", "a:b"),
        ("origin", "main.lock"),
        ("origin", "@{-1}"),
        ("origin", ".hidden"),
        ("origin", "trailing/"),
        ("origin", "a//b"),
        ("ori gin", "main"),
    ],
)
def test_fast_forward_rejects_unsafe_names_before_running_git(
    remote: Remote, remote_name: str, branch: str
) -> None:
    repo = remote.local.repo()
    with pytest.raises(ValueError, match=r"invalid (remote|branch) name"):
        repo.fast_forward(remote_name, branch, TIMEOUT)
    assert repo.git_calls == Counter(), "no git process ran"
    assert not (remote.local.root / "pwned").exists()


@pytest.mark.parametrize("name", ["main", "release/1.2", "feature-x_y", "v2.0"])
def test_ordinary_branch_names_are_accepted(name: str) -> None:
    check_ref_part(name, "branch")


def test_reads_after_a_fast_forward_see_the_new_head(remote: Remote) -> None:
    remote.push("a.yaml", "a: 2\n")
    repo = remote.local.repo()
    assert repo.head_documents() == {"a.yaml": b"a: 1\n"}
    assert repo.fast_forward("origin", "main", TIMEOUT).status is PullStatus.fast_forwarded
    assert repo.head_documents() == {"a.yaml": b"a: 2\n"}
    found = repo.provenance([remote.local.desired / "a.yaml"])[remote.local.desired / "a.yaml"]
    assert commit_of(found) == remote.upstream.head()
    assert found is not None
    assert datetime.fromisoformat(found.committed_at) > datetime(2024, 1, 1, tzinfo=UTC)
