"""Where values show up in a local image: `docker history --no-trunc`, `docker image inspect`
and the image as `docker save` writes it (its config with the history, and every layer's
files, uncompressed), so a test can assert that site settings left nothing behind."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable

from integration.harness import docker

HISTORY = "docker history --no-trunc"
INSPECT = "docker image inspect"
SAVED = "docker save"
CHUNK = 1 << 20


def _saved_image_contains(ref: str, values: list[str]) -> set[str]:
    """The values whose bytes occur in the `docker save` stream of ``ref``, read in chunks
    that overlap by the longest value's length, so a match across a boundary counts."""
    needles = {value: value.encode() for value in values}
    overlap = max((len(n) for n in needles.values()), default=1) - 1
    found: set[str] = set()
    tail = b""
    with subprocess.Popen(["docker", "save", ref], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(CHUNK):
            window = tail + chunk
            found |= {value for value, needle in needles.items() if needle in window}
            tail = window[-overlap:] if overlap else b""
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"docker save {ref} failed ({proc.returncode}): {stderr}")
    return found


def where_found(ref: str, values: Iterable[str]) -> dict[str, set[str]]:
    """Each value (non-empty) -> the places it occurs in the image ``ref`` (HISTORY, INSPECT,
    SAVED); an empty set when it occurs nowhere."""
    wanted = list(dict.fromkeys(values))
    if not all(wanted):
        raise ValueError("empty values match everywhere")
    history = docker("history", "--no-trunc", ref)
    inspect = docker("image", "inspect", ref)
    saved = _saved_image_contains(ref, wanted)
    return {
        value: {place for place, hit in ((HISTORY, value in history),
                                         (INSPECT, value in inspect),
                                         (SAVED, value in saved)) if hit}
        for value in wanted
    }
