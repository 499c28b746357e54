"""The sub-commands: each turns parsed arguments into calls on the loop and the edges.

Decision: commands hold no reconcile logic; they choose what to run, take the state lock for
the ones that write (apply, watch), and map results to the exit codes of DESIGN §3.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

import watchfiles

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
from reconciler.cli.doctor import run_doctor
from reconciler.cli.present import Progress, print_status, status_row
from reconciler.core.plan import in_sync
from reconciler.core.project import InvalidProject, Phase, ProjectRecord
from reconciler.core.repo_url import check_ref, check_repo_url, is_local, local_path
from reconciler.core.text import visible
from reconciler.edges.builder_image import ensure_builder_image
from reconciler.edges.desired import by_name, load_file, sla_files
from reconciler.edges.desired_repo import check_ref_part
from reconciler.edges.git_remote import GitRemoteError, resolve_commit
from reconciler.edges.settings import ConfigError, config_path, load_config, template_dirs
from reconciler.edges.state import StateStore, checked_key
from reconciler.loop import Controller, Workspace

OK, PROBLEMS, ERROR = 0, 1, 2


def workspace(args: argparse.Namespace) -> Workspace:
    overrides = {"registry": args.registry} if args.registry else {}
    config = load_config(config_path(args.config), overrides=overrides)
    pull = None
    if args.pull:
        remote, _, branch = args.pull.partition("/")
        if not remote or not branch:
            raise ConfigError(f"--pull {args.pull!r}: write REMOTE/BRANCH, e.g. origin/main")
        check_ref_part(remote, "remote")
        check_ref_part(branch, "branch")
        pull = (remote, branch)
    return Workspace(config, args.desired, StateStore(args.state), template_dirs(args.templates),
                     source=args.source, pull=pull)


def dump_json(value: object) -> None:
    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")


def validate(args: argparse.Namespace) -> int:
    ws = workspace(args)
    files = [Path(f) for f in args.files] or sla_files(ws.desired_dir)
    loaded = [load_file(path, allow_file_repos=ws.config.allow_file_repos) for path in files]
    named = by_name(loaded)  # two files for one project: invalid here too, as in `plan`
    bad = 0
    for project in loaded:
        verdict = named[project.name]
        if verdict.sla_file != project.sla_file and isinstance(verdict, InvalidProject):
            verdict = InvalidProject(project.name, project.sla_file, verdict.error)  # a twin
        if isinstance(verdict, InvalidProject):
            bad += 1
            print(f"invalid  {verdict.error}")
        else:
            print(f"valid    {verdict.sla_file} (project {verdict.name})")
    return PROBLEMS if bad else OK


def plan(args: argparse.Namespace) -> int:
    ws = workspace(args)
    items, unasked = ws.plan(refresh=not args.offline)
    ignored = ws.ignored_edits()
    notes = sys.stderr if args.json else sys.stdout
    if ignored:
        print(f"note: --source head ignores uncommitted edits: {', '.join(ignored)}", file=notes)
    for project, why in sorted(unasked.items()):
        print(f"note: {project}: cannot tell whether its ref moved: {why}", file=notes)
    if args.json:
        dump_json([item.as_json() for item in items])
    else:
        for item in items:
            print(f"{item.project}\t{item.action.value}\t{item.reason}")
        if not items:
            print("no projects")
    return OK if in_sync(items) else PROBLEMS


def apply(args: argparse.Namespace) -> int:
    ws = workspace(args)
    with ws.store.lock("reconciler apply"):
        progress = Progress(sys.stderr if args.json else sys.stdout)
        with progress if args.wait else contextlib.nullcontext():
            records = Controller(ws, report=progress).apply(wait=args.wait)
    rows = [status_row(r, ws.store) for _, r in sorted(records.items())]
    if args.json:
        dump_json(rows)
    else:
        print_status(rows, sys.stdout)
    return apply_exit_code(list(records.values()))


def apply_exit_code(records: list[ProjectRecord]) -> int:
    """0 when every project is ready (or still building without failure), 1 otherwise."""
    if any(r.phase in (Phase.failed, Phase.invalid, Phase.corrupt) for r in records):
        return PROBLEMS
    return OK


def watch(args: argparse.Namespace) -> int:
    ws = workspace(args)
    sla_files(ws.desired_dir)  # a missing desired directory stops the start, exit 2
    stop = threading.Event()
    with ws.store.lock("reconciler watch"):
        controller = Controller(ws, report=Progress(sys.stdout))

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()
            controller.wake.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        print(f"watching {ws.desired_dir} (resync every {ws.config.resync_interval:g}s)",
              flush=True)
        controller.watch(stop)
    print("stopped; running builders are adopted by the next start", flush=True)
    return OK


def retry(args: argparse.Namespace) -> int:
    ws = workspace(args)
    record = ws.store.load(args.project) if _safe(args.project) else None
    if record is None:
        print(f"reconciler: unknown project {args.project!r}", file=sys.stderr)
        return PROBLEMS
    ws.request_retry(args.project)
    print(f"{args.project}: re-armed; the next pass (apply, or a running watch) builds it again")
    return OK


def _safe(project: str) -> bool:
    try:
        checked_key(project)
    except ValueError:
        return False
    return True


def status(args: argparse.Namespace) -> int:
    store = StateStore(args.state)
    records = store.load_all()
    rows = [status_row(r, store) for _, r in sorted(records.items())]
    if args.project:
        rows = [row for row in rows if row["project"] == args.project]
    if args.json:
        dump_json(rows)
    else:
        print_status(rows, sys.stdout)
    return OK


def logs(args: argparse.Namespace) -> int:
    store = StateStore(args.state)
    try:
        path = store.observer_path(args.project)
    except ValueError:
        path = None
    if path is None or not path.exists():
        print(f"reconciler: no observer log for project {args.project!r}", file=sys.stderr)
        return PROBLEMS
    stream = path.open(encoding="utf-8", errors="replace")
    try:
        sys.stdout.write(stream.read())
        sys.stdout.flush()
        if args.follow:
            # The directory, not the file: a rotation renames the file away.
            # The timeout makes it look at least twice a second even when no change was
            # reported (one written before the watcher started, or a missed event).
            for _ in watchfiles.watch(path.parent, raise_interrupt=False, debounce=50, step=20,
                                      rust_timeout=500, yield_on_timeout=True):
                sys.stdout.write(stream.read())
                if _rotated(path, stream.fileno()):  # go on with the new file, from its start
                    stream.close()
                    stream = path.open(encoding="utf-8", errors="replace")
                    sys.stdout.write(stream.read())
                sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        stream.close()
    return OK


def _rotated(path: Path, fd: int) -> bool:
    try:
        return path.stat().st_ino != os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


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


def doctor(args: argparse.Namespace) -> int:
    return OK if run_doctor(workspace(args)) else PROBLEMS


def build_builder(args: argparse.Namespace) -> int:
    ws = workspace(args)
    # A swarm's builder image is built on its manager; each pass pushes it for the nodes.
    candidates = [ws.config.swarm_manager] if ws.config.backend == "swarm" \
        else ws.config.image_builder_hosts()
    hosts = [h for h in candidates if args.host in (None, h.name)]
    if not hosts:
        print("reconciler: no matching image-builder host in the inventory", file=sys.stderr)
        return PROBLEMS
    for host in hosts:
        ensure_builder_image(host.docker_host, ws.config.builder.image,
                             ws.config.builder.base_image, ws.template_dirs, force=True)
        print(f"built {ws.config.builder.image} on {host.name}")
    return OK

