"""Reading the ML repository's files: only regular files inside the repository, never more
than a cap. Every file the builder and `check-repo` read goes through here.

Decision: a symlink is followed only when its target, fully resolved, is a regular file inside
the repository. Git commits symlinks, and a shared `requirements.txt -> requirements/base.txt`
is ordinary; the build context keeps links as links, so Docker sees the same file the checks
read. A link that leaves the tree (`requirements.txt -> /proc/self/environ`), a dangling link,
anything under `.git`, a FIFO, a device or a directory where a file is expected is a `repo`
problem naming the file and what it is, and nothing of its target is ever read. The file is
opened with O_NOFOLLOW and O_NONBLOCK (a FIFO cannot block the read), checked again with fstat,
and at most `limit + 1` bytes are read: a larger file is a problem, never a partial read.
"""

from __future__ import annotations

import os
import posixpath
import stat
from pathlib import Path

from .limits import size_text
from .problems import Problem

_KINDS = {
    stat.S_IFIFO: "FIFO", stat.S_IFCHR: "character device", stat.S_IFBLK: "block device",
    stat.S_IFSOCK: "socket", stat.S_IFDIR: "directory",
}


class UnsafeFile(Exception):
    """A repository file the builder will not read, with what to do about it."""

    def __init__(self, name: str, message: str, hint: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message
        self.hint = hint

    def problem(self) -> Problem:
        return Problem("repo", self.name, self.message, self.hint)


def present(repo_dir: Path, name: str) -> bool:
    """Something other than a directory is at `name`: a file, or a link wherever it points
    (so a link out of the tree is reported as such, not as a missing file)."""
    try:
        info = os.lstat(repo_dir / name)
    except (OSError, ValueError):
        return False
    return not stat.S_ISDIR(info.st_mode)


def real_name(repo_dir: Path, name: str) -> str:
    """The path of the regular file `name` leads to, relative to the repository (links inside
    the tree resolved); UnsafeFile when it is not a regular file inside the repository."""
    root = os.path.realpath(repo_dir)
    real = _resolve(root, name)
    try:
        info = os.stat(real)
    except OSError as exc:
        raise _missing(root, name, exc) from exc
    _check_kind(name, info.st_mode)
    return os.path.relpath(real, root).replace(os.sep, "/")


def read_bytes(repo_dir: Path, name: str, limit: int, what: str) -> bytes:
    """The content of the regular file `name` inside the repository, at most `limit` bytes.

    `what` names the kind of file in the size message ("dependency files", "Python files").
    UnsafeFile when the file is not a regular file inside the repository or is larger.
    """
    root = os.path.realpath(repo_dir)
    real = _resolve(root, name)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        _check_kind(name, os.lstat(real).st_mode)  # a device is never even opened
        fd = os.open(real, flags)
    except OSError as exc:
        raise _missing(root, name, exc) from exc
    try:
        info = os.fstat(fd)
        _check_kind(name, info.st_mode)
        if info.st_size > limit:
            raise _too_large(name, info.st_size, limit, what)
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(limit + 1 - total, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:  # grew since fstat
            raise _too_large(name, total, limit, what)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _resolve(root: str, name: str) -> str:
    """The real path `name` leads to, checked to stay inside `root` and out of `.git`."""
    relative = posixpath.normpath(name)
    if posixpath.isabs(name) or relative == ".." or relative.startswith("../"):
        raise UnsafeFile(name, f"{name} is outside the repository",
                         f"commit {name} inside the repository and refer to it by a relative "
                         "path")
    real = os.path.realpath(os.path.join(root, relative))
    if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
        raise _leaves(root, name, real)
    if os.path.relpath(real, root).split(os.sep)[0] == ".git":
        raise UnsafeFile(name, f"{name} leads into .git, which is not one of the repository's "
                         "files", f"commit {name} as a regular file")
    return real


def _first_link(root: str, name: str) -> str | None:
    """The shortest prefix of `name` that is a symlink, or None."""
    parts = posixpath.normpath(name).split("/")
    for end in range(1, len(parts) + 1):
        prefix = "/".join(parts[:end])
        if os.path.islink(os.path.join(root, prefix)):
            return prefix
    return None


def _target(root: str, link: str) -> str:
    try:
        return os.readlink(os.path.join(root, link))
    except OSError:
        return "?"


def _leaves(root: str, name: str, real: str) -> UnsafeFile:
    link = _first_link(root, name)
    if link is None:  # cannot happen for a path inside the root: say where it leads anyway
        return UnsafeFile(name, f"{name} leads outside the repository ({real})",
                          "commit the file itself")
    target = _target(root, link)
    if link == posixpath.normpath(name):
        return UnsafeFile(
            name, f"{name} is a symlink to a path outside the repository ({target})",
            "commit the file itself instead of a symlink to it",
        )
    return UnsafeFile(
        name, f"{name} is inside {link}, a symlink to a path outside the repository ({target})",
        f"commit {link} as a directory instead of a symlink to one",
    )


def _missing(root: str, name: str, exc: OSError) -> UnsafeFile:
    link = _first_link(root, name)
    if link is not None:
        return UnsafeFile(
            name, f"{name} leads through the symlink {link} -> {_target(root, link)} to nothing "
            "in the repository", f"commit {name} as a regular file",
        )
    return UnsafeFile(name, f"{name} cannot be read ({exc.strerror or exc})",
                      f"commit {name} as a regular, readable file")


def _check_kind(name: str, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    kind = _KINDS.get(stat.S_IFMT(mode), "special file")
    raise UnsafeFile(name, f"{name} is a {kind}, not a regular file",
                     f"commit {name} as a regular file")


def _too_large(name: str, size: int, limit: int, what: str) -> UnsafeFile:
    return UnsafeFile(
        name, f"{name} is {size_text(size)}; the builder reads {what} up to {size_text(limit)}",
        f"keep {name} under {size_text(limit)} (split it, or keep generated data out of the "
        "repository)",
    )
