"""Which base image the FL-actor images build from: the request's default, the image the
python pin selects from the configured map, or the conda-capable image for conda-only packages.

Decision: conda-only packages win. They can only be installed on the conda-capable base, and
there the python pin is installed by conda as well (it is written to the conda package list),
so the python image map does not apply. Otherwise a non-empty map must have an image for the
pinned python (else an error); an empty map keeps today's behaviour: the default base, with
the pin recorded but not enforced. Never guesses an image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .conda import safe_channel
from .dockerfile import CONDA_PACKAGES_FILE
from .problems import Note, Problem
from .protocol import ROLES
from .repairs import BOTH_ROLES, Repair, added, removed
from .requirements import Entry
from .versions import Series, allowed_series, parse_series, series_text


@dataclass(frozen=True)
class ImageOptions:
    """What the request says about base images (see protocol.py)."""

    python_images: Mapping[str, str] = field(default_factory=dict)
    conda_base_image: str | None = None


@dataclass
class BaseChoice:
    """The chosen base (None: the request's default) and what installs with conda."""

    image: str | None = None
    conda_packages: list[str] = field(default_factory=list)
    conda_channels: list[str] = field(default_factory=list)
    repairs: list[Repair] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def choose_base(
    python: Entry | None,
    conda_only: list[Entry],
    channels: list[str],
    options: ImageOptions,
) -> BaseChoice:
    """The base image decision for one repository."""
    if conda_only:
        return _conda_base(python, conda_only, channels, options)
    choice = BaseChoice()
    images = _configured(options.python_images)
    if python is None:
        if images:
            choice.notes.append(Note("INFO", "no python pin: the images build from the default "
                                     "base image"))
        return choice
    if not images:
        choice.notes.append(Note(
            "INFO", f"{python.origin} pins {python.written}; the images run the default base "
            "image's python3 (no python image map is configured: the pin is recorded, not "
            "enforced)",
        ))
        return choice
    configured = ", ".join(series_text(s) for s in sorted(images))
    clauses = python.requirement.clauses if python.requirement is not None else (("?", ""),)
    try:
        allowed = allowed_series(clauses, images)
    except ValueError:
        choice.problems.append(Problem(
            "dependencies", python.file,
            f"cannot read the python pin {python.written!r} (configured python images: "
            f"{configured})",
            "write the pin as python=3.10, python==3.10.* or python>=3.10,<3.11", python.line,
        ))
        return choice
    if not allowed:
        choice.problems.append(Problem(
            "dependencies", python.file,
            f"the python pin {python.written!r} matches none of the configured python images "
            f"({configured})",
            f"pin one of {configured} in {python.file}, or have the operator add an image for "
            "the pinned version to the python image map ([images.python])", python.line,
        ))
        return choice
    chosen = allowed[0]
    choice.image = images[chosen]
    more = ""
    if len(allowed) > 1:
        others = ", ".join(series_text(s) for s in allowed[1:])
        more = f"; it also allows {others}: the newest configured is used"
    choice.notes.append(Note(
        "INFO", f"{python.origin} pins {python.written}: the images build from {choice.image} "
        f"(python {series_text(chosen)}){more}",
    ))
    return choice


def _configured(python_images: Mapping[str, str]) -> dict[Series, str]:
    found: dict[Series, str] = {}
    for key, image in python_images.items():
        series = parse_series(key)
        if series is not None and image:
            found[series] = image
    return found


def _conda_base(
    python: Entry | None, conda_only: list[Entry], channels: list[str], options: ImageOptions
) -> BaseChoice:
    choice = BaseChoice()
    listed = ", ".join(f"{p.written} ({p.origin})" for p in conda_only)
    first = conda_only[0]
    if not options.conda_base_image:
        choice.problems.append(Problem(
            "dependencies", first.file,
            f"conda-only packages cannot be installed with pip: {listed}",
            "remove them (pip wheels such as torch bring their own CUDA libraries) or have the "
            "operator configure a conda-capable base image (conda_base_image)", first.line,
        ))
        return choice
    unsafe = [c for c in channels if not safe_channel(c)]
    if unsafe:
        choice.problems.append(Problem(
            "dependencies", first.file, f"conda channel {unsafe[0]!r} is not a plain channel "
            "name or URL", "write each channel as a name (conda-forge) or a URL without spaces",
        ))
        return choice
    choice.image = options.conda_base_image
    choice.conda_channels = list(channels)
    if python is not None:
        choice.conda_packages.append(python.written)
    choice.conda_packages.extend(p.written for p in conda_only)
    choice.repairs.append(Repair(
        ROLES,
        f"{BOTH_ROLES}: installs the conda-only packages "
        f"{', '.join(p.written for p in conda_only)} with conda on the conda-capable base "
        f"{choice.image} (not with pip)",
        tuple(line for p in conda_only for line in (
            removed(p.written, f"{p.origin} (pip cannot install it)"),
            added(p.written, f"installed with conda from {CONDA_PACKAGES_FILE}"),
        )),
    ))
    python_note = ""
    if python is not None:
        python_note = (f"; conda installs the pinned {python.written} too (the python image "
                       "map does not apply)")
    choice.notes.append(Note(
        "INFO", f"conda-only packages: the images build from the conda-capable base "
        f"{choice.image} and install {CONDA_PACKAGES_FILE} with conda{python_note}",
    ))
    return choice
