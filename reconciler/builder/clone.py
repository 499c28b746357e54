"""Fetch the ML repository at exactly the commit the reconciler resolved, with the git CLI.

Decision: try the cheapest transfer first (a depth-1 fetch of the commit itself), and fall back
to fetching all branches and tags when the server does not serve unadvertised commits; either
way HEAD is verified to be the requested commit, so the images always match their tag.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.protocol.request import COMMIT

GIT_TIMEOUT = 1800.0
_SAFE_CONFIG = ("-c", "protocol.ext.allow=never", "-c", "safe.directory=*")
# Variables that would point git at another repository than the one being built.
_REPOSITORY_ENV = frozenset(
    {"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
     "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_NAMESPACE"}
)


@dataclass
class CloneError(Exception):
    """The repository could not be fetched at the commit; details are git's last lines."""

    message: str
    details: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message


def _global_config(path: Path) -> Path:
    """A global git config that keeps the user's and adds the builder's safety settings.

    `git -c` settings do not reach the `git upload-pack` that serves a local (bind-mounted)
    repository, so `safe.directory` is set here too: such a mount is usually owned by another
    user than the builder's.
    """
    user = os.environ.get("GIT_CONFIG_GLOBAL") or str(Path.home() / ".gitconfig")
    path.write_text(
        f"[include]\n\tpath = {json.dumps(user)}\n"
        "[safe]\n\tdirectory = *\n[protocol \"ext\"]\n\tallow = never\n",
        encoding="utf-8",
    )
    return path


def _git(args: list[str], cwd: Path, config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in _REPOSITORY_ENV}
    env.update(GIT_TERMINAL_PROMPT="0", GCM_INTERACTIVE="never", GIT_CONFIG_GLOBAL=str(config))
    try:
        return subprocess.run(
            ["git", *_SAFE_CONFIG, *args], cwd=cwd, env=env, capture_output=True,
            text=True, timeout=GIT_TIMEOUT, check=False, stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise CloneError("git is not installed in the builder image") from exc
    except subprocess.TimeoutExpired as exc:
        raise CloneError(f"git {args[0]} took longer than {GIT_TIMEOUT:.0f}s") from exc


def _tail(result: subprocess.CompletedProcess[str], lines: int = 20) -> list[str]:
    text = (result.stderr or "") + (result.stdout or "")
    return [line for line in text.splitlines() if line.strip()][-lines:]


def clone(repo_url: str, commit: str, dest: Path, ref: str | None = None) -> list[str]:
    """Check out `repo_url` at `commit` into the new directory `dest`; how it went, as lines."""
    commit = commit.lower()
    if not COMMIT.match(commit):
        raise CloneError(f"{commit!r} is not a full commit id")
    dest.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="flops-git-") as tmp:
        config = _global_config(Path(tmp) / "gitconfig")
        return _fetch_and_check_out(repo_url, commit, dest, ref, config)


def _fetch_and_check_out(
    repo_url: str, commit: str, dest: Path, ref: str | None, config: Path
) -> list[str]:
    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return _git(list(args), dest, config)

    init = git("init", "-q", "--", str(dest))
    if init.returncode != 0:
        raise CloneError("git init failed", _tail(init))
    notes: list[str] = []
    shallow = git("fetch", "-q", "--depth", "1", "--no-tags", "--", repo_url, commit)
    if shallow.returncode == 0:
        notes.append(f"fetched {commit} (depth 1)")
    else:
        notes.append("the server refused a shallow fetch of the commit; fetching all refs")
        notes.extend("  " + line for line in _tail(shallow, 3))
        full = git("fetch", "-q", "--tags", "--", repo_url, "+refs/heads/*:refs/remotes/origin/*")
        if full.returncode != 0:
            raise CloneError(f"cannot fetch {repo_url}", _tail(full))
        if ref and git("cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
            git("fetch", "-q", "--", repo_url, ref)
    checkout = git("checkout", "-q", "--detach", commit)
    if checkout.returncode != 0:
        raise CloneError(f"commit {commit} is not in {repo_url}", _tail(checkout))
    head = git("rev-parse", "HEAD").stdout.strip()
    if head != commit:
        raise CloneError(f"checked out {head or 'nothing'} instead of {commit}")
    return notes
