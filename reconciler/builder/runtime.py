"""The FL runtime the builder puts into every FL-actor image: `actors/` of this project
(flops_utils, the learner and aggregator programs) and its pinned requirements.

Decision: the runtime is the same for every project on a base image, so it is copied into
`.flops/runtime/` byte for byte and installed by the Dockerfile's `runtime` stage before any of
the repository's files: the build cache (and the registry, which stores each layer once) reuse
it for every project and every commit. The aggregator also needs an `mlflow` module for the
model format; it gets the repository's own mlflow when the repository lists one, else the
runtime's `mlflow-skinny` pin.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .requirements import is_option, pip_name

RUNTIME_DIR = "runtime"  # inside .flops/
RUNTIME_REQUIREMENTS = "requirements-runtime.txt"
AGGREGATOR_REQUIREMENTS = "requirements-aggregator.txt"
PROVIDED = "flops_utils/provided.json"
RUNTIME_LABEL = "flops.runtime"
MLFLOW_NAMES = frozenset({"mlflow", "mlflow-skinny"})
_PACKAGES = ("flops_utils", "flops_actor")


def actors_dir() -> Path:
    """Where `actors/` is: beside the builder package in the builder image and in a wheel
    (`reconciler/actors`), at the top of a source checkout otherwise."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "actors", here.parent.parent / "actors"):
        if (candidate / RUNTIME_REQUIREMENTS).is_file():
            return candidate
    raise FileNotFoundError(f"no actors/ directory with {RUNTIME_REQUIREMENTS} near {here}")


@dataclass(frozen=True)
class Runtime:
    """The files of `.flops/runtime/` (relative path -> bytes) and the pinned requirement
    lines of both images and of the aggregator alone."""

    files: dict[str, bytes]
    requirements: tuple[str, ...]
    aggregator_requirements: tuple[str, ...]

    @property
    def label(self) -> str:
        """What the images record about their runtime: the pins, in one line."""
        return " ".join((*self.requirements, *self.aggregator_requirements))

    def aggregator_extra(self, learner: list[str], aggregator: list[str]) -> list[str]:
        """What the aggregator installs on top of the learner's requirements: its own
        requirement lines, and an mlflow module when the repository brings none."""
        learner_lines = set(learner)
        extra = [line for line in aggregator if line not in learner_lines]
        names = {pip_name(line) for line in aggregator if not is_option(line)}
        if not names & MLFLOW_NAMES:
            extra += [line for line in self.aggregator_requirements
                      if pip_name(line) not in names]
        return extra


@cache
def load_runtime(directory: Path | None = None) -> Runtime:
    root = directory or actors_dir()
    files: dict[str, bytes] = {}
    for package in _PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                files[path.relative_to(root).as_posix()] = path.read_bytes()
    for name in (RUNTIME_REQUIREMENTS, AGGREGATOR_REQUIREMENTS):
        files[name] = (root / name).read_bytes()
    return Runtime(files, _pins(files[RUNTIME_REQUIREMENTS]),
                   _pins(files[AGGREGATOR_REQUIREMENTS]))


def provided_names(directory: Path | None = None) -> dict[str, frozenset[str]]:
    """Module -> the public names our flops_utils provides there (`flops_utils` lists its
    submodules)."""
    data = json.loads(((directory or actors_dir()) / PROVIDED).read_text(encoding="utf-8"))
    return {module: frozenset(names) for module, names in data["modules"].items()}


def _pins(text: bytes) -> tuple[str, ...]:
    lines = (line.split("#", 1)[0].strip() for line in text.decode("utf-8").splitlines())
    return tuple(line for line in lines if line)
