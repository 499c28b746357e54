"""Version arithmetic without `packaging`: which major.minor release series a version
specifier allows (for the python pin and the torch pin), and which torchvision matches a torch.

Decision: versions are compared at major.minor granularity only. A series X.Y is allowed when
some X.Y.z release could satisfy every clause (`>=3.10.4` allows 3.10, `<3.10.5` allows 3.10,
`<3.11` does not allow 3.11). That is all the base-image map and the torchvision table need,
and it is small enough to get right without a PEP 440 implementation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

Series = tuple[int, int]

# torch minor release -> the torchvision minor release built against it (pytorch.org's table).
TORCHVISION_FOR_TORCH = {
    (1, 12): "0.13", (1, 13): "0.14", (2, 0): "0.15", (2, 1): "0.16", (2, 2): "0.17",
    (2, 3): "0.18", (2, 4): "0.19", (2, 5): "0.20", (2, 6): "0.21", (2, 7): "0.22",
    (2, 8): "0.23",
}
_SERIES_KEY = re.compile(r"^(?P<major>\d+)\.(?P<minor>\d+)$")
_PART = re.compile(r"^(?P<digits>\d+)")
_UNIVERSE = [(major, minor) for major in range(10) for minor in range(100)]


def parse_series(text: str) -> Series | None:
    """`"3.10"` -> (3, 10); None for anything else."""
    match = _SERIES_KEY.match(text.strip())
    return (int(match["major"]), int(match["minor"])) if match else None


def series_text(series: Series) -> str:
    return f"{series[0]}.{series[1]}"


def _numbers(version: str) -> tuple[list[int], bool]:
    """Release numbers of a version (`2.1.0+cpu` -> [2, 1, 0]) and whether it ends in `.*`."""
    wildcard = version.endswith(".*")
    core = version.removesuffix(".*").split("+", 1)[0].removeprefix("v")
    numbers: list[int] = []
    for part in core.split("."):
        match = _PART.match(part)
        if match is None:
            raise ValueError(f"cannot read version {version!r}")
        numbers.append(int(match["digits"]))
        if match.end() != len(part):  # `0rc1`: a pre-release; later parts do not count
            break
    return numbers, wildcard


def _allows(op: str, version: str, series: Series) -> bool:
    numbers, wildcard = _numbers(version)
    head = [*numbers, 0, 0][:2]
    base: Series = (head[0], head[1])
    later_patch = any(n != 0 for n in numbers[2:])  # not the series' first release
    if op in ("==", "==="):
        if wildcard:
            prefix = tuple(numbers[:2])
            return series[: len(prefix)] == prefix
        return series == base
    if op == "!=":
        if wildcard and len(numbers) <= 2:
            return series[: len(numbers)] != tuple(numbers)
        return True  # excludes one release or one patch series: others remain
    if op in (">=", ">"):
        return series >= base
    if op == "<=":
        return series <= base
    if op == "<":
        return series <= base if later_patch else series < base
    if op == "~=":
        if len(numbers) < 2:
            raise ValueError(f"~={version} needs at least two release numbers")
        if len(numbers) == 2:
            return series >= base and series[0] == base[0]
        return series == base
    raise ValueError(f"unsupported operator {op!r}")


def allowed_series(
    clauses: Sequence[tuple[str, str]], candidates: Iterable[Series]
) -> list[Series]:
    """The candidate series some release of which satisfies every clause, newest first.

    ValueError when a clause cannot be read.
    """
    return sorted(
        (s for s in candidates if all(_allows(op, version, s) for op, version in clauses)),
        reverse=True,
    )


def single_series(clauses: Sequence[tuple[str, str]]) -> Series | None:
    """The one major.minor series the clauses allow, or None when they allow several (or none,
    or cannot be read)."""
    try:
        allowed = allowed_series(clauses, _UNIVERSE)
    except ValueError:
        return None
    return allowed[0] if len(allowed) == 1 else None
