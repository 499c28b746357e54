"""Edits to the rendered FL-actor Dockerfile: the chosen base image and the conda hook.

Decision: the reconciler renders the Dockerfile and the builder changes it in exactly two
places and nowhere else: the image of the first `FROM` line (only a well-formed image
reference is ever written there, so the text stays one token), and, when conda-only packages
must be installed and the Dockerfile does not install `.flops/conda-packages.txt` itself, a
COPY/RUN pair right after that `FROM` line.
"""

from __future__ import annotations

import re

CONDA_PACKAGES_FILE = ".flops/conda-packages.txt"
CONDA_CHANNELS_FILE = ".flops/conda-channels.txt"
IMAGE_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$")
_FROM = re.compile(
    r"^(?P<lead>[ \t]*FROM[ \t]+(?:--\S+[ \t]+)*)(?P<image>\S+)[^\n]*$",
    re.MULTILINE | re.IGNORECASE,
)
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


def base_image(dockerfile: str) -> str | None:
    """The image of the first `FROM` line, or None when there is none."""
    match = _FROM.search(dockerfile)
    return match["image"] if match else None


def with_base_image(dockerfile: str, image: str) -> str:
    """The Dockerfile with the first `FROM` line's image replaced (flags and `AS name` kept).

    ValueError when `image` is not a plain image reference or there is no `FROM` line.
    """
    if not IMAGE_REFERENCE.match(image):
        raise ValueError(f"{image!r} is not an image reference")
    match = _FROM.search(dockerfile)
    if match is None:
        raise ValueError("the Dockerfile has no FROM line")
    return dockerfile[: match.start("image")] + image + dockerfile[match.end("image"):]


def with_conda_hook(dockerfile: str) -> str:
    """The Dockerfile with a conda install of `.flops/conda-packages.txt` after the first
    `FROM` line, unless it already mentions that file (then the template does the install)."""
    if "conda-packages.txt" in dockerfile:
        return dockerfile
    match = _FROM.search(dockerfile)
    if match is None:
        raise ValueError("the Dockerfile has no FROM line")
    end = match.end()
    return dockerfile[:end] + "\n\n" + CONDA_HOOK + dockerfile[end:]
