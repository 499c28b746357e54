"""What the global options name: the workspace of a command, and the exit statuses.

Decision: one function turns the parsed global options into a ``Workspace``
(``reconciler/workspace.py`` assembles it), so every command that needs the configuration
sees the same one, and the commands that do not need it never load it.
"""

from __future__ import annotations

import argparse

from reconciler.workspace import Workspace, assemble

OK, PROBLEMS, ERROR = 0, 1, 2


def workspace(args: argparse.Namespace) -> Workspace:
    return assemble(config_file=args.config, desired_dir=args.desired, state_dir=args.state,
                    templates=args.templates, registry=args.registry, source=args.source,
                    pull=args.pull)
