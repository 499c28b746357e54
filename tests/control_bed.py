"""A workspace for unit tests of the control layer: real desired and state directories, real
git repositories on disk, and the fake backend, image store and clock of ``fake_backend``.

No Docker engine is needed: everything the controller would ask Docker or the registry goes
to the fakes, and everything else (git, files, records, logs) is real.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fake_backend import FakeBackend, FakeBuilder, FakeClock, FakeImages
from fake_training import FakeServing, FakeTraining
from support import flops_ml_repo_files, git, make_ml_repo

from reconciler.control.controller import Controller
from reconciler.control.reports import Notice, StageReport
from reconciler.core.config import Config
from reconciler.core.naming import image_refs
from reconciler.core.project import ProjectRecord
from reconciler.edges.settings import template_dirs
from reconciler.edges.state import StateStore
from reconciler.workspace import Workspace


class Bed:
    """One test's world. ``repo(name)`` publishes an ML repository and returns its URL (a
    local bare repository); ``sla(project, url)`` writes an SLA file; ``controller()`` makes
    a controller over the same state directory (a second one stands for a restart)."""

    def __init__(self, root: Path, *, stream_for: Callable[[dict[str, Any]], str] | None = None,
                 auto_finish: bool = False, training: FakeTraining | None = None,
                 serving: FakeServing | None = None, **config: Any) -> None:
        self.root = root
        self.desired = root / "desired"
        self.desired.mkdir(parents=True)
        self.config = Config.model_validate({"allow_file_repos": True, "retry_base": "10s",
                                             "retry_cap": "40s", **config})
        self.clock = FakeClock()
        self.images = FakeImages()
        self.backend = FakeBackend(self.config, self.images, auto_finish=auto_finish,
                                   **({"stream_for": stream_for} if stream_for else {}))
        self.reports: list[StageReport | Notice] = []
        if training is not None:
            training.config_hosts = list(self.config.hosts)
        self.workspace = Workspace(self.config, self.desired, StateStore(root / "state"),
                                   template_dirs(None), clock=self.clock, backend=self.backend,
                                   images=self.images, training=training, serving=serving)

    def repo(self, name: str, **changes: str) -> str:
        files = {**flops_ml_repo_files(), "MARKER": f"{name}\n", **changes}
        work = make_ml_repo(self.root / "work", f"{name}-owner/{name}", files,
                            bare_dir=self.root / "remotes")
        assert work.is_dir()
        return str(self.root / "remotes" / f"{name}-owner" / f"{name}.git")

    def commit_of(self, url: str) -> str:
        return git(["rev-parse", "HEAD"], cwd=Path(url))

    def sla(self, project: str, url: str, **keys: Any) -> Path:
        path = self.desired / f"{project}.yaml"
        document = {"ml_repo_url": url, "ml_model_flavor": "sklearn", **keys}
        path.write_text(json.dumps(document))
        return path

    def controller(self) -> Controller:
        return Controller(self.workspace, report=self.reports.append)

    def started(self, project: str) -> tuple[Controller, FakeBuilder]:
        """A project with its own repository whose builder a first pass has deployed."""
        self.sla(project, self.repo(project))
        controller = self.controller()
        controller.apply(wait=False)
        return controller, self.backend.only_builder()

    def images_of(self, url: str) -> dict[str, str]:
        return image_refs(self.config.image_prefix, url, self.commit_of(url))

    def record(self, project: str) -> ProjectRecord:
        record = self.workspace.store.load(project)
        assert record is not None, f"no record for {project}"
        return record

    def log(self, project: str) -> str:
        return self.workspace.store.observer_path(project).read_text()

    def notices(self) -> list[str]:
        return [r.text for r in self.reports if isinstance(r, Notice)]
