"""The sub-commands that read the desired state and the configuration: validate, plan, retry,
retrain.

Decision: commands hold no reconcile logic; they choose what to run and map results to the
exit codes of DESIGN §3. Each group of commands is a module of its own (``read_commands``,
``reconcile``, ``check_repo``, ``doctor``) and the command line imports only the one it runs,
so a read command never loads the Docker client, the controller or rich.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reconciler.cli.options import OK, PROBLEMS, workspace
from reconciler.cli.present import dump_json
from reconciler.core.plan import in_sync
from reconciler.core.project import InvalidProject
from reconciler.edges.desired import by_name, load_file, sla_files
from reconciler.edges.state import checked_key


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


def retry(args: argparse.Namespace) -> int:
    ws = workspace(args)
    record = ws.store.load(args.project) if _safe(args.project) else None
    if record is None:
        print(f"reconciler: unknown project {args.project!r}", file=sys.stderr)
        return PROBLEMS
    ws.request_retry(args.project)
    print(f"{args.project}: re-armed; the next pass (apply, or a running watch) builds it again")
    return OK


def retrain(args: argparse.Namespace) -> int:
    ws = workspace(args)
    record = ws.store.load(args.project) if _safe(args.project) else None
    if record is None:
        print(f"reconciler: unknown project {args.project!r}", file=sys.stderr)
        return PROBLEMS
    ws.request_retrain(args.project)
    print(f"{args.project}: a new training run is requested; the next pass (apply, or a "
          "running watch) starts it")
    return OK


def _safe(project: str) -> bool:
    try:
        checked_key(project)
    except ValueError:
        return False
    return True
