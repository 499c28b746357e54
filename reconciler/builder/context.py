"""The FL-actor build context: the cloned tree plus a generated `.flops/` directory, as a tar.

Decision: everything the rendered Dockerfiles need beyond the user's code (per-role
requirements, conda-only packages and their channels, the entry point) is written into
`.flops/` inside the clone, and the same tar (the tree minus `.git`) serves every role; the
Dockerfile for a role is picked by path. Every file is always written (empty when there is
nothing to install), so a Dockerfile can COPY it unconditionally.
"""

from __future__ import annotations

import os
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
) -> None:
    """Write `.flops/Dockerfile.<role>`, `.flops/requirements-<role>.txt`,
    `.flops/conda-packages.txt` (conda match specs, one a line), `.flops/conda-channels.txt`,
    `.flops/ca-bundle.pem` (an extra CA bundle for pip, empty when none) and the entry
    point."""
    flops = repo_dir / FLOPS_DIR
    flops.mkdir(exist_ok=True)
    for role, text in dockerfiles.items():
        (repo_dir / dockerfile_path(role)).write_text(text, encoding="utf-8")
        lines = requirements.get(role, [])
        content = "".join(line + "\n" for line in lines)
        (flops / f"requirements-{role}.txt").write_text(content, encoding="utf-8")
    for name, lines in (("conda-packages.txt", conda_packages or []),
                        ("conda-channels.txt", conda_channels or [])):
        (flops / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    (flops / "ca-bundle.pem").write_text(ca_bundle, encoding="utf-8")
    (flops / "entrypoint.py").write_text(ENTRYPOINT, encoding="utf-8")


def _reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Ownership and timestamps carry no meaning in the image; drop them for stable layers."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def write_tar(repo_dir: Path, out: IO[bytes]) -> None:
    """Write the tree minus `.git` to `out` as an uncompressed tar; leave `out` at offset 0."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(repo_dir):
            dirs[:] = sorted(d for d in dirs if d != ".git")
            base = Path(root)
            for name in dirs + sorted(files):  # os.walk does not descend symlinked dirs
                path = base / name
                tar.add(path, arcname=path.relative_to(repo_dir).as_posix(),
                        recursive=False, filter=_reset)
    out.seek(0)
