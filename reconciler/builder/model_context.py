"""A trained model's build: the model directory checked, then its build context as a tar.

Decision: the model directory came out of a training run, that is out of the ML repository's
code, so it is read like the repository: its ``MLmodel`` only as a regular file inside it,
never through a link, at most ``MAX_MLMODEL_BYTES``, parsed with PyYAML's safe loader. A model
the server cannot load (no ``MLmodel``, not YAML, no ``python_function`` flavor) is a
``build`` failure; a directory that is not there is ``infrastructure`` (the reconciler copies
it in before it starts the builder). The context holds the directory under ``model/`` (links
stay links, only regular files, directories and links, as the FL-actor context), the FL
runtime under ``runtime/`` and the Dockerfile: nothing else reaches the image.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

from reconciler.protocol.tree_tar import add_tree

from .limits import MAX_MLMODEL_BYTES, size_text
from .problems import StageFailure
from .repofiles import UnsafeFile, read_bytes
from .runtime import RUNTIME_DIR, Runtime

MLMODEL = "MLmodel"
PYFUNC = "python_function"
MODEL_CONTEXT_DIR = "model"
DOCKERFILE = "Dockerfile"
RETRAIN_HINT = ("the model must be an MLflow model directory as the aggregator saves it "
                "(<output>/model); train the project again (reconciler retrain)")


@dataclass(frozen=True)
class ModelSummary:
    flavors: tuple[str, ...]
    mlflow_version: str
    files: int
    size: int

    def describe(self) -> str:
        return (f"MLflow {self.mlflow_version or '?'} model, flavors {', '.join(self.flavors)}, "
                f"{self.files} files, {size_text(self.size)}")


def check_model(model_dir: Path) -> ModelSummary:
    """What the model directory holds; StageFailure when the server could not load it."""
    try:
        info = os.lstat(model_dir)
    except OSError as exc:
        raise StageFailure(
            "infrastructure", f"no model directory at {model_dir} in the builder container "
            f"({exc.strerror or exc})", "the reconciler copies the run's model directory into "
            "the created builder container at the request's model_dir before starting it",
        ) from exc
    if not stat.S_ISDIR(info.st_mode):
        raise StageFailure("infrastructure", f"{model_dir} in the builder container is not a "
                           "directory", "copy the run's model directory itself to model_dir")
    document = _mlmodel(model_dir)
    flavors = document.get("flavors")
    names = tuple(sorted(str(name) for name in flavors)) if isinstance(flavors, dict) else ()
    if PYFUNC not in names:
        raise StageFailure(
            "build", f"the model in {model_dir} has no {PYFUNC} flavor (its MLmodel lists "
            f"{', '.join(names) or 'no flavors'}): the server loads models with mlflow.pyfunc",
            RETRAIN_HINT)
    files, size = _count(model_dir)
    return ModelSummary(names, str(document.get("mlflow_version") or ""), files, size)


def _mlmodel(model_dir: Path) -> dict[str, Any]:
    try:
        raw = read_bytes(model_dir, MLMODEL, MAX_MLMODEL_BYTES, "MLmodel files")
        document = yaml.safe_load(raw.decode("utf-8"))
    except UnsafeFile as exc:
        raise _not_a_model(model_dir, exc.message) from exc
    except UnicodeDecodeError as exc:
        raise _not_a_model(model_dir, f"{MLMODEL} is not UTF-8 text ({exc.reason})") from exc
    except yaml.YAMLError as exc:
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise _not_a_model(model_dir, f"{MLMODEL} is not valid YAML: {reason}") from exc
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        raise _not_a_model(model_dir, f"{MLMODEL} cannot be read: {type(exc).__name__}") from exc
    if not isinstance(document, dict):
        raise _not_a_model(model_dir, f"{MLMODEL} is not a YAML mapping")
    return document


def _not_a_model(model_dir: Path, reason: str) -> StageFailure:
    return StageFailure("build", f"the model in {model_dir} is not an MLflow model: {reason}",
                        RETRAIN_HINT)


def _count(model_dir: Path) -> tuple[int, int]:
    files = size = 0
    for root, _dirs, names in os.walk(model_dir):
        for name in names:
            info = os.lstat(os.path.join(root, name))
            if stat.S_ISREG(info.st_mode):
                files += 1
                size += info.st_size
    return files, size


def _add_bytes(tar: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(content))


def write_model_context(
    model_dir: Path, dockerfile: str, runtime: Runtime, out: IO[bytes]
) -> None:
    """The trained-model image's context to ``out`` (left at offset 0): ``Dockerfile``,
    ``model/`` (the directory, entries taken with lstat) and ``runtime/``."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, DOCKERFILE, dockerfile.encode())
        add_tree(tar, model_dir, MODEL_CONTEXT_DIR)
        for name, content in sorted(runtime.files.items()):
            _add_bytes(tar, f"{RUNTIME_DIR}/{name}", content)
    out.seek(0)
