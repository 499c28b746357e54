"""The FL runtime the builder puts into every FL-actor image: `actors/` of this project
(flops_utils, the learner and aggregator programs) and its pinned requirements.

Decision: the runtime is the same for every project on a base image, so its packages live in
one runtime image (runtime_image.py) that every FL-actor image starts from, and its code is
copied into `.flops/runtime/` byte for byte. The packages include `mlflow-skinny` (the
aggregator's MLflow model format and tracking) so that no project needs the package index for
its runtime; a repository that lists its own `mlflow` gets that instead: the runtime's
`mlflow-skinny` is uninstalled first (both provide the one `mlflow` module).
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
    def image_requirements(self) -> tuple[str, ...]:
        """What the runtime image installs: the pins of both files."""
        return (*self.requirements, *self.aggregator_requirements)

    @property
    def label(self) -> str:
        """What the images record about their runtime: the pins, in one line."""
        return " ".join(self.image_requirements)

    def uninstall_before(self, lines: list[str]) -> list[str]:
        """The runtime's distributions to uninstall before ``lines`` are installed: those
        that provide a module a requirement of ``lines`` provides under another name."""
        names = {pip_name(line) for line in lines if not is_option(line)}
        return ["mlflow-skinny"] if "mlflow" in names else []


def aggregator_extra(learner: list[str], aggregator: list[str]) -> list[str]:
    """What the aggregator installs on top of the learner's requirement lines."""
    learner_lines = set(learner)
    return [line for line in aggregator if line not in learner_lines]


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
