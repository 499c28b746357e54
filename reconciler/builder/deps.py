"""Dependency planning: the conda file and requirements.txt -> one pip requirements list per
FL-actor role, the base image, and every repair made on the way (DESIGN §1 stage 3).

How the sources combine: the conda file's dependencies (translated to pip: `name=1.2` ->
`name==1.2.*`, conda's fuzzy match), then its `pip:` list, then the root requirements.txt
(unless the pip list already includes it with `-r`) form one pip set. A package listed more
than once (names compared per PEP 503) is merged, with a WARN repair, when the entries agree:
the same requirement however spelt, or a bare name next to a constrained entry. Any other pair
is an error naming both lines. Entries with different environment markers are independent.

Decision: the plan is the single source of every dependency decision; the builder's
dependencies stage and `check-repo` both take it as it is (requirements, repairs with diffs,
notes to log, base image, problems). Pure apart from reading the repository's files.
The notes log at most `MAX_REPAIRS` repairs one by one (each diff clipped to `MAX_LINES`) and
then one line counting the rest: the plan itself keeps every repair.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .baseimage import ImageOptions, choose_base
from .collect import Collector
from .conda import CONDA_FILES, conda_to_pip, find_conda_file, read_conda
from .limits import MAX_REPAIRS, clip_lines
from .problems import Note, Problem, exhausted
from .protocol import ROLES
from .repairs import Repair, label_value
from .repofiles import present
from .requirements import is_option
from .rules import display_pin, merge, python_pin, roles, torchvision

__all__ = ["CONDA_FILES", "DependencyPlan", "ImageOptions", "conda_to_pip", "plan_dependencies"]

REQUIREMENTS_FILE = "requirements.txt"


@dataclass(frozen=True)
class DependencyPlan:
    """What to install per role, from which base, and why it differs from the files."""

    conda_file: str | None
    python_pin: str | None
    requirements: dict[str, list[str]]
    repairs: list[str]  # one-line summaries of `repair_diffs`
    role_repairs: dict[str, list[str]]
    warnings: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    repair_diffs: list[Repair] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    base_image: str | None = None  # None: the request's default base image
    conda_packages: list[str] = field(default_factory=list)
    conda_channels: list[str] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)  # what the dependencies stage logs

    @property
    def ok(self) -> bool:
        return not self.problems

    def label(self, role: str) -> str:
        """The `flops.repairs` label value of the role's image."""
        return label_value(self.repair_diffs, role)


def _missing() -> Problem:
    return Problem(
        "repo", CONDA_FILES[0],
        f"conda.yaml is missing at the repository root (looked for {'/'.join(CONDA_FILES)} and "
        f"{REQUIREMENTS_FILE})",
        "add conda.yaml with a 'dependencies:' list (conda packages and a 'pip:' sub-list), "
        f"or a {REQUIREMENTS_FILE}",
    )


def plan_dependencies(repo_dir: Path, options: ImageOptions | None = None) -> DependencyPlan:
    """The dependency plan of a checked-out repository; problems when it cannot be built."""
    try:
        return _plan(repo_dir, options or ImageOptions())
    except (RecursionError, MemoryError) as exc:
        return _failed(None, exhausted(exc))


def _failed(conda_file: str | None, problem: Problem) -> DependencyPlan:
    empty: dict[str, list[str]] = {role: [] for role in ROLES}
    return DependencyPlan(conda_file, None, empty, [], {r: [] for r in ROLES}, [], [problem])


def _plan(repo_dir: Path, options: ImageOptions) -> DependencyPlan:
    empty: dict[str, list[str]] = {role: [] for role in ROLES}
    conda_name = find_conda_file(repo_dir)
    has_requirements = present(repo_dir, REQUIREMENTS_FILE)
    collector = Collector(repo_dir)
    sources: list[str] = []
    channels: list[str] = []
    warnings: list[str] = []
    if conda_name is None and not has_requirements:
        return _failed(None, _missing())
    if conda_name is not None:
        doc, problem = read_conda(repo_dir, conda_name)
        if problem is not None or doc is None:
            problems = [problem] if problem is not None else []
            return DependencyPlan(conda_name, None, empty, [], {r: [] for r in ROLES}, [],
                                  problems)
        sources.append(doc.name)
        channels = doc.channels()
        collector.conda(doc)
        warnings += [
            f"{name} is ignored: {doc.name} is read (the first of {', '.join(CONDA_FILES)})"
            for name in CONDA_FILES if name != doc.name and present(repo_dir, name)
        ]
    if has_requirements and REQUIREMENTS_FILE not in collector.included:
        sources.append(REQUIREMENTS_FILE)
        collector.read_requirements(REQUIREMENTS_FILE, (REQUIREMENTS_FILE,))
    merged, merge_repairs, problems = merge(collector.entries)
    python, python_problems = python_pin(collector.python)
    repairs = collector.repairs + merge_repairs
    added_torchvision, scan_warnings = torchvision(repo_dir, merged)
    warnings += scan_warnings
    if added_torchvision is not None:
        merged.append(added_torchvision[0])
        repairs.append(added_torchvision[1])
    requirements, role_repairs, role_warnings = roles(merged, repo_dir)
    repairs += role_repairs
    warnings += role_warnings
    base = choose_base(python, collector.conda_only, channels, options)
    repairs += base.repairs
    problems = collector.problems + problems + python_problems + base.problems
    notes = _notes(sources, repairs, warnings, base.notes, requirements)
    return DependencyPlan(
        conda_file=conda_name,
        python_pin=display_pin(python),
        requirements=empty if problems else requirements,
        repairs=[r.summary for r in repairs],
        role_repairs={role: [r.summary for r in repairs if role in r.roles] for role in ROLES},
        warnings=warnings,
        problems=problems,
        repair_diffs=repairs,
        sources=sources,
        base_image=base.image,
        conda_packages=base.conda_packages,
        conda_channels=base.conda_channels,
        notes=notes,
    )


def _notes(
    sources: list[str], repairs: list[Repair], warnings: list[str], base_notes: list[Note],
    requirements: dict[str, list[str]],
) -> list[Note]:
    """The dependencies stage's log events, in order: sources, repairs, warnings, base, counts."""
    how = ""
    if len(sources) > 1:
        how = f" ({REQUIREMENTS_FILE}'s lines join {sources[0]}'s pip list; duplicates merged)"
    counts = ", ".join(
        f"{role} {sum(not is_option(line) for line in lines)}"
        for role, lines in requirements.items()
    )
    return [
        Note("INFO", f"dependencies from {' and '.join(sources)}{how}"),
        *_capped([Note("WARN", r.summary, tuple(clip_lines(r.diff))) for r in repairs],
                 "repairs"),
        *_capped([Note("WARN", w) for w in warnings], "warnings"),
        *base_notes,
        Note("INFO", f"pip requirements per role: {counts}"),
    ]


def _capped(notes: list[Note], what: str) -> list[Note]:
    """At most MAX_REPAIRS notes; the last one counts those not logged one by one."""
    if len(notes) <= MAX_REPAIRS:
        return notes
    keep = MAX_REPAIRS - 1
    return [*notes[:keep], Note("WARN", f"... and {len(notes) - keep} more {what}, not logged "
                                "one by one")]
