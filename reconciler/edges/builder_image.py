"""The image-builder service's image: built from this project's own builder program.

Decision: the image is stamped with a digest of the exact files it was built from
(``flops.builder-digest``); an image we built from other files is rebuilt, an image someone
else provides under the configured name (no stamp) is used as it is.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import yaml
from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException

import reconciler
from reconciler.builder.runtime import actors_dir
from reconciler.core.render import BUILDER_DOCKERFILE
from reconciler.edges.docker_errors import last_line

DIGEST_LABEL = "flops.builder-digest"


class BuilderImageError(RuntimeError):
    """The builder image is missing and could not be built."""


def context_files(template_dirs: list[Path]) -> dict[str, Path]:
    """Build-context path -> source file: the builder program, the wire contract it shares
    with the reconciler, the FL runtime it puts into every FL-actor image (`actors/`, at
    reconciler/actors as in a wheel), PyYAML's pure-Python code."""
    package = Path(reconciler.__file__).parent
    files = {"reconciler/__init__.py": package / "__init__.py"}
    for folder in ("builder", "protocol"):
        for source in sorted((package / folder).glob("*.py")):
            files[f"reconciler/{folder}/{source.name}"] = source
    actors = actors_dir()
    for source in sorted(actors.rglob("*")):
        if source.is_file() and "__pycache__" not in source.parts:
            files[f"reconciler/actors/{source.relative_to(actors).as_posix()}"] = source
    for source in sorted(Path(yaml.__file__).parent.glob("*.py")):
        files[f"yaml/{source.name}"] = source
    files["Dockerfile"] = _find(template_dirs, BUILDER_DOCKERFILE)
    return files


def source_digest(files: dict[str, Path], base_image: str) -> str:
    digest = hashlib.sha256(base_image.encode())
    for name, path in sorted(files.items()):
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def ensure_builder_image(
    docker_host: str, image: str, base_image: str, template_dirs: list[Path], *, force: bool
) -> bool:
    """Make sure ``image`` exists on the host; returns True when it had to be built."""
    files = context_files(template_dirs)
    digest = source_digest(files, base_image)
    docker = DockerClient(host=docker_host)
    try:
        if not force and docker.image.exists(image):
            labels = docker.image.inspect(image).config.labels or {}
            if labels.get(DIGEST_LABEL) in (None, digest):
                return False
        with tempfile.TemporaryDirectory(prefix="flops-builder-") as context:
            for name, source in files.items():
                target = Path(context) / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
            docker.legacy_build(
                context,
                tags=[image],
                build_args={"BASE_IMAGE": base_image},
                labels={DIGEST_LABEL: digest, "flops.builder-version": reconciler.__version__},
                pull=False,
            )
    except DockerException as error:
        raise BuilderImageError(
            f"cannot build the builder image {image} from {base_image} on {docker_host}: "
            f"{last_line(error)}; check that builder.base_image exists on that host"
        ) from None
    return True


def _find(template_dirs: list[Path], name: str) -> Path:
    for directory in template_dirs:
        if (directory / name).is_file():
            return directory / name
    raise BuilderImageError(f"template {name} not found in {', '.join(map(str, template_dirs))}")
