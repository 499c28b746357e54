"""Desired-repo provenance: the git work tree that may hold the desired directory.

GitOps tools (Argo CD, Flux) report which commit the desired state came from, can ignore
uncommitted edits, and pull the desired repository themselves. This module gives the
reconciler the same: which commit last changed each SLA file, the SLA files as committed at
HEAD (read from git objects, never from the working tree), which SLA files have uncommitted
edits, and a fast-forward-only pull that never discards anything.

Decision: provenance is ONE ``git log`` walk over the desired directory (plus one ``ls-tree``
of HEAD), whatever the number of files, and a file's commit is the first commit in that walk
whose diff *produced the file's blob at HEAD*, not merely the first commit that touched it.
"First mention wins" is wrong after a merge whose conflict kept the older side's version (the
walk meets the newer, discarded change first); matching the HEAD blob agrees with
``git log -1 -- FILE`` there too, and merge commits are diffed combined (``-c``) so a
conflict resolution that matches neither parent is credited to the merge.

Every git process goes through ``DesiredRepo._git`` (counted in ``git_calls``): argument
lists only, never a shell; paths always after ``--`` and read as literal pathspecs; a remote
and branch name are validated against git's ref-name rules before they reach git.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import IO, Any

from git.cmd import Git
from git.exc import GitCommandNotFound

from reconciler.edges.desired import MAX_BYTES, SUFFIXES

DEFAULT_TIMEOUT = 120.0  # seconds, for local git commands (a hung filesystem must not hang us)
_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true",
        "GIT_MERGE_AUTOEDIT": "no"}
_MARK = b"\x01commit "  # starts a commit header in our log format; never a diff entry
_LOG_FORMAT = "--format=%x01commit %H%x00%aN%x00%aE%x00%cI"
# User configuration that would change what `git log` prints for our format.
_LOG_CONFIG = ("log.follow=false", "log.showSignature=false", "log.showRoot=true",
               "diff.relative=false")
_REGULAR_FILE_MODES = (b"100644", b"100755")
_REF_FORBIDDEN = frozenset(" ~^:?*[\\")
_SHOWN_PATHS = 3


class DesiredRepoError(RuntimeError):
    """A git command on the desired repository failed; ``str()`` is one line."""


@dataclass(frozen=True)
class Provenance:
    """The commit that last changed a file."""

    commit: str
    author_name: str
    author_email: str
    committed_at: str  # ISO-8601 with offset, e.g. 2024-05-01T12:00:00+02:00


class PullStatus(StrEnum):
    up_to_date = "up-to-date"
    fast_forwarded = "fast-forwarded"
    dirty = "dirty"
    diverged = "diverged"
    error = "error"


@dataclass(frozen=True)
class PullResult:
    status: PullStatus
    message: str  # one line, for the observer log / CLI
    old: str | None = None  # HEAD before (None when it could not be read)
    new: str | None = None  # HEAD after a fast-forward, else the remote's commit when known


def find_repo(desired_dir: Path, *, timeout: float = DEFAULT_TIMEOUT) -> DesiredRepo | None:
    """The git work tree that contains ``desired_dir``.

    None when the directory does not exist, is not inside a work tree (also: a bare
    repository, or inside ``.git``) or git is not installed. Raises ``DesiredRepoError``
    when there is a repository that git refuses to use (e.g. "dubious ownership").
    """
    directory = Path(os.path.abspath(desired_dir))
    # GitPython silently runs in the process's cwd when the working dir is not usable.
    if not directory.is_dir() or not os.access(directory, os.X_OK):
        return None
    try:
        status, out, err = Git(directory).execute(
            ["git", "rev-parse", "--show-toplevel"], with_extended_output=True,
            with_exceptions=False, kill_after_timeout=timeout, env=_ENV,
        )
    except GitCommandNotFound:
        return None
    if status != 0:
        if "not a git repository" in err or "must be run in a work tree" in err:
            return None
        raise DesiredRepoError(f"cannot use the git repository around {directory}: "
                               f"{_first_line(err, status)}")
    root = Path(out)
    try:
        relative = directory.resolve().relative_to(root.resolve())
    except ValueError:
        return None
    return DesiredRepo(root, directory, PurePosixPath(relative.as_posix()), timeout=timeout)


@dataclass(eq=False)
class DesiredRepo:
    """A desired directory inside a git work tree.

    ``relative`` is the desired directory relative to ``root`` (``.`` when they are the
    same). ``git_calls`` counts the git processes this object started, per subcommand.
    """

    root: Path
    desired_dir: Path
    relative: PurePosixPath
    timeout: float = DEFAULT_TIMEOUT
    git_calls: Counter[str] = field(default_factory=Counter, init=False)

    # --- provenance --------------------------------------------------------------------------

    def provenance(self, files: Iterable[Path]) -> dict[Path, Provenance | None]:
        """For each SLA file (directly in the desired dir), the commit that last changed it.

        None for a file that is not in HEAD (untracked, only staged, or outside the desired
        directory). Two git processes in all: ``ls-tree`` of HEAD and one ``log`` walk.
        """
        files = list(files)
        result: dict[Path, Provenance | None] = dict.fromkeys(files)
        names = {file: self._name_in_desired(file) for file in files}
        head = self._head_tree()
        wanted = {
            self._git_path(name): head[name].sha
            for name in names.values()
            if name is not None and name in head and head[name].kind == b"blob"
        }
        if not wanted:
            return result
        output = self._git(
            "log", "-z", "--no-color", "--no-renames", "--no-abbrev", "--raw", "-c",
            _LOG_FORMAT, "HEAD", "--", self._pathspec(), config=_LOG_CONFIG, literal=True,
        )
        commits = _last_changes(output, wanted)
        for file, name in names.items():
            if name is not None:
                result[file] = commits.get(self._git_path(name))
        return result

    # --- committed content ------------------------------------------------------------------

    def head_documents(
        self, suffixes: Sequence[str] = SUFFIXES, *, max_bytes: int = MAX_BYTES
    ) -> dict[str, bytes]:
        """File name -> content at HEAD, for every SLA file directly in the desired directory.

        Regular files only (a committed symlink or submodule is not an SLA file here), hidden
        names skipped, read from git's objects. A blob larger than ``max_bytes`` is cut to
        ``max_bytes + 1`` bytes, so ``len(content) > max_bytes`` tells the reader it is too
        large (as its bounded read of a working-tree file does) without holding it in memory.
        Two git processes: ``ls-tree`` and one ``cat-file --batch``.
        """
        entries = {
            name: entry
            for name, entry in self._head_tree().items()
            if _is_sla(name, suffixes) and entry.kind == b"blob"
            and entry.mode in _REGULAR_FILE_MODES
        }
        if not entries:
            return {}
        documents: dict[str, bytes] = {}
        with tempfile.TemporaryFile() as request, tempfile.TemporaryFile() as response:
            request.write(b"".join(entry.sha + b"\n" for entry in entries.values()))
            request.seek(0)
            self._git("cat-file", "--batch", istream=request, output_stream=response)
            response.seek(0)
            for name, entry in entries.items():
                documents[name] = _read_batch_blob(response, entry.sha, max_bytes)
        return documents

    def uncommitted(self, suffixes: Sequence[str] = SUFFIXES) -> list[str]:
        """Names of the SLA files in the desired directory whose working-tree state differs
        from HEAD: modified (staged or not), untracked, git-ignored, or deleted. Sorted.

        It takes no file list: a deleted file is in no listing of the working tree.
        """
        output = self._git(
            "status", "--porcelain", "-z", "--untracked-files=all", "--ignored",
            "--no-renames", "--", self._pathspec(), literal=True, optional_locks=False,
        )
        directory = b"" if self._at_root() else os.fsencode(str(self.relative))
        names: set[str] = set()
        for entry in output.split(b"\0"):
            parent, _, name = entry[3:].rpartition(b"/")
            if len(entry) > 3 and parent == directory and _is_sla(os.fsdecode(name), suffixes):
                names.add(os.fsdecode(name))
        return sorted(names)

    # --- pulling -----------------------------------------------------------------------------

    def fast_forward(self, remote: str, branch: str, timeout: float) -> PullResult:
        """Fetch ``branch`` from the configured ``remote`` and fast-forward the current branch
        (or a detached HEAD) to it, when that is a pure fast-forward and the work tree is
        clean. Never resets, stashes, rebases or creates a merge commit.

        Raises ValueError for a remote or branch name that git would not accept as part of
        a ref name (or that could be read as an option). ``timeout`` bounds the fetch.
        """
        check_ref_part(remote, "remote")
        check_ref_part(branch, "branch")
        tracking = f"refs/remotes/{remote}/{branch}"
        try:
            remotes = self._git("remote").decode(errors="replace").split()
            if remote not in remotes:
                known = ", ".join(remotes) or "none"
                return PullResult(PullStatus.error, f"unknown remote '{remote}' (configured: "
                                  f"{known}); add it with `git remote add`")
            status, out, _ = self._run("symbolic-ref", "-q", "--short", "HEAD")
            here = out.decode(errors="replace") if status == 0 else "detached HEAD"
            status, out, _ = self._run("rev-parse", "--verify", "-q", "HEAD^{commit}")
            if status != 0:
                return PullResult(PullStatus.error, f"{here} has no commit yet; clone the "
                                  "desired repository instead of pulling into an empty one")
            old = out.decode()
            status, _, err = self._run(
                "fetch", "--quiet", "--no-tags", "--no-recurse-submodules", "--",
                remote, f"+refs/heads/{branch}:{tracking}", timeout=timeout,
            )
            if status != 0:
                return PullResult(PullStatus.error, _fetch_error(remote, branch, err, status,
                                                                 timeout), old=old)
            new = self._git("rev-parse", "--verify", f"{tracking}^{{commit}}").decode()
            if new == old:
                return PullResult(PullStatus.up_to_date,
                                  f"{here} is up to date with {remote}/{branch} at {new[:12]}",
                                  old=old, new=new)
            counts = self._git("rev-list", "--left-right", "--count", f"{old}...{new}").split()
            ahead, behind = int(counts[0]), int(counts[1])
            if ahead:
                return PullResult(
                    PullStatus.diverged,
                    f"{here} has {ahead} commit(s) that are not on {remote}/{branch} "
                    f"({behind} new there); not pulled, nothing reset: push or drop them",
                    old=old, new=new,
                )
            changes = self._git("status", "--porcelain", "-z", "--untracked-files=normal",
                                "--no-renames",
                                optional_locks=False)
            dirty = [entry[3:] for entry in changes.split(b"\0") if len(entry) > 3]
            if dirty:
                shown = ", ".join(os.fsdecode(path) for path in dirty[:_SHOWN_PATHS])
                more = f" and {len(dirty) - _SHOWN_PATHS} more" if len(dirty) > _SHOWN_PATHS else ""
                return PullResult(
                    PullStatus.dirty,
                    f"{here} has uncommitted changes ({shown}{more}); not pulled "
                    f"{remote}/{branch} ({behind} new commit(s)): commit or discard them",
                    old=old, new=new,
                )
            status, _, err = self._run("merge", "--ff-only", "--quiet", "--", new,
                                       config=("merge.autoStash=false",), kill=False)
            head = self._git("rev-parse", "--verify", "HEAD^{commit}").decode()
        except DesiredRepoError as error:
            return PullResult(PullStatus.error, str(error))
        if status != 0 or head != new:
            return PullResult(PullStatus.error, f"fast-forward of {here} to {remote}/{branch} "
                              f"failed: {_first_line(err, status)}", old=old, new=new)
        return PullResult(PullStatus.fast_forwarded,
                          f"fast-forwarded {here} {old[:12]}..{new[:12]} from {remote}/{branch} "
                          f"({behind} commit(s))", old=old, new=new)

    # --- helpers -----------------------------------------------------------------------------

    def _at_root(self) -> bool:
        return self.relative == PurePosixPath(".")

    def _pathspec(self) -> str:
        return str(self.relative)  # "." at the root; read literally (--literal-pathspecs)

    def _git_path(self, name: str) -> bytes:
        return os.fsencode(str(self.relative / name))

    def _name_in_desired(self, file: Path) -> str | None:
        absolute = Path(os.path.abspath(file))
        if absolute.parent == self.desired_dir or absolute.parent.resolve() == (
            self.desired_dir.resolve()
        ):
            return absolute.name
        return None

    def _head_tree(self) -> dict[str, _TreeEntry]:
        """The entries directly in the desired directory at HEAD ({} when there is none)."""
        tree = "HEAD:" + ("" if self._at_root() else str(self.relative))
        status, out, err = self._run("ls-tree", "-z", "--", tree)
        if status != 0:
            if "Not a valid object name" in err or "not a tree object" in err:
                return {}  # no commit yet, or the desired directory is not committed
            raise DesiredRepoError(f"git ls-tree {tree} failed: {_first_line(err, status)}")
        entries: dict[str, _TreeEntry] = {}
        for line in out.split(b"\0"):
            meta, tab, name = line.partition(b"\t")
            fields = meta.split()
            if tab and len(fields) == 3:
                entries[os.fsdecode(name)] = _TreeEntry(fields[0], fields[1], fields[2])
        return entries

    def _git(self, subcommand: str, *args: str, config: Sequence[str] = (),
             literal: bool = False, optional_locks: bool = True,
             istream: IO[bytes] | None = None, output_stream: IO[bytes] | None = None) -> bytes:
        """Run git; its stdout, or DesiredRepoError (one line) when it fails."""
        status, out, err = self._run(subcommand, *args, config=config, literal=literal,
                                     optional_locks=optional_locks, istream=istream,
                                     output_stream=output_stream)
        if status != 0:
            raise DesiredRepoError(f"git {subcommand} in {self.root} failed: "
                                   f"{_first_line(err, status)}")
        return out

    def _run(self, subcommand: str, *args: str, config: Sequence[str] = (),
             literal: bool = False, optional_locks: bool = True,
             istream: IO[bytes] | None = None, output_stream: IO[bytes] | None = None,
             timeout: float | None = None, kill: bool = True) -> tuple[int, bytes, str]:
        """Run git in the work-tree root: (exit status, stdout, stderr). No shell, ever.

        It is killed after ``timeout`` (default: ``self.timeout``) unless ``kill`` is false
        (a command that writes the work tree must finish); a timeout reads as git's own
        failure whose stderr starts with "Timeout:".
        """
        command = ["git"]
        for setting in config:
            command += ["-c", setting]
        if literal:
            command.append("--literal-pathspecs")
        if not optional_locks:
            command.append("--no-optional-locks")  # a status must not rewrite the index
        command += [subcommand, *args]
        self.git_calls[subcommand] += 1
        limit = (self.timeout if timeout is None else timeout) if kill else None
        kwargs: dict[str, Any] = {}
        if istream is not None:
            kwargs["istream"] = istream
        if output_stream is not None:
            kwargs["output_stream"] = output_stream
        try:
            status, out, err = Git(self.root).execute(
                command, with_extended_output=True, with_exceptions=False,
                stdout_as_string=False, kill_after_timeout=limit, env=_ENV, **kwargs,
            )
        except GitCommandNotFound:
            raise DesiredRepoError("git is not installed (or not on PATH)") from None
        return int(status), bytes(out or b""), str(err)


@dataclass(frozen=True)
class _TreeEntry:
    mode: bytes
    kind: bytes
    sha: bytes


def check_ref_part(value: str, what: str) -> None:
    """Raise ValueError unless ``value`` is a safe remote or branch name (git ref rules)."""
    problem = _ref_problem(value)
    if problem:
        raise ValueError(f"invalid {what} name {value!r}: {problem}")


def _ref_problem(value: str) -> str | None:
    if not value:
        return "it is empty"
    if value.startswith("-"):
        return "it starts with '-' (git would read it as an option)"
    if any(char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        return "it contains whitespace or a control character"
    forbidden = sorted(set(value) & _REF_FORBIDDEN)
    if forbidden:
        return f"it contains {forbidden[0]!r}, which git does not allow in ref names"
    for sequence in ("..", "@{", "//"):
        if sequence in value:
            return f"it contains {sequence!r}, which git does not allow in ref names"
    if value == "@" or value.startswith("/") or value.endswith(("/", ".")):
        return "git does not allow a ref name to be '@', start with '/' or end with '/' or '.'"
    for part in value.split("/"):
        if part.startswith(".") or part.endswith(".lock"):
            return "a '/'-separated part starts with '.' or ends with '.lock'"
    return None


def _is_sla(name: str, suffixes: Sequence[str]) -> bool:
    return not name.startswith(".") and PurePosixPath(name).suffix in suffixes


def _last_changes(output: bytes, wanted: dict[bytes, bytes]) -> dict[bytes, Provenance]:
    """Parse ``git log -z --raw -c`` output (newest first): for each wanted path, the first
    commit whose diff produced the wanted blob; failing that, the first one that touched it."""
    found: dict[bytes, Provenance] = {}
    touched: dict[bytes, Provenance] = {}
    tokens = output.split(b"\0")
    commit: Provenance | None = None
    index = 0
    while index < len(tokens):
        token = tokens[index].lstrip(b"\n")
        index += 1
        if token.startswith(_MARK) and index + 3 <= len(tokens):
            name, email, date = (item.decode(errors="replace") for item in tokens[index:index + 3])
            commit = Provenance(token[len(_MARK):].decode(), name, email, date)
            index += 3
        elif token.startswith(b":") and index < len(tokens):
            # ":mode mode old new M" (or "::mode mode mode p1 p2 result MM" for a merge),
            # then the path as its own token.
            path = tokens[index]
            index += 1
            if commit is None or path not in wanted or path in found:
                continue
            fields = token.split()
            if len(fields) >= 2 and fields[-2] == wanted[path]:
                found[path] = commit
            else:
                touched.setdefault(path, commit)
    return {**touched, **found}


def _read_batch_blob(response: IO[bytes], sha: bytes, max_bytes: int) -> bytes:
    header = response.readline().split()
    if len(header) != 3 or header[0] != sha or header[1] != b"blob":
        raise DesiredRepoError(f"git cat-file returned {b' '.join(header)!r} for blob "
                               f"{sha.decode()}; is the repository corrupt?")
    size = int(header[2])
    data = response.read(min(size, max_bytes + 1))
    response.seek(size - len(data) + 1, os.SEEK_CUR)  # the rest of the blob and its "\n"
    return data


def _fetch_error(remote: str, branch: str, err: str, status: int, timeout: float) -> str:
    if err.startswith("Timeout:"):
        return f"git fetch {remote} timed out after {timeout:g}s; is the remote reachable?"
    detail = _first_line(err, status)
    if "couldn't find remote ref" in detail:
        return f"branch '{branch}' does not exist on remote '{remote}'; check the branch name"
    return f"git fetch {remote} {branch} failed: {detail}"


def _first_line(err: str, status: int) -> str:
    if err.startswith("Timeout:"):
        return "timed out; is the filesystem or the repository stuck?"
    for line in err.splitlines():
        line = line.strip()
        for prefix in ("fatal: ", "error: "):
            line = line.removeprefix(prefix)
        if line:
            return line
    return f"exit status {status}"
