"""Both repository checks in one call, for the reconciler's local `check-repo` command.

Decision: the structure check runs first; the dependency plan is made only when the conda file
exists and parses, so a broken file is reported once, not by both checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .checks import check_structure
from .deps import CONDA_FILES, DependencyPlan, plan_dependencies
from .problems import Problem


@dataclass(frozen=True)
class RepoReview:
    """Every problem found, and the dependency plan when one could be made."""

    problems: list[Problem]
    plan: DependencyPlan | None

    @property
    def ok(self) -> bool:
        return not self.problems


def review_repository(repo_dir: Path) -> RepoReview:
    """What the builder's check and dependencies stages would say about a checked-out tree."""
    problems = check_structure(repo_dir)
    if any(p.file in CONDA_FILES for p in problems):
        return RepoReview(problems, None)
    plan = plan_dependencies(repo_dir)
    return RepoReview(problems + plan.problems, plan)
