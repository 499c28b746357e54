"""Version arithmetic at major.minor granularity (reconciler.builder.versions) and pip
requirement parsing (reconciler.builder.requirements)."""

from __future__ import annotations

import pytest

from reconciler.builder.requirements import logical_lines, parse_requirement
from reconciler.builder.versions import allowed_series, single_series

CANDIDATES = [(3, 9), (3, 10), (3, 11), (3, 12)]


def clauses(spec: str) -> tuple[tuple[str, str], ...]:
    requirement = parse_requirement("x" + spec)
    assert requirement is not None
    return requirement.clauses


@pytest.mark.parametrize(
    ("spec", "allowed"),
    [("==3.10.*", [(3, 10)]), ("==3.10", [(3, 10)]), ("==3.10.12", [(3, 10)]),
     (">=3.10,<3.11", [(3, 10)]), (">=3.10.4", [(3, 12), (3, 11), (3, 10)]),
     ("<3.10.5", [(3, 10), (3, 9)]), ("<3.11", [(3, 10), (3, 9)]), ("<=3.10", [(3, 10), (3, 9)]),
     (">3.10", [(3, 12), (3, 11), (3, 10)]), ("!=3.10.*", [(3, 12), (3, 11), (3, 9)]),
     ("!=3.10.1", [(3, 12), (3, 11), (3, 10), (3, 9)]), ("~=3.10", [(3, 12), (3, 11), (3, 10)]),
     ("~=3.10.2", [(3, 10)]), ("==3.*", [(3, 12), (3, 11), (3, 10), (3, 9)]), ("==2.7", []),
     ("", [(3, 12), (3, 11), (3, 10), (3, 9)])],
)
def test_allowed_series(spec: str, allowed: list[tuple[int, int]]) -> None:
    assert allowed_series(clauses(spec), CANDIDATES) == allowed


def test_an_unreadable_version_raises() -> None:
    with pytest.raises(ValueError):
        allowed_series([("==", "abc")], CANDIDATES)


@pytest.mark.parametrize(
    ("spec", "series"),
    [("==2.1.0", (2, 1)), ("==2.1.0+cpu", (2, 1)), ("==2.1.*", (2, 1)), ("~=2.2.1", (2, 2)),
     (">=2.3,<2.4", (2, 3)), (">=2.1", None), ("", None), ("<2.2", None)],
)
def test_single_series(spec: str, series: tuple[int, int] | None) -> None:
    assert single_series(clauses(spec)) == series


def test_requirements_compare_however_they_are_spelt() -> None:
    a = parse_requirement("Scikit_Learn [Extra] >= 1.3 , <2 ; python_version<'3.12'")
    b = parse_requirement('scikit-learn[extra]<2,>=1.3; python_version<"3.12"')
    assert a is not None and b is not None
    assert a.same_as(b)
    assert a.name == "scikit-learn" and not a.bare and not a.pinned
    other = parse_requirement("scikit-learn>=1.3")
    assert other is not None and not other.same_as(b)


@pytest.mark.parametrize(
    ("line", "bare", "pinned"),
    [("numpy", True, False), ("numpy==1.26.*", False, True), ("numpy>=1", False, False),
     ("numpy @ https://x/n.whl", False, False), ("numpy==1.2 --hash=sha256:ab", False, True)],
)
def test_bare_and_pinned(line: str, bare: bool, pinned: bool) -> None:
    requirement = parse_requirement(line)
    assert requirement is not None
    assert (requirement.bare, requirement.pinned) == (bare, pinned)


@pytest.mark.parametrize("line", ["--index-url http://x/simple", "-r a.txt", "https://x/y.whl"])
def test_options_and_urls_are_not_requirements(line: str) -> None:
    assert parse_requirement(line) is None


def test_logical_lines_keep_the_first_line_number() -> None:
    text = "# top\nflwr==1.5 # fl\n\nnumpy\\\n  ==1.26\nurl#frag\n"
    assert logical_lines(text) == [(2, "flwr==1.5"), (4, "numpy  ==1.26"), (6, "url#frag")]
