"""Benchmark: `plan` over N generated SLA files against parsing the same files with PyYAML.

Prints the median of several rounds for: the baseline (yaml.load of every file with the
fastest loader available), `plan` with no recorded state (every project is a `create`), and
`plan` when every project is recorded `trained` (its run finished: every project a `noop`),
plus the ratios.
No Docker, git or network is touched: `plan --offline`, pure over the files and the state
directory (the remotes of tracked refs are not asked; bench/resync.py measures that part).

    python bench/plan.py [--projects 1000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import yaml
from timing import median_seconds

from reconciler.core.config import Config
from reconciler.core.plan import Action, training_images
from reconciler.core.project import DesiredProject, Phase, ProjectRecord
from reconciler.core.record import RoundRecord, TrainingPhase, TrainingRecord
from reconciler.core.training import run_key
from reconciler.edges.settings import template_dirs
from reconciler.edges.state import StateStore
from reconciler.workspace import Workspace

SLA = """\
customerID: team-{i}
ml_repo_url: https://git.example.org/org{group}/model-{i}.git
ml_repo_ref: main
ml_model_flavor: {flavor}
supported_platforms: [linux/amd64]
training_configuration:
  mode: classic
  data_tags: [dev, site-{group}]
  training_rounds: {rounds}
  min_available_clients: 2
  min_fit_clients: 2
resource_constraints:
  memory: 512
  vcpus: 2
"""
FLAVORS = ("sklearn", "pytorch", "tensorflow", "keras")
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def write_slas(directory: Path, count: int) -> None:
    for i in range(count):
        text = SLA.format(i=i, group=i % 37, flavor=FLAVORS[i % 4], rounds=3 + i % 5)
        (directory / f"project-{i:05d}.yaml").write_text(text)


def record_all_trained(ws: Workspace) -> None:
    """Every project as a finished training run leaves it: images ready, the run of these
    images and this training configuration finished (so `plan` says noop)."""
    desired = ws.load_desired()
    for project in desired.values():
        assert isinstance(project, DesiredProject)
        record = ProjectRecord(
            project=project.name, phase=Phase.trained, sla_file=project.sla_file,
            sla=project.sla_dump, sla_digest=project.sla_digest,
            image_digest=project.image_digest, commit="0" * 40,
            images={"learner": f"r/{project.name}/learner:x"},
        )
        key = run_key(training_images(record), project.sla.training_configuration)
        run = TrainingRecord(run=key, phase=TrainingPhase.finished, name=f"flops-train-{key}",
                             aggregator="site-a", learners=["site-a", "site-b"],
                             total_rounds=3, started="2026-11-30T00:00:00.000Z", best_round=3,
                             rounds=[RoundRecord(n, 0.5, 0.9, 2, 1.0) for n in (1, 2, 3)])
        ws.store.save(replace(record, training=run))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        desired, state = Path(tmp) / "desired", Path(tmp) / "state"
        desired.mkdir()
        write_slas(desired, args.projects)
        ws = Workspace(Config(), desired, StateStore(state), template_dirs(None))

        def plan_command() -> object:
            # As `reconciler plan` does: a new process, so no parse cache from earlier passes.
            return Workspace(Config(), desired, StateStore(state), template_dirs(None)).plan(
                refresh=False)

        files = sorted(desired.iterdir())

        def baseline() -> object:
            return [yaml.load(p.read_text(), Loader=LOADER) for p in files]

        base = median_seconds(baseline, args.rounds)
        fresh_plan, _ = ws.plan(refresh=False)
        assert all(item.action is Action.create for item in fresh_plan)
        fresh = median_seconds(plan_command, args.rounds)
        record_all_trained(ws)
        assert all(item.action is Action.noop for item in ws.plan(refresh=False)[0])
        steady = median_seconds(plan_command, args.rounds)
    print(f"projects: {args.projects}, rounds: {args.rounds} (median), loader: {LOADER.__name__}")
    rows = [
        ("baseline  yaml.load only", base),
        ("plan      nothing recorded (create)", fresh),
        ("plan      all recorded trained (noop)", steady),
    ]
    for label, seconds in rows:
        print(f"{label:<36}{seconds * 1000:8.1f} ms  ratio {seconds / base:5.2f}x")


if __name__ == "__main__":
    main()
