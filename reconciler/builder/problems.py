"""How the builder describes what it found: a `Problem` in the user's repository, a `Note` a
stage logs on the way, or a `StageFailure` that ends the build.

Decision: a problem carries its error category (see `protocol.CATEGORIES`) and a hint, and a
note carries its log level and detail lines, so the same values serve the builder's events and
the reconciler's local `check-repo` command. A check that runs out of stack or memory on the
repository's content is the repository's problem (`exhausted`), never a builder crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the ML repository, with what to do about it."""

    category: str  # "repo" or "dependencies"
    file: str  # path relative to the repository root
    message: str
    hint: str
    line: int | None = None

    def describe(self) -> str:
        """`file:line: message`, the one-line form used in logs and details."""
        if self.line is not None:
            return f"{self.file}:{self.line}: {self.message}"
        if self.message.startswith(self.file):
            return self.message
        return f"{self.file}: {self.message}"


@dataclass(frozen=True)
class Note:
    """One log event a stage emits (INFO or WARN), with optional detail lines."""

    level: str
    message: str
    details: tuple[str, ...] = ()


@dataclass
class StageFailure(Exception):
    """Ends the build with a categorized error (turned into the failed result event)."""

    category: str
    message: str
    hint: str
    details: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message


def failure_from_problems(problems: list[Problem]) -> StageFailure:
    """One failure that reports every problem: the first names the category and the hint."""
    first = problems[0]
    message = first.describe()
    if len(problems) > 1:
        more = len(problems) - 1
        message += f" (and {more} more problem{'s' if more > 1 else ''}, see details)"
    hints = list(dict.fromkeys(p.hint for p in problems))
    details = [p.describe() + "  -> " + p.hint for p in problems]
    return StageFailure(first.category, message, "; ".join(hints), details)


REPOSITORY = "the repository"  # the `file` of a problem about the tree as a whole


def exhausted(exc: RecursionError | MemoryError) -> Problem:
    """The last line of defence when a check runs out of stack or memory on the repository's
    content (the parsers catch what they know first): a `repo` problem, counted as an attempt."""
    reason = "nests too deeply" if isinstance(exc, RecursionError) else "is too large"
    return Problem(
        "repo", REPOSITORY, f"{REPOSITORY} {reason} to be checked ({type(exc).__name__})",
        "split very long expressions and deeply nested code or data into smaller pieces",
    )
