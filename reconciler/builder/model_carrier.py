"""A trained model that arrives as an image (``model_carrier``): pulled, copied out, unpacked.

Decision: a builder the swarm places cannot have the model copied into it, so the reconciler
pushes the model directory as a one-layer image and the builder takes it from there through
its engine (the same access that pulls the learner image). The archive is untrusted (it holds
a training run's output, that is the ML repository's): it is unpacked entry by entry, within
``MAX_MODEL_BYTES`` and ``MAX_MODEL_ENTRIES``, only directories, regular files and symbolic
links, never to a path outside the model directory; links are made last, so nothing unpacked
is ever written through one. The directory then goes through the same checks as a copied one.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import IO

from reconciler.protocol.events import MODEL_CARRIER_PATH

from .engine import Engine, EngineError, EngineUnreachable
from .limits import MAX_MODEL_BYTES, MAX_MODEL_ENTRIES, size_text
from .problems import StageFailure

REACH_HINT = ("the builder's engine pulls the carrier from the registry the reconciler pushed "
              "it to: the node must reach that registry, as it does for the learner image")


def fetch_model(engine: Engine, carrier: str, model_dir: Path) -> int:
    """Unpack the model directory that ``carrier`` holds into ``model_dir`` (which must not
    exist); the number of entries unpacked. StageFailure when it cannot."""
    try:
        engine.pull(carrier)
        with tempfile.TemporaryFile() as archive:
            engine.copy_from_image(carrier, MODEL_CARRIER_PATH, archive, MAX_MODEL_BYTES)
            archive.seek(0)
            return unpack_model(archive, model_dir)
    except EngineUnreachable as exc:
        raise StageFailure("infrastructure", str(exc), "the builder needs the engine socket "
                           "mounted; check the builder's spec") from exc
    except EngineError as exc:
        raise StageFailure("infrastructure", f"cannot take the model out of {carrier}: {exc}",
                           REACH_HINT, exc.details) from exc
    finally:
        engine.remove_image(carrier)


def unpack_model(archive: IO[bytes], model_dir: Path) -> int:
    """The tar of a ``model/`` directory (as the engine's archive call gives it) unpacked into
    ``model_dir``; StageFailure naming the first entry that breaks a rule."""
    links: list[tuple[Path, str]] = []
    written = entries = 0
    model_dir.mkdir(parents=True)
    try:
        with tarfile.open(fileobj=archive, mode="r|") as tar:
            for member in tar:
                entries += 1
                if entries > MAX_MODEL_ENTRIES:
                    raise _refused(f"it has more than {MAX_MODEL_ENTRIES} entries")
                target = _target(model_dir, member.name)
                if target is None:
                    continue
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                elif member.isreg():
                    written += member.size
                    if written > MAX_MODEL_BYTES:
                        raise _refused(f"its files hold more than {size_text(MAX_MODEL_BYTES)}")
                    _write(tar, member, target)
                elif member.issym():
                    links.append((target, member.linkname))
                # anything else (devices, fifos, hard links) is not part of a saved model
    except tarfile.TarError as exc:
        raise _refused(f"it is not a readable tar archive ({exc})") from exc
    for path, link in links:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.symlink(link, path)
        except FileExistsError as exc:
            raise _refused(f"{path.relative_to(model_dir)} is in it twice") from exc
    return entries


def _target(model_dir: Path, name: str) -> Path | None:
    """Where entry ``name`` (``model/...``) goes; None for the top directory itself."""
    normal = posixpath.normpath(name)
    top, _, rest = normal.partition("/")
    if top != posixpath.basename(MODEL_CARRIER_PATH) or normal.startswith("/"):
        raise _refused(f"entry {name[:200]!r} is outside its model/ directory")
    return model_dir / rest if rest else None  # normpath has resolved every ".."


def _write(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    source = tar.extractfile(member)
    if source is None:
        raise _refused(f"entry {member.name[:200]!r} cannot be read")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError as exc:
        raise _refused(f"{member.name[:200]!r} is in it twice") from exc
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(source, out, 1024 * 1024)


def _refused(reason: str) -> StageFailure:
    return StageFailure("build", f"the model carrier image cannot be unpacked: {reason}",
                        "train the project again (reconciler retrain) so the reconciler "
                        "pushes its model again")
