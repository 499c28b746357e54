"""Edits to the rendered FL-actor Dockerfile: the chosen base image and the conda hook.

Decision: the reconciler renders the Dockerfile and the builder changes it in exactly two
ways and nowhere else: the image of every `FROM` line that starts a stage from an image (not
from an earlier stage, not from `scratch`) becomes the chosen base (only a well-formed image
reference is ever written there, so the text stays one token), and, when conda-only packages
must be installed and the Dockerfile does not install `.flops/conda-packages.txt` itself, a
COPY/RUN pair follows each of those `FROM` lines. The shipped template has one such line
(its other stages start from that first one), so the base and the conda packages are set up
once and shared by the dependency stage and the image.
"""

from __future__ import annotations

import re

from reconciler.protocol.request import IMAGE_REFERENCE

CONDA_PACKAGES_FILE = ".flops/conda-packages.txt"
CONDA_CHANNELS_FILE = ".flops/conda-channels.txt"
_FROM = re.compile(
    r"^(?P<lead>[ \t]*FROM[ \t]+(?:--\S+[ \t]+)*)(?P<image>\S+)(?P<rest>[^\n]*)$",
    re.MULTILINE | re.IGNORECASE,
)
_STAGE_NAME = re.compile(r"^[ \t]+AS[ \t]+(?P<name>\S+)", re.IGNORECASE)
SCRATCH = "scratch"
NO_IMAGE_STAGE = "the Dockerfile has no FROM line that starts from an image"
CONDA_HOOK = """\
# conda-only dependencies (.flops/conda-packages.txt), added by the FLOps image builder
COPY .flops/conda-packages.txt .flops/conda-channels.txt /tmp/flops/
RUN set -e; channels=""; \\
    for channel in $(cat /tmp/flops/conda-channels.txt); do \\
        channels="$channels -c $channel"; \\
    done; \\
    for tool in micromamba mamba conda; do \\
        if command -v "$tool" >/dev/null 2>&1; then \\
            "$tool" install -y -n base $channels --file /tmp/flops/conda-packages.txt; exit 0; \\
        fi; \\
    done; \\
    echo "the base image has no micromamba, mamba or conda for .flops/conda-packages.txt" >&2; \\
    exit 1
"""


def has_stage(dockerfile: str, name: str) -> bool:
    """Whether a `FROM ... AS <name>` line names that stage (case-insensitive, as Docker)."""
    return any((stage := _STAGE_NAME.match(match["rest"])) is not None
               and stage["name"].lower() == name.lower()
               for match in _FROM.finditer(dockerfile))


def base_image(dockerfile: str) -> str | None:
    """The image of the first `FROM` line that starts a stage from an image, or None."""
    matches = _image_stages(dockerfile)
    return matches[0]["image"] if matches else None


def _image_stages(dockerfile: str) -> list[re.Match[str]]:
    """The `FROM` lines that start a stage from an image: not from an earlier stage (stage
    names are case-insensitive, as Docker treats them) and not from `scratch`."""
    stages: set[str] = set()
    found: list[re.Match[str]] = []
    for match in _FROM.finditer(dockerfile):
        image = match["image"].lower()
        if image not in stages and image != SCRATCH:
            found.append(match)
        name = _STAGE_NAME.match(match["rest"])
        if name:
            stages.add(name["name"].lower())
    return found


def with_base_image(dockerfile: str, image: str) -> str:
    """The Dockerfile with the image of every `FROM` line that starts a stage from an image
    replaced (flags and `AS name` kept; `FROM <earlier stage>` and `FROM scratch` left alone).

    ValueError when `image` is not a plain image reference or there is no `FROM` line.
    """
    if not IMAGE_REFERENCE.match(image):
        raise ValueError(f"{image!r} is not an image reference")
    matches = _image_stages(dockerfile)
    if not matches:
        raise ValueError(NO_IMAGE_STAGE)
    for match in reversed(matches):  # from the end, so earlier offsets stay valid
        dockerfile = dockerfile[: match.start("image")] + image + dockerfile[match.end("image"):]
    return dockerfile


def with_conda_hook(dockerfile: str) -> str:
    """The Dockerfile with a conda install of `.flops/conda-packages.txt` after every `FROM`
    line that starts a stage from an image, unless it already mentions that file (then the
    template does the install)."""
    if "conda-packages.txt" in dockerfile:
        return dockerfile
    matches = _image_stages(dockerfile)
    if not matches:
        raise ValueError(NO_IMAGE_STAGE)
    for match in reversed(matches):
        end = match.end()
        dockerfile = dockerfile[:end] + "\n\n" + CONDA_HOOK + dockerfile[end:]
    return dockerfile
