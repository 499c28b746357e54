"""Fixtures for the integration tests: a real Docker engine, a real registry v2 server, the
base image, real git repositories served over git://, and a check that no image-builder
resources are left behind. No mocks.

Every test in this directory is marked ``docker`` and needs the engine: when ``docker info``
fails the tests are skipped locally and fail under CI (environment variable ``CI`` set).
Run ``bash scripts/setup.sh`` to get the engine, the compose plugin, docker-registry and the
base image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest
from support import (
    DockerSnapshot,
    GitDaemon,
    RegistryServer,
    docker_engine_error,
    docker_image_exists,
    free_port,
    git,
    leftover_resources,
    make_ml_repo,
    port_accepts,
    remove_images_by_prefix,
    remove_resources,
    run,
    wait_until,
)
from support import (
    flops_ml_repo_files as _flops_ml_repo_files,
)

from integration.harness import (
    BuilderEvents,
    BuildGate,
    PackageIndex,
    clear_leftovers_of_killed_runs,
    ensure_test_runtime,
)
from integration.swarm_bed import SecondEngine, main_engine_trusts_testbed

BASE_IMAGE = "flops-base:bookworm"
_HERE = Path(__file__).resolve().parent


def unavailable(reason: str) -> NoReturn:
    """A missing prerequisite: fail under CI (it must be there), skip elsewhere."""
    hint = f"{reason} (run `bash scripts/setup.sh`)"
    if os.environ.get("CI"):
        pytest.fail(f"integration prerequisite missing under CI: {hint}", pytrace=False)
    pytest.skip(hint)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.docker)


# --- engine, compose, base image ------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """The Docker engine answers ``docker info``; returns its server version."""
    error = docker_engine_error()
    if error is not None:
        unavailable(f"no Docker engine: {error}")
    clear_leftovers_of_killed_runs()
    return run(["docker", "info", "--format", "{{.ServerVersion}}"]).stdout.strip()


@pytest.fixture(autouse=True)
def _integration_needs_docker(docker_engine: str) -> None:
    """Every integration test depends on the engine check."""


@pytest.fixture(scope="session")
def compose_plugin(docker_engine: str) -> str:
    """``docker compose`` works; returns its version."""
    proc = run(["docker", "compose", "version", "--short"], check=False)
    if proc.returncode != 0:
        unavailable(f"`docker compose` does not work: {proc.stderr.strip()}")
    return proc.stdout.strip()


@pytest.fixture(scope="session")
def base_image(fl_runtime: str) -> str:
    """The locally built base image ``flops-base:bookworm`` (nothing can be pulled), with the
    FL runtime image for it made (see ``fl_runtime``)."""
    return BASE_IMAGE


@pytest.fixture(scope="session")
def fl_runtime(docker_engine: str) -> str:
    """The FL runtime image for ``flops-base:bookworm`` on the main engine, made once (from
    PyPI, trusting the host's CA bundle: DESIGN §8) exactly as a builder would make it, so a
    builder finds it and no test build needs the package index for the runtime; its
    reference. Cached in the engine: later sessions find it at once."""
    if not docker_image_exists(BASE_IMAGE):
        unavailable(f"base image {BASE_IMAGE} is missing")
    return ensure_test_runtime(BASE_IMAGE)


ARM64 = "linux/arm64"
ARM64_BASE_IMAGE = "flops-base:bookworm-arm64"


@pytest.fixture(scope="session")
def arm64_base_image(fl_runtime: str) -> str:
    """The arm64 base image (``scripts/setup.sh --platforms linux/arm64``) with its FL runtime
    image made once under QEMU emulation (slow the first time, then found in the engine as
    ``fl_runtime`` is), and the emulation it needs; its name."""
    handler = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    if not handler.is_file() or "enabled" not in handler.read_text():
        unavailable("no QEMU handler for arm64 in binfmt_misc (run `bash scripts/setup.sh "
                    "--platforms linux/arm64`)")
    said = run(["docker", "image", "inspect", "--format", "{{.Os}}/{{.Architecture}}",
                ARM64_BASE_IMAGE], check=False)
    if said.returncode != 0 or said.stdout.strip() != ARM64:
        unavailable(f"no {ARM64} base image {ARM64_BASE_IMAGE} (run `bash scripts/setup.sh "
                    "--platforms linux/arm64`)")
    ensure_test_runtime(ARM64_BASE_IMAGE, ARM64)
    return ARM64_BASE_IMAGE


# --- registry -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def registry(
    docker_engine: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryServer]:
    """A real registry v2 server (``docker-registry serve``) on 127.0.0.1:<free port>, with
    filesystem storage in a temp dir and deletes enabled. ``.url`` is
    ``http://127.0.0.1:PORT``, ``.host`` is ``127.0.0.1:PORT``, ``.manifest_exists(name,
    tag)`` does a manifest HEAD."""
    if shutil.which("docker-registry") is None:
        unavailable("docker-registry is not installed")
    server = RegistryServer.start(tmp_path_factory.mktemp("registry"))
    try:
        yield server
    finally:
        server.stop()


# --- a second engine (multi-host and swarm tests) ---------------------------------------------


@pytest.fixture(scope="session")
def second_engine(
    base_image: str, fl_runtime: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecondEngine]:
    """A second ``dockerd`` in its own network and mount namespace (DESIGN §8), with the base
    image loaded. Test servers that it must reach listen on ``.host_addr``."""
    for tool in ("ip", "nsenter", "unshare", "dockerd"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed")
    problem = main_engine_trusts_testbed()
    if problem is not None:
        unavailable(problem)
    engine = SecondEngine.start(tmp_path_factory.mktemp("node-b"))
    try:
        engine.load_images([base_image, fl_runtime])
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def testbed_registry(
    second_engine: SecondEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryServer]:
    """A registry v2 server both engines reach: on the test bed's address, plain HTTP."""
    server = RegistryServer.start(tmp_path_factory.mktemp("testbed-registry"),
                                  listen_host=second_engine.host_addr)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def testbed_git(second_engine: SecondEngine, tmp_path: Path) -> Iterator[GitDaemon]:
    """A ``git daemon`` both engines' builders reach, on the test bed's address."""
    daemon = GitDaemon.start(tmp_path / "testbed-git", listen_host=second_engine.host_addr)
    try:
        yield daemon
    finally:
        daemon.stop()


# --- git ------------------------------------------------------------------------------------


@pytest.fixture
def git_remote(tmp_path: Path) -> Iterator[GitDaemon]:
    """A ``git daemon`` serving repositories over ``git://127.0.0.1:PORT/<name>.git`` (push
    enabled). ``git_remote.make_ml_repo(name, files)`` creates a work repo (branch ``main``,
    one commit, fixed identity) plus its served bare clone and returns an ``MLRepo`` with
    ``.work``, ``.bare``, ``.url``, ``.commit`` and ``.push_commit(...)``."""
    daemon = GitDaemon.start(tmp_path / "git")
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def flops_ml_repo_files() -> Callable[..., dict[str, str]]:
    """The :func:`support.flops_ml_repo_files` helper, as a fixture for convenience."""
    return _flops_ml_repo_files


@pytest.fixture
def ml_files() -> Callable[..., dict[str, str]]:
    """``ml_files(flavor="sklearn", *, marker=None, drop=None, extra_deps=())``: the files of
    a valid FLOps ML repo; a ``marker`` makes the content (and so the commit) unique."""

    def make(
        flavor: str = "sklearn",
        *,
        marker: str | None = None,
        drop: str | Iterable[str] | None = None,
        extra_deps: Iterable[str] = (),
    ) -> dict[str, str]:
        files = _flops_ml_repo_files(flavor, drop=drop, extra_deps=extra_deps)
        if marker is not None:
            files["MARKER"] = f"{marker}\n"
        return files

    return make


@pytest.fixture
def publish(tmp_path: Path, request: pytest.FixtureRequest) -> Callable[..., tuple[str, str]]:
    """``publish(name, files, *, via="path") -> (url, commit)``: commit ``files`` in a new
    work repo and publish a bare clone at ``.../<name>-owner/<name>.git``. ``via="path"``
    returns the bare repo's local path (needs ``allow_file_repos``); ``via="git"`` serves it
    with the ``git_remote`` daemon and returns its ``git://`` URL."""
    root = tmp_path / "published"

    def do(name: str, files: Mapping[str, str], *, via: str = "path") -> tuple[str, str]:
        repo_name = f"{name}-owner/{name}"
        if via == "git":
            daemon: GitDaemon = request.getfixturevalue("git_remote")
            repo = daemon.make_ml_repo(repo_name, files)
            return repo.url, repo.commit
        if via != "path":
            raise ValueError(f"via must be 'path' or 'git', not {via!r}")
        work = make_ml_repo(root / "work", repo_name, files, bare_dir=root / "remotes")
        return str(root / "remotes" / f"{repo_name}.git"), git(["rev-parse", "HEAD"], cwd=work)

    return do


# --- leftovers ------------------------------------------------------------------------------


@dataclass
class DockerCleanup:
    """Handed to a test by ``docker_cleanup``. ``remove_images(prefix)`` removes local
    images now; ``add_image_prefix(prefix)`` removes them at teardown."""

    before: DockerSnapshot
    image_prefixes: list[str] = field(default_factory=list)

    def remove_images(self, prefix: str) -> list[str]:
        return remove_images_by_prefix(prefix)

    def add_image_prefix(self, prefix: str) -> None:
        self.image_prefixes.append(prefix)


@pytest.fixture
def docker_cleanup(docker_engine: str) -> Iterator[DockerCleanup]:
    """Snapshot containers, networks, volumes, images (and swarm services) before the test.
    After it: remove what the test created that carries ``flops.role=image-builder`` (or
    belongs to a builder's compose project / stack) or ``flops.test``, and FAIL the test if
    any builder container, network, volume or service was still there (the reconciler must
    remove its builders itself)."""
    cleanup = DockerCleanup(before=DockerSnapshot.take())
    yield cleanup
    builder, test = leftover_resources(cleanup.before)
    remove_resources(test)
    remove_resources(builder)
    for prefix in cleanup.image_prefixes:
        remove_images_by_prefix(prefix)
    left = {kind: sorted(ids) for kind, ids in builder.items() if ids}
    if left:
        pytest.fail(
            f"image-builder resources were left behind (now removed by the fixture): {left}",
            pytrace=False,
        )


@pytest.fixture
def remove_registry_images(docker_cleanup: DockerCleanup, registry: RegistryServer) -> None:
    """Images a test builds for the session's registry are removed from the engine after it."""
    docker_cleanup.add_image_prefix(registry.host)


@pytest.fixture
def builds(tmp_path: Path) -> Iterator[BuilderEvents]:
    """Docker's events for builder containers, recorded for the whole test (Docker keeps only
    its last events, so a query at the end of a busy test could miss early ones)."""
    with BuilderEvents.recording(tmp_path / "docker-events.jsonl") as events:
        yield events


@pytest.fixture
def build_gate() -> Iterator[BuildGate]:
    """A gate that holds builders at a step until the test releases it (held_templates)."""
    gate = BuildGate()
    try:
        yield gate
    finally:
        gate.close()


@pytest.fixture
def package_index(tmp_path: Path) -> Iterator[PackageIndex]:
    """A PEP 503 index on a free loopback port (python's http.server over a directory)."""
    root = tmp_path / "package-index"
    (root / "simple").mkdir(parents=True)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_accepts("127.0.0.1", port), 20, 0.05,
                   "the package index did not start")
        yield PackageIndex(root, f"http://127.0.0.1:{port}/simple")
    finally:
        server.terminate()
        server.wait(timeout=20)
