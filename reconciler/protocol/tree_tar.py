"""How a directory tree goes into a tar: the build contexts the builder sends to the engine,
and the model carrier layer the reconciler pushes for a swarm builder.

Decision: entries are taken with lstat in sorted order (a link is stored as a link, never
followed; os.walk does not descend into linked directories), only regular files, directories
and symbolic links (a FIFO or a device from untrusted content is left out), without owners or
times: the same tree always makes the same bytes, so layers stay cached and a pushed blob is
found again.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path


def stable_entry(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """A tar filter: the entry without owner and time; None for what is no file, directory
    or link."""
    if not (info.isreg() or info.isdir() or info.issym()):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def add_tree(tar: tarfile.TarFile, root: Path, prefix: str = "",
             skip_dirs: frozenset[str] = frozenset()) -> None:
    """Everything below ``root`` under ``prefix/`` (``prefix`` itself as the root's entry
    when given; none when empty); directories named in ``skip_dirs`` are left out anywhere."""
    if prefix:
        tar.add(root, arcname=prefix, recursive=False, filter=stable_entry)
    for current, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in skip_dirs)
        base = Path(current)
        for name in dirs + sorted(files):
            path = base / name
            relative = path.relative_to(root).as_posix()
            tar.add(path, arcname=f"{prefix}/{relative}" if prefix else relative,
                    recursive=False, filter=stable_entry)
