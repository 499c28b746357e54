"""pip requirement lines: their project name, a comparable form, where each came from, and
requirements files read with line numbers.

Decision: no `packaging` (the builder is standard library plus PyYAML): a requirement is split
by one regular expression into name, extras, specifiers, URL and marker, normalized just enough
to tell "the same requirement written twice" from "a different requirement". Anything the
expression does not understand is compared by its whitespace-free text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"^\s*(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")
_REQUIREMENT = re.compile(
    r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*"
    r"(?:\[(?P<extras>[^\]]*)\])?\s*"
    r"(?P<rest>[^;]*?)\s*"
    r"(?:;\s*(?P<marker>.*))?$"
)
_CLAUSE = re.compile(r"^(?P<op>===|==|!=|~=|>=|<=|>|<)\s*(?P<version>\S+)$")
_COMMENT = re.compile(r"(^|\s+)#.*$")
_PER_REQUIREMENT_OPTION = re.compile(r"\s+--\S.*$")


def canonical_name(name: str) -> str:
    """PEP 503 normalized project name: `Scikit_Learn` -> `scikit-learn`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def is_option(line: str) -> bool:
    """A pip option line (`--index-url ...`, `-r file`), not a requirement."""
    return line.strip().startswith("-")


def pip_name(line: str) -> str | None:
    """The canonical project name of a requirement line, or None for options and bare URLs."""
    stripped = line.strip()
    if is_option(stripped) or "://" in stripped.split(";")[0].split(" @ ")[0]:
        return None
    match = _NAME.match(stripped)
    return canonical_name(match["name"]) if match else None


@dataclass(frozen=True)
class Requirement:
    """A requirement line taken apart; `clauses` are (operator, version) pairs as written."""

    name: str
    extras: frozenset[str]
    clauses: tuple[tuple[str, str], ...]
    url: str
    marker: str
    text: str

    @property
    def bare(self) -> bool:
        """Only a name: says nothing another entry of the same package could contradict."""
        return not (self.extras or self.clauses or self.url or self.marker)

    @property
    def pinned(self) -> bool:
        """Pinned to one version (or one release series, `==1.2.*`) with `==` or `===`."""
        return any(op in ("==", "===") for op, _version in self.clauses)

    @property
    def specifier(self) -> str:
        """The version specifier as one string, e.g. `>=1.2,<2` (empty when unconstrained)."""
        return ",".join(op + version for op, version in self.clauses)

    def same_as(self, other: Requirement) -> bool:
        """The same requirement, however it was spelt (name case, spaces, clause order)."""
        return (self.name, self.extras, sorted(self.clauses), self.url, self.marker) == (
            other.name, other.extras, sorted(other.clauses), other.url, other.marker
        )


@dataclass(frozen=True)
class Entry:
    """One dependency: as pip installs it, as the repository wrote it, and where."""

    text: str  # the requirement line the image installs
    written: str  # the line as the file says it (a conda spec for a conda dependency)
    file: str
    line: int | None
    where: str = ""  # e.g. "dependencies[3]": names the entry when the line is unknown
    requirement: Requirement | None = None  # None for options and unreadable lines

    @property
    def origin(self) -> str:
        """`conda.yaml:7`, or `conda.yaml dependencies[3]` when the line is unknown."""
        if self.line is not None:
            return f"{self.file}:{self.line}"
        return f"{self.file} {self.where}".strip()


def parse_requirement(line: str) -> Requirement | None:
    """The parts of a requirement line; None for options and lines that are not requirements."""
    name = pip_name(line)
    if name is None:
        return None
    text = _PER_REQUIREMENT_OPTION.sub("", line.strip())  # `--hash=...` after a requirement
    match = _REQUIREMENT.match(text)
    if match is None:
        return Requirement(name, frozenset(), (), "", "", re.sub(r"\s+", "", text))
    extras = frozenset(
        canonical_name(e.strip()) for e in (match["extras"] or "").split(",") if e.strip()
    )
    rest = match["rest"].strip()
    url = ""
    clauses: list[tuple[str, str]] = []
    if rest.startswith("@"):
        url = rest[1:].strip()
    elif rest:
        for part in rest.strip("()").split(","):
            clause = _CLAUSE.match(part.strip())
            if clause is None:
                return Requirement(name, extras, (("?", re.sub(r"\s+", "", rest)),), "", "", text)
            clauses.append((clause["op"], clause["version"]))
    marker = re.sub(r"\s+", " ", (match["marker"] or "").strip()).replace("'", '"')
    return Requirement(name, extras, tuple(clauses), url, marker, text)


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, line) of a requirements file: comments dropped, `\\` continuations
    joined, blank lines skipped; as pip reads the file."""
    found: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _COMMENT.sub("", raw)
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            found.append((start, line))
    if pending.strip():
        found.append((start, pending.strip()))
    return found
