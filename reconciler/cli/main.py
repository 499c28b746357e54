"""The ``reconciler`` command: parse arguments, then run the one sub-command asked for.

Decision: argparse, one sub-command per DESIGN §3 row; every global option also reads a
``RECONCILER_*`` variable, and every failure that is not the user's data ends in exit 2 with
one line on stderr, never a traceback. Only the module of the command that runs is imported
(``COMMANDS``), so a read command starts without the Docker client, the controller or rich.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from reconciler import __version__
from reconciler.core.errors import ConfigError
from reconciler.edges.state import LockHeld

ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="reconciler",
        description="Make every FL project's learner and aggregator images exist.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--desired", default=env("RECONCILER_DESIRED", "desired"),
                        help="directory of SLA files (default: desired)")
    parser.add_argument("--state", default=env("RECONCILER_STATE", "state"),
                        help="directory of records and observer logs (default: state)")
    parser.add_argument("--config", default=env("RECONCILER_CONFIG"),
                        help="TOML configuration (default: reconciler.toml when present)")
    parser.add_argument("--templates", default=env("RECONCILER_TEMPLATES"),
                        help="directory whose templates override the shipped ones")
    parser.add_argument("--registry", help="'local' or a registry URL (overrides the config)")
    parser.add_argument("--source", choices=("worktree", "head"),
                        default=env("RECONCILER_SOURCE", "worktree"),
                        help="worktree: SLA files as they are on disk; head: only what is "
                             "committed in the desired directory's git repository")
    parser.add_argument("--pull", metavar="REMOTE/BRANCH", default=env("RECONCILER_PULL"),
                        help="fast-forward the desired repository from REMOTE/BRANCH before "
                             "every pass (never resets a dirty or diverged repository)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = sub.add_parser("validate", help="schema-check SLA files")
    validate.add_argument("files", nargs="*", help="SLA files (default: all in --desired)")

    plan = sub.add_parser("plan", help="what a pass would do; no side effects")
    plan.add_argument("--json", action="store_true")
    plan.add_argument("--offline", action="store_true",
                      help="do not ask the remotes whether tracked refs moved (apply does)")

    apply = sub.add_parser("apply", help="one reconcile pass")
    apply.add_argument("--wait", action="store_true",
                       help="block until every build this pass started or adopted is recorded")
    apply.add_argument("--json", action="store_true")

    sub.add_parser("watch", help="reconcile on every change, plus a periodic resync")

    retry = sub.add_parser("retry", help="re-arm a project whose retries are exhausted")
    retry.add_argument("project")

    retrain = sub.add_parser("retrain", help="start a new training run of a project")
    retrain.add_argument("project")

    status = sub.add_parser("status", help="one row per project")
    status.add_argument("project", nargs="?")
    status.add_argument("--json", action="store_true")

    logs = sub.add_parser("logs", help="print a project's observer log")
    logs.add_argument("project")
    logs.add_argument("--follow", "-f", action="store_true")

    check = sub.add_parser("check-repo", help="the builder's checks on a repository, no build")
    check.add_argument("repo", metavar="URL_OR_PATH")
    check.add_argument("--ref")
    check.add_argument("--json", action="store_true")

    sub.add_parser("doctor", help="check engine, compose, registry, hosts and git")

    builder = sub.add_parser("build-builder", help="(re)build the image-builder image")
    builder.add_argument("--host", help="inventory host (default: every image-builder host)")
    return parser


# Command -> (module in reconciler.cli, function): imported only when that command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("commands", "validate"),
    "plan": ("commands", "plan"),
    "apply": ("reconcile", "apply"),
    "watch": ("reconcile", "watch"),
    "retry": ("commands", "retry"),
    "retrain": ("commands", "retrain"),
    "status": ("read_commands", "status"),
    "logs": ("read_commands", "logs"),
    "check-repo": ("check_repo", "check_repo"),
    "doctor": ("doctor", "doctor"),
    "build-builder": ("doctor", "build_builder"),
}


def handler(command: str) -> Callable[[argparse.Namespace], int]:
    module, function = COMMANDS[command]
    found: Callable[[argparse.Namespace], int] = getattr(
        importlib.import_module(f"reconciler.cli.{module}"), function)
    return found


# The variables the command line itself reads (every configuration key has one too).
OPTION_VARIABLES = ("RECONCILER_DESIRED", "RECONCILER_STATE", "RECONCILER_CONFIG",
                    "RECONCILER_TEMPLATES", "RECONCILER_SOURCE", "RECONCILER_PULL",
                    "RECONCILER_DEBUG")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.desired, args.state = Path(args.desired), Path(args.state)
    try:
        check_environment(os.environ)
        return handler(args.command)(args)
    except (ConfigError, LockHeld) as error:
        print(f"reconciler: {error}", file=sys.stderr)
        return ERROR
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # the last line of defence: one line, exit 2
        if os.environ.get("RECONCILER_DEBUG"):
            raise
        print(f"reconciler: {type(error).__name__}: {error}", file=sys.stderr)
        return ERROR


def check_environment(environ: Mapping[str, str]) -> None:
    """Refuse RECONCILER_* variables that nothing reads (edges/settings.py says which do).
    The configuration machinery is loaded only when such a variable is set at all."""
    if any(v.startswith("RECONCILER_") and v not in OPTION_VARIABLES for v in environ):
        from reconciler.edges.settings import check_environment as check_against_config

        check_against_config(environ, OPTION_VARIABLES)
