"""The FL-actor build context: the cloned tree plus a generated `.flops/` directory, as a tar.

Decision: everything the rendered Dockerfiles need beyond the user's code (per-role
requirements, conda-only packages and their channels, the FL runtime) is written into
`.flops/` inside the clone, and the same tar (the tree minus `.git`) serves every role; the
Dockerfile for a role is picked by path and its stage by target. Every file is always
written (empty when there is nothing to install), so a Dockerfile can COPY it unconditionally.

Whatever the repository had at `.flops` (a file, a directory, a symlink to anywhere) is removed
first, without following links, and the directory is created fresh; every file in it is
created new (O_EXCL | O_NOFOLLOW, relative to the directory's own descriptor), so nothing is
ever written through a link the repository planted. The tar holds links as links (never their
targets) and only regular files, directories and symlinks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tarfile
from pathlib import Path
from typing import IO

from reconciler.protocol.tree_tar import add_tree

from .runtime import RUNTIME_DIR, Runtime, aggregator_extra, load_runtime

FLOPS_DIR = ".flops"

def dockerfile_path(role: str) -> str:
    """Where a role's Dockerfile sits inside the context (the build API's `dockerfile`)."""
    return f"{FLOPS_DIR}/Dockerfile.{role}"


def write_flops_dir(
    repo_dir: Path,
    dockerfiles: dict[str, str],
    requirements: dict[str, list[str]],
    conda_packages: list[str] | None = None,
    conda_channels: list[str] | None = None,
    ca_bundle: str = "",
    runtime: Runtime | None = None,
) -> str | None:
    """Write into a fresh `.flops`: `Dockerfile.<role>`, `requirements-<role>.txt`,
    `requirements-aggregator-extra.txt` (what the aggregator adds to the learner's),
    `uninstall-<stage>.txt` (runtime packages a stage's requirements replace),
    `conda-packages.txt` (conda match specs, one a line), `conda-channels.txt`, `ca-bundle.pem`
    (an extra CA bundle for pip, empty when none) and `runtime/` (flops_utils, the actor
    programs, their requirements). Returns what the repository had at `.flops` (e.g. "a
    symlink to /tmp/x"), or None."""
    runtime = runtime or load_runtime()
    files: dict[str, bytes] = {}
    for role, text in dockerfiles.items():
        files[f"Dockerfile.{role}"] = text.encode()
    learner, aggregator = requirements.get("learner", []), requirements.get("aggregator", [])
    extra = aggregator_extra(learner, aggregator)
    files["requirements-learner.txt"] = _lines(learner)
    files["requirements-aggregator.txt"] = _lines(aggregator)
    files["requirements-aggregator-extra.txt"] = _lines(extra)
    files["uninstall-deps.txt"] = _lines(runtime.uninstall_before(learner))
    files["uninstall-aggregator-deps.txt"] = _lines(runtime.uninstall_before(extra))
    files["conda-packages.txt"] = _lines(conda_packages or [])
    files["conda-channels.txt"] = _lines(conda_channels or [])
    files["ca-bundle.pem"] = ca_bundle.encode()
    for name, content in runtime.files.items():
        files[f"{RUNTIME_DIR}/{name}"] = content
    flops = repo_dir / FLOPS_DIR
    replaced = _remove(flops)
    os.mkdir(flops, 0o755)
    directory = os.open(flops, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for name, content in files.items():
            _create(directory, name, content)
    finally:
        os.close(directory)
    return replaced


def _lines(lines: list[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


def _remove(path: Path) -> str | None:
    """Remove whatever is at `path` without following a link; what it was, or None."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        what = f"a symlink to {os.readlink(path)}"
        os.unlink(path)
    elif stat.S_ISDIR(info.st_mode):
        what = "a directory"
        shutil.rmtree(path)  # never follows links inside the tree it removes
    else:
        what = "a file"
        os.unlink(path)
    return what


def _create(directory: int, name: str, content: bytes) -> None:
    """A new file under the directory `directory` (a descriptor), `name` relative to it
    (sub-directories made as needed): O_EXCL, never through a link."""
    *parents, leaf = name.split("/")
    owned: list[int] = []
    try:
        for part in parents:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=directory)
            directory = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                                dir_fd=directory)
            owned.append(directory)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(leaf, flags, 0o644, dir_fd=directory)
        with os.fdopen(fd, "wb") as out:
            out.write(content)
    finally:
        for fd in owned:
            os.close(fd)


def write_tar(repo_dir: Path, out: IO[bytes]) -> None:
    """Write the tree minus `.git` to `out` as an uncompressed tar; leave `out` at offset 0.
    Entries are taken with lstat (tarfile's default): a symlink is stored as a link."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add_tree(tar, repo_dir, skip_dirs=frozenset({".git"}))
    out.seek(0)
