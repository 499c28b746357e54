"""The builder's verdict on a repository without building it, for `reconciler check-repo`.

Decision: one implementation. The review calls exactly what the builder's `check` and
`dependencies` stages call (`check_structure`, then `plan_dependencies` with the same image
options), and `failure` is the error the builder would end with. The review reports more at
once than the builder (it also plans dependencies when the structure check failed, so a user
sees every problem in one run), but it is `ok` exactly when the builder's checks pass, and the
plan it carries holds the same requirements, repairs with their diffs and log notes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .baseimage import ImageOptions
from .checks import check_structure
from .conda import CONDA_FILES
from .deps import DependencyPlan, plan_dependencies
from .problems import Note, Problem, StageFailure, failure_from_problems
from .repairs import Repair


@dataclass(frozen=True)
class RepoReview:
    """The structure problems and the dependency plan (None when the conda file is unusable)."""

    structure: list[Problem]
    plan: DependencyPlan | None
    options: ImageOptions = field(default_factory=ImageOptions)

    @property
    def problems(self) -> list[Problem]:
        """Every problem: the structure's first (the builder's order), then the plan's."""
        return self.structure + (self.plan.problems if self.plan is not None else [])

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def failure(self) -> StageFailure | None:
        """The error the builder would end with (its first failing stage), or None."""
        if self.structure:
            return failure_from_problems(self.structure)
        if self.plan is not None and self.plan.problems:
            return failure_from_problems(self.plan.problems)
        return None

    @property
    def failed_stage(self) -> str | None:
        """`check` or `dependencies`: the stage the builder would fail in, or None."""
        if self.structure:
            return "check"
        return "dependencies" if self.plan is not None and self.plan.problems else None

    @property
    def repair_diffs(self) -> list[Repair]:
        return self.plan.repair_diffs if self.plan is not None else []

    @property
    def notes(self) -> list[Note]:
        """What the builder's dependencies stage logs for this plan."""
        return self.plan.notes if self.plan is not None else []


def review_repository(repo_dir: Path, options: ImageOptions | None = None) -> RepoReview:
    """What the builder's check and dependencies stages would say about a checked-out tree.

    `options` are the request's base-image settings (python image map, conda base image);
    without them the review assumes what a request without them gets.
    """
    options = options or ImageOptions()
    structure = check_structure(repo_dir)
    if any(p.file in CONDA_FILES for p in structure):
        return RepoReview(structure, None, options)  # a missing or broken file reported once
    return RepoReview(structure, plan_dependencies(repo_dir, options), options)
