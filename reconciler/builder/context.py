"""The FL-actor build context: the cloned tree plus a generated `.flops/` directory, as a tar.

Decision: everything the rendered Dockerfiles need beyond the user's code (per-role
requirements, conda-only packages and their channels, the entry point) is written into
`.flops/` inside the clone, and the same tar (the tree minus `.git`) serves every role; the
Dockerfile for a role is picked by path. Every file is always written (empty when there is
nothing to install), so a Dockerfile can COPY it unconditionally.

Whatever the repository had at `.flops` (a file, a directory, a symlink to anywhere) is removed
first, without following links, and the directory is created fresh; every file in it is
created new (O_EXCL | O_NOFOLLOW, relative to the directory's own descriptor), so nothing is
ever written through a link the repository planted. The tar holds links as links (never their
targets) and only regular files, directories and symlinks.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from pathlib import Path
from typing import IO

FLOPS_DIR = ".flops"

ENTRYPOINT = '''\
"""FL-actor entry point of this image, written by the FLOps image builder.

The image holds the ML repository at /app and the Python dependencies of one role, named by
the FLOPS_ROLE environment variable (learner or aggregator). Running the actor itself
(stage 4: the learners train, the aggregator combines their parameters) is out of scope for
this image builder; this entry point proves the image is complete by importing ModelManager
from model_manager.py, says which role the image is for, and exits 0.
"""

import os
import sys

APP_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    role = os.environ.get("FLOPS_ROLE", "unknown")
    sys.path.insert(0, APP_DIR)
    from model_manager import ModelManager  # the FLOps contract: model_manager.ModelManager

    print(f"FLOps {role} image: {ModelManager.__name__} imported from {APP_DIR}/model_manager.py")
    print("Training (stage 4) is out of scope for this image; nothing more to do.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
'''


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
) -> str | None:
    """Write `.flops/Dockerfile.<role>`, `.flops/requirements-<role>.txt`,
    `.flops/conda-packages.txt` (conda match specs, one a line), `.flops/conda-channels.txt`,
    `.flops/ca-bundle.pem` (an extra CA bundle for pip, empty when none) and the entry
    point, into a fresh `.flops`. Returns what the repository had there (e.g. "a symlink to
    /tmp/x"), or None."""
    files: dict[str, str] = {}
    for role, text in dockerfiles.items():
        files[f"Dockerfile.{role}"] = text
        files[f"requirements-{role}.txt"] = _lines(requirements.get(role, []))
    files["conda-packages.txt"] = _lines(conda_packages or [])
    files["conda-channels.txt"] = _lines(conda_channels or [])
    files["ca-bundle.pem"] = ca_bundle
    files["entrypoint.py"] = ENTRYPOINT
    flops = repo_dir / FLOPS_DIR
    replaced = _remove(flops)
    os.mkdir(flops, 0o755)
    directory = os.open(flops, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for name, text in files.items():
            _create(directory, name, text)
    finally:
        os.close(directory)
    return replaced


def _lines(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


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


def _create(directory: int, name: str, text: str) -> None:
    """A new file in the directory `directory` (a descriptor): O_EXCL, never through a link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(name, flags, 0o644, dir_fd=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def _reset(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Ownership and timestamps carry no meaning in the image; drop them for stable layers.
    Anything but a regular file, a directory or a symlink (a FIFO, a device) is left out."""
    if not (info.isreg() or info.isdir() or info.issym()):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def write_tar(repo_dir: Path, out: IO[bytes]) -> None:
    """Write the tree minus `.git` to `out` as an uncompressed tar; leave `out` at offset 0.
    Entries are taken with lstat (tarfile's default): a symlink is stored as a link."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(repo_dir):
            dirs[:] = sorted(d for d in dirs if d != ".git")
            base = Path(root)
            for name in dirs + sorted(files):  # os.walk does not descend symlinked dirs
                path = base / name
                tar.add(path, arcname=path.relative_to(repo_dir).as_posix(),
                        recursive=False, filter=_reset)
    out.seek(0)
