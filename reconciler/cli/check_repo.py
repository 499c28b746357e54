"""`reconciler check-repo`: the builder's own checks on a repository, locally, without Docker.

Decision: the verdict comes from the very functions the builder's stages call
(``builder/review.py``), shown within the builder's own caps (``builder/limits.py``), so it
is the builder's verdict word for word and a hostile repository cannot make it larger.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from reconciler.builder.baseimage import ImageOptions
from reconciler.builder.clone import CloneError, clone
from reconciler.builder.limits import (
    MAX_LINE_CHARS,
    MAX_LISTED,
    MAX_TEXT_CHARS,
    clip_lines,
    clip_repairs,
    clip_text,
)
from reconciler.builder.problems import Problem
from reconciler.builder.review import RepoReview, review_repository
from reconciler.cli.options import ERROR, OK, PROBLEMS, workspace
from reconciler.cli.present import dump_json
from reconciler.core.repo_url import check_ref, check_repo_url, is_local, local_path
from reconciler.core.text import visible
from reconciler.edges.git_remote import GitRemoteError, resolve_commit


def check_repo(args: argparse.Namespace) -> int:
    target: str = args.repo
    try:
        if args.ref is not None:
            check_ref(args.ref)
    except ValueError as error:
        print(f"reconciler: --ref {error}", file=sys.stderr)
        return ERROR
    local = is_local(target) or Path(target).exists()
    try:
        if not local:
            check_repo_url(target, allow_file_repos=False)
    except ValueError as error:
        print(f"reconciler: the repository URL {error}", file=sys.stderr)
        return ERROR
    images = workspace(args).config.images
    options = ImageOptions(dict(images.python), images.conda_base_image)
    if local and args.ref is None and not _is_git_repository(Path(local_path(target))):
        return _report_review(Path(local_path(target)), args.json, options)
    with tempfile.TemporaryDirectory(prefix="flops-check-") as tmp:
        try:
            location = str(Path(local_path(target)).resolve()) if local else target
            commit = resolve_commit(location, args.ref, timeout=60)
            clone(location, commit, Path(tmp) / "repo", args.ref)
        except (GitRemoteError, CloneError) as error:
            print(f"reconciler: {error}", file=sys.stderr)
            return PROBLEMS
        return _report_review(Path(tmp) / "repo", args.json, options)


def _is_git_repository(path: Path) -> bool:
    """A work tree (``.git`` inside) or a bare repository (HEAD and objects/ at the top):
    either is checked at its HEAD commit, as a builder would clone it."""
    return (path / ".git").exists() or ((path / "HEAD").is_file() and (path / "objects").is_dir())


def _report_review(repo_dir: Path, as_json: bool, options: ImageOptions) -> int:
    """The builder's own verdict on the tree: the same functions its stages call, shown
    within the builder's own caps (limits.py), so a hostile repository cannot make the
    output larger than them: at most MAX_LISTED problems, each text and detail clipped."""
    review = review_repository(repo_dir, options)
    problems = review.problems[:MAX_LISTED]
    if as_json:
        dump_json({
            "ok": review.ok,
            "stage": review.failed_stage,
            "problems": [
                {"category": p.category, "file": clip_text(p.file, MAX_LINE_CHARS),
                 "line": p.line, "message": clip_text(p.message), "hint": clip_text(p.hint)}
                for p in problems
            ],
            "problem_count": len(review.problems),
            "python": review.plan.python_pin if review.plan else None,
            "requirements": review.plan.requirements if review.plan else {},
            "repairs": clip_repairs([repair.as_json() for repair in review.repair_diffs]),
            "notes": [{"level": n.level, "message": clip_text(n.message),
                       "details": clip_lines(n.details)} for n in review.notes],
        })
    else:
        _print_review(review, problems)
    return OK if review.ok else PROBLEMS


def _print_review(review: RepoReview, problems: list[Problem]) -> None:
    """The verdict as text: repository text clipped and made visible (no terminal control)."""
    def shown(text: str) -> str:
        return visible(clip_text(text, MAX_TEXT_CHARS))

    for problem in problems:
        print(f"problem  {shown(problem.describe())}\n         fix: {shown(problem.hint)}")
    if len(review.problems) > len(problems):
        print(f"problem  ... and {len(review.problems) - len(problems)} more problems")
    for note in review.notes:
        print(f"{note.level.lower():<9}{shown(note.message)}")
        for line in clip_lines(note.details):
            print(f"           {visible(line)}")
    if review.plan:
        for role, lines in sorted(review.plan.requirements.items()):
            listed = clip_lines(lines, MAX_LISTED, MAX_LINE_CHARS, "requirements")
            print(f"{role + ' ':<9}{visible(', '.join(listed)) or '(no extra packages)'}")
    print("ok" if review.ok else f"{len(review.problems)} problem(s)")
