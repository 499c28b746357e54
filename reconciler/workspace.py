"""The workspace: everything a command works with, assembled once.

Decision: the configuration, the desired directory, the state store, the templates, the
clock, the runtime backend and the image store are put together here and nowhere else; the
controller receives them ready-made, so a test hands it a fake backend, image store or clock
through the same door the CLI uses for the real ones. The Docker-facing parts are made only
when first used (and their modules imported only then), so a read command such as ``plan``
never pays for python-on-whales or the registry client.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.core.config import Config
from reconciler.core.plan import PlanItem, make_plan, tracked_refs
from reconciler.core.project import Desired, ProjectRecord
from reconciler.edges.clock import Clock, SystemClock
from reconciler.edges.desired import FileCache, load_committed, load_desired
from reconciler.edges.desired_repo import DesiredRepo, check_ref_part, find_repo
from reconciler.edges.git_remote import GitRemoteError, RemoteRefs
from reconciler.edges.settings import ConfigError, config_path, load_config, template_dirs
from reconciler.edges.state import StateStore, atomic_write

if TYPE_CHECKING:
    from jinja2 import Environment

    from reconciler.edges.backend import Backend
    from reconciler.edges.registry import ImageStore
    from reconciler.edges.serving import ModelServer
    from reconciler.edges.training_backend import TrainingBackend

RETRY_REQUEST = "retry-"
RETRAIN_REQUEST = "retrain-"


class Workspace:
    """The places a command reads and writes, the configuration it runs with, and the edges
    it talks to.

    Where it sits: made by the CLI (``assemble``) or a test, before anything else; the
    controller and the build runner read the world only through it. It owns the long-lived
    edges (backend, image store, file cache, desired repository), each made once.
    """

    def __init__(self, config: Config, desired_dir: Path, store: StateStore,
                 template_dirs: list[Path], *, source: str = "worktree",
                 pull: tuple[str, str] | None = None, clock: Clock | None = None,
                 backend: Backend | None = None, images: ImageStore | None = None,
                 training: TrainingBackend | None = None,
                 serving: ModelServer | None = None) -> None:
        self.config = config
        self.desired_dir = desired_dir
        self.store = store
        self.template_dirs = template_dirs
        self.source = source  # "head": only committed SLA content counts
        self.pull = pull  # (remote, branch) to fast-forward the desired repository from
        self.clock: Clock = clock or SystemClock()
        self.files = FileCache()
        self._backend = backend
        self._images = images
        self._training = training
        self._serving = serving

    # -- edges made on first use ------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """The runtime backend the configuration names (compose or swarm)."""
        if self._backend is None:
            if self.config.backend == "swarm":
                from reconciler.edges.swarm_backend import SwarmBackend
                self._backend = SwarmBackend(self.config, self.store.build_dir,
                                             self.template_dirs)
            else:
                from reconciler.edges.compose_backend import ComposeBackend
                self._backend = ComposeBackend(self.config, self.store.build_dir,
                                               self.template_dirs)
        return self._backend

    @property
    def training(self) -> TrainingBackend:
        """Where training runs' actors run: the learner hosts' engines, or the swarm's
        nodes labelled flops-learner=true."""
        if self._training is None:
            if self.config.backend == "swarm":
                from reconciler.edges.swarm_training import SwarmTraining
                self._training = SwarmTraining(self.config, self.store.build_dir)
            else:
                from reconciler.edges.training_backend import ComposeTraining
                self._training = ComposeTraining(self.config, self.store.build_dir)
        return self._training

    @property
    def serving(self) -> ModelServer:
        """Where trained models are served (post_training_steps): on the aggregator's host,
        or as a swarm service on the manager's node."""
        if self._serving is None:
            if self.config.backend == "swarm":
                from reconciler.edges.swarm_serving import SwarmServing
                self._serving = SwarmServing(self.config)
            else:
                from reconciler.edges.serving import ComposeServing
                self._serving = ComposeServing(self.config)
        return self._serving

    @property
    def images(self) -> ImageStore:
        """Where images are looked up: the registry, or in ``local`` mode the engine of the
        first image-builder host. Raises BackendError when local mode has no such host."""
        if self._images is None:
            if self.config.local_registry:
                from reconciler.edges.backend import NO_HOST, BackendError
                from reconciler.edges.registry import EngineImages
                hosts = self.config.image_builder_hosts()
                if not hosts:
                    raise BackendError(NO_HOST)
                self._images = EngineImages(hosts[0].docker_host)
            else:
                from reconciler.edges.registry import RegistryImages
                self._images = RegistryImages(self.config.registry,
                                              timeout=self.config.registry_timeout)
        return self._images

    @cached_property
    def templates(self) -> Environment:
        """The Jinja environment over the template directories."""
        from reconciler.core.render import make_environment
        return make_environment(self.template_dirs)

    @cached_property
    def desired_repo(self) -> DesiredRepo | None:
        """The git work tree around the desired directory, if any (looked up once)."""
        return find_repo(self.desired_dir)

    # -- desired state and plans --------------------------------------------------------------

    def load_desired(self) -> dict[str, Desired]:
        if self.source == "head":
            return load_committed(self.desired_dir, self._head_repo().head_documents(),
                                  allow_file_repos=self.config.allow_file_repos)
        return load_desired(
            self.desired_dir, allow_file_repos=self.config.allow_file_repos, cache=self.files
        )

    def ignored_edits(self) -> list[str]:
        """With ``--source head``: the SLA files whose uncommitted edits are ignored."""
        return self._head_repo().uncommitted() if self.source == "head" else []

    def _head_repo(self) -> DesiredRepo:
        repo = self.desired_repo
        if repo is None:
            raise ConfigError(f"--source head: {self.desired_dir} is not inside a git work "
                              "tree; commit the SLA files to a repository or use worktree")
        return repo

    def plan(self, *, refresh: bool = True) -> tuple[list[PlanItem], dict[str, str]]:
        """The plan, and the remotes that could not be asked (project -> why). ``refresh``:
        ask the remotes of tracked refs for their current commit, as `apply` does."""
        desired, recorded = self.load_desired(), self.store.load_all()
        commits, errors = self.remote_commits(desired, recorded) if refresh else ({}, {})
        return make_plan(desired, recorded, self.clock.now(), remote_commits=commits), errors

    def remote_commits(
        self, desired: dict[str, Desired], recorded: dict[str, ProjectRecord]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Project -> the commit its tracked ref names on the remote now, one ls-remote per
        repository (in parallel); and project -> why its remote could not be asked."""
        tracked = tracked_refs(desired, recorded)
        remotes = RemoteRefs(timeout=self.config.git_timeout)
        remotes.prefetch({want.sla.ml_repo_url for want in tracked.values()})
        commits: dict[str, str] = {}
        errors: dict[str, str] = {}
        for name, want in tracked.items():
            try:
                commits[name] = remotes.resolve(want.sla.ml_repo_url, want.sla.ml_repo_ref)
            except GitRemoteError as error:
                errors[name] = str(error)
        return commits, errors

    # -- requests to the controller that owns the state ----------------------------------------

    @property
    def requests_dir(self) -> Path:
        return self.store.root / "requests"

    def request_retry(self, project: str) -> Path:
        """Ask the controller that owns the state (now or on its next pass) to re-arm."""
        return self._request(RETRY_REQUEST, project)

    def request_retrain(self, project: str) -> Path:
        """Ask the controller that owns the state for a new training run of the project."""
        return self._request(RETRAIN_REQUEST, project)

    def _request(self, kind: str, project: str) -> Path:
        path = self.requests_dir / f"{kind}{project}"
        self.store.record_path(project)  # refuses unsafe names
        atomic_write(path, project)
        return path


def assemble(*, config_file: str | None, desired_dir: Path, state_dir: Path,
             templates: str | None, registry: str | None = None, source: str = "worktree",
             pull: str | None = None) -> Workspace:
    """The workspace of the command line's options (``--pull`` is ``REMOTE/BRANCH``)."""
    config = load_config(config_path(config_file),
                         overrides={"registry": registry} if registry else {})
    return Workspace(config, desired_dir, StateStore(state_dir), template_dirs(templates),
                     source=source, pull=_pull_source(pull) if pull else None)


def _pull_source(text: str) -> tuple[str, str]:
    remote, _, branch = text.partition("/")
    if not remote or not branch:
        raise ConfigError(f"--pull {text!r}: write REMOTE/BRANCH, e.g. origin/main")
    check_ref_part(remote, "remote")
    check_ref_part(branch, "branch")
    return remote, branch
