"""Where a learner's data is: ``<data dir>/<tag>/*.parquet`` for each data tag.

Standard library only, so the learner can check its configuration before it imports the
heavy data stack. Every problem is a ``DataError`` whose message names the tag and the
directory, because that one line is all an operator sees of a failed learner.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_ENV = "FLOPS_DATA_DIR"
DATA_TAGS_ENV = "FLOPS_DATA_TAGS"
DEFAULT_DATA_DIR = "/flops/data"


class DataError(RuntimeError):
    """The learner's data cannot be loaded; the message says which tag and directory."""


@dataclass(frozen=True)
class TagFiles:
    tag: str
    directory: Path
    files: tuple[Path, ...]


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit is not None:
        return Path(explicit)
    return Path(os.environ.get(DATA_DIR_ENV, DEFAULT_DATA_DIR))


def parse_tags(value: str | None) -> list[str]:
    """``"a, b"`` -> ``["a", "b"]``; empty, missing or path-like tags are errors."""
    if value is None or not value.strip():
        raise DataError(
            f"{DATA_TAGS_ENV} is not set: the learner does not know which data to load "
            "(expected tag[,tag...])"
        )
    tags = [tag.strip() for tag in value.split(",")]
    for tag in tags:
        if not tag or tag in {".", ".."} or "/" in tag or "\\" in tag:
            raise DataError(f"{DATA_TAGS_ENV}={value!r}: {tag!r} is not a data tag (a folder name)")
    return list(dict.fromkeys(tags))  # a tag named twice is read once


def tag_files(tag: str, directory: Path) -> TagFiles:
    """The Parquet files of one tag, sorted by name so every run reads the same order."""
    folder = directory / tag
    if not folder.is_dir():
        raise DataError(f"data tag {tag!r}: no folder {folder} ({_present(directory)})")
    files = tuple(sorted(p for p in folder.glob("*.parquet") if p.is_file()))
    if not files:
        raise DataError(f"data tag {tag!r}: no *.parquet files in {folder}")
    return TagFiles(tag=tag, directory=folder, files=files)


def _present(directory: Path) -> str:
    if not directory.is_dir():
        return f"the data directory {directory} does not exist"
    tags = sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    return f"tags in {directory}: {', '.join(tags)}" if tags else f"{directory} holds no tags"
