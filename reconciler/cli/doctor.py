"""`reconciler doctor` and `reconciler build-builder`: the Docker side, checked and prepared.

Decision: the probes live in ``edges/probes.py``; doctor runs each and prints one line per
probe, ok or the problem with its fix, so a newcomer sees all problems at once.
"""

from __future__ import annotations

import argparse
import sys

from reconciler.cli.options import OK, PROBLEMS, workspace
from reconciler.core.config import Config
from reconciler.edges.builder_image import ensure_builder_image
from reconciler.edges.probes import ProbeProblem, probes_for


def doctor(args: argparse.Namespace) -> int:
    return OK if run_doctor(workspace(args).config) else PROBLEMS


def run_doctor(config: Config) -> bool:
    healthy = True
    for probe in probes_for(config):
        try:
            print(f"ok       {probe.name}: {probe.run()}")
        except ProbeProblem as problem:
            healthy = False
            print(f"problem  {probe.name}: {problem}")
    return healthy


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
