"""pip requirement lines: their project name, a comparable form, where each came from, and
requirements files read with line numbers.

Decision: no `packaging` (the builder is standard library plus PyYAML): a requirement is split
by one regular expression into name, extras, specifiers, URL and marker, normalized just enough
to tell "the same requirement written twice" from "a different requirement". Anything the
expression does not understand is compared by its whitespace-free text. Every expression here
runs in time linear in the line (no nested or adjacent quantifiers over the same characters):
the lines come from an untrusted repository.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r"^\s*(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")
# The part before any `;` marker: name, optional extras; the rest is the specifier or URL.
_HEAD = re.compile(
    r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*"
    r"(?:\[(?P<extras>[^\]]*)\])?"
)
_CLAUSE = re.compile(r"^(?P<op>===|==|!=|~=|>=|<=|>|<)\s*(?P<version>\S+)$")
_COMMENT_START = re.compile(r"(?:^|\s)#")  # pip: `#` at the start or after whitespace
_OPTION_START = re.compile(r"\s--\S")  # `--hash=...` after a requirement
_SEPARATORS = re.compile(r"[-_.]+")
_SPACES = re.compile(r"\s+")


def canonical_name(name: str) -> str:
    """PEP 503 normalized project name: `Scikit_Learn` -> `scikit-learn`."""
    return _SEPARATORS.sub("-", name).lower()


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
    text = _without_options(line.strip())
    head, _semicolon, marker_text = text.partition(";")
    match = _HEAD.match(head)
    if match is None:
        return Requirement(name, frozenset(), (), "", "", _SPACES.sub("", text))
    extras = frozenset(
        canonical_name(e.strip()) for e in (match["extras"] or "").split(",") if e.strip()
    )
    rest = head[match.end():].strip()
    url = ""
    clauses: list[tuple[str, str]] = []
    if rest.startswith("@"):
        url = rest[1:].strip()
    elif rest:
        for part in rest.strip("()").split(","):
            clause = _CLAUSE.match(part.strip())
            if clause is None:
                return Requirement(name, extras, (("?", _SPACES.sub("", rest)),), "", "", text)
            clauses.append((clause["op"], clause["version"]))
    marker = _SPACES.sub(" ", marker_text.strip()).replace("'", '"')
    return Requirement(name, extras, tuple(clauses), url, marker, text)


def _without_options(text: str) -> str:
    """The requirement without per-requirement options (`pkg==1 --hash=sha256:...`)."""
    match = _OPTION_START.search(text)
    return text if match is None else text[: match.start()].rstrip()


def _without_comment(raw: str) -> str:
    """The line without its comment (and the whitespace before it), as pip strips it."""
    match = _COMMENT_START.search(raw)
    return raw if match is None else raw[: match.start()].rstrip()


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, line) of a requirements file: comments dropped, `\\` continuations
    joined, blank lines skipped; as pip reads the file."""
    found: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _without_comment(raw)
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        joined = ("".join(pending) + line).strip()
        pending = []
        if joined:
            found.append((start, joined))
    rest = "".join(pending).strip()
    if rest:
        found.append((start, rest))
    return found
