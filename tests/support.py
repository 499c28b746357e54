"""Helpers for the tests that are not fixtures: ports, polling, processes, real git
repositories, a real registry v2 server and FLOps-layout ML repository contents.

Everything here drives real programs (git, git daemon, docker-registry, docker); nothing is
mocked. The fixtures in ``tests/integration/conftest.py`` are thin wrappers around it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import yaml

T = TypeVar("T")


class WaitAborted(RuntimeError):
    """Raised by a :func:`wait_until` predicate to stop waiting at once (e.g. the process
    being waited for has exited)."""


#: Fixed identity and dates for test commits: the same files give the same commit SHA.
GIT_ENV: dict[str, str] = {
    "GIT_AUTHOR_NAME": "FLOps Test",
    "GIT_AUTHOR_EMAIL": "flops-test@example.invalid",
    "GIT_COMMITTER_NAME": "FLOps Test",
    "GIT_COMMITTER_EMAIL": "flops-test@example.invalid",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00+00:00",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00+00:00",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}

#: Accept header for a manifest HEAD: Docker v2 manifests and manifest lists, OCI manifests
#: and indexes.
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


class CommandError(RuntimeError):
    """A command exited non-zero; the message carries its output."""

    def __init__(self, cmd: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.cmd = list(cmd)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(
            f"command failed (exit {returncode}): {' '.join(self.cmd)}\n"
            f"--- stdout ---\n{stdout[-4000:]}\n--- stderr ---\n{stderr[-4000:]}"
        )


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    check: bool = True,
    timeout: float = 120,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` (no shell), capture text output; raise :class:`CommandError` on failure
    when ``check``. ``env`` is added to the current environment."""
    args = [os.fspath(c) for c in cmd]
    full_env = {**os.environ, **env} if env is not None else None
    proc = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=full_env,
        input=input,
        check=False,
    )
    if check and proc.returncode != 0:
        raise CommandError(args, proc.returncode, proc.stdout, proc.stderr)
    return proc


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    interval: float = 0.1,
    message: str | Callable[[], str] = "condition not met",
) -> T:
    """Poll ``predicate`` until it returns a truthy value and return that value.

    Exceptions from the predicate count as "not yet", except :class:`WaitAborted`, which
    propagates. On timeout raise :class:`TimeoutError` with ``message`` (a string or a
    callable producing one) and the last exception, if any.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            result = predicate()
        except WaitAborted:
            raise
        except Exception as exc:
            last_exc = exc
        else:
            if result:
                return result
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            detail = f" (last error: {last_exc!r})" if last_exc is not None else ""
            raise TimeoutError(f"timed out after {timeout:.1f}s: {text}{detail}")
        time.sleep(interval)


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


# --------------------------------------------------------------------------------------------
# Docker helpers
# --------------------------------------------------------------------------------------------


def docker_engine_error() -> str | None:
    """None when ``docker info`` works, else why not."""
    if shutil.which("docker") is None:
        return "the docker client is not on PATH"
    try:
        proc = run(["docker", "info", "--format", "{{.ServerVersion}}"], check=False, timeout=30)
    except subprocess.TimeoutExpired:
        return "`docker info` timed out after 30s"
    if proc.returncode != 0:
        return f"`docker info` failed: {(proc.stderr or proc.stdout).strip()[-500:]}"
    return None


def docker_image_exists(ref: str) -> bool:
    return run(["docker", "image", "inspect", ref], check=False, timeout=30).returncode == 0


def remove_images_by_prefix(prefix: str) -> list[str]:
    """Remove every local image reference (``repo:tag``) that starts with ``prefix``.
    Returns the removed references."""
    out = run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]).stdout
    refs = sorted({r for r in out.split() if r.startswith(prefix) and not r.endswith(":<none>")})
    if refs:
        run(["docker", "image", "rm", "--force", *refs], check=False, timeout=120)
    return refs


# --------------------------------------------------------------------------------------------
# Registry v2 server (Debian's docker-registry, distribution v2.8)
# --------------------------------------------------------------------------------------------


@dataclass
class RegistryServer:
    """A real registry v2 server (``docker-registry serve CONFIG``) on loopback.

    Use :meth:`start`; stop with :meth:`stop`. ``url`` is ``http://HOST:PORT`` and ``host``
    is ``HOST:PORT`` (the form used in image references).
    """

    root: Path
    listen_host: str = "127.0.0.1"
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log_path: Path | None = None

    @property
    def host(self) -> str:
        return f"{self.listen_host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @classmethod
    def start(
        cls, root: Path, *, listen_host: str = "127.0.0.1", timeout: float = 30.0
    ) -> RegistryServer:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RuntimeError("docker-registry is not installed (run scripts/setup.sh)")
        root.mkdir(parents=True, exist_ok=True)
        last_error = ""
        for _attempt in range(3):  # the free port may be taken between probe and bind
            server = cls(root=root, listen_host=listen_host, port=free_port(listen_host))
            server._spawn(binary)
            try:
                server.wait_ready(timeout)
                return server
            except (TimeoutError, RuntimeError) as exc:
                last_error = f"{exc}\n{server.log_tail()}"
                server.stop()
        raise RuntimeError(f"registry did not start: {last_error}")

    def _spawn(self, binary: str) -> None:
        storage = self.root / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(storage)},
                "delete": {"enabled": True},
            },
            "http": {"addr": self.host},
        }
        config_path = self.root / f"config-{self.port}.yml"
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.log_path = self.root / f"registry-{self.port}.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "serve", str(config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def log_tail(self, chars: int = 2000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise WaitAborted(f"docker-registry exited with {self.process.returncode}")
            return httpx.get(f"{self.url}/v2/", timeout=2).status_code == 200

        wait_until(ready, timeout, 0.1, f"registry {self.url}/v2/ did not answer 200")

    def manifest_exists(self, name: str, tag: str) -> bool:
        """HEAD /v2/<name>/manifests/<tag>: True on 200, False on 404, raise otherwise."""
        resp = httpx.head(
            f"{self.url}/v2/{name}/manifests/{tag}",
            headers={"Accept": MANIFEST_ACCEPT},
            timeout=10,
        )
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        raise RuntimeError(f"unexpected registry answer {resp.status_code} for {name}:{tag}")

    def stop(self) -> None:
        if self.process is not None:
            _stop_process(self.process)


# --------------------------------------------------------------------------------------------
# Git repositories and a served git:// remote
# --------------------------------------------------------------------------------------------


def git(args: Sequence[str | os.PathLike[str]], cwd: Path | None = None) -> str:
    """Run git with the fixed test identity; return stdout stripped."""
    return run(["git", *args], cwd=cwd, env=GIT_ENV).stdout.strip()


def write_files(root: Path, files: Mapping[str, str]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")


def commit_all(work: Path, message: str) -> str:
    """Stage everything in ``work`` (deletions too), commit, return the commit SHA."""
    git(["add", "-A"], cwd=work)
    git(["commit", "-q", "--allow-empty", "-m", message], cwd=work)
    return git(["rev-parse", "HEAD"], cwd=work)


def make_ml_repo(
    tmp_path: Path,
    name: str,
    files: Mapping[str, str],
    *,
    bare_dir: Path | None = None,
    message: str = "Initial commit",
) -> Path:
    """Create a NON-bare work repository ``tmp_path/<name>`` on branch ``main`` holding
    ``files`` in one commit (fixed identity and dates), plus a bare clone
    ``(bare_dir or tmp_path)/<name>.git`` that is the work repo's ``origin``.

    ``name`` may contain slashes (``owner/repo``). Returns the work repository's path.
    """
    work = tmp_path / name
    work.mkdir(parents=True, exist_ok=False)
    git(["init", "-q", "-b", "main", str(work)])
    write_files(work, files)
    commit_all(work, message)
    bare = (bare_dir or tmp_path) / f"{name}.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    git(["clone", "-q", "--bare", str(work), str(bare)])
    git(["remote", "add", "origin", str(bare)], cwd=work)
    git(["fetch", "-q", "origin"], cwd=work)
    git(["branch", "-q", "--set-upstream-to=origin/main", "main"], cwd=work)
    return work


@dataclass
class MLRepo:
    """A work repository and its bare clone served by a :class:`GitDaemon`."""

    name: str
    work: Path
    bare: Path
    url: str

    @property
    def commit(self) -> str:
        """The commit of the work repo's HEAD."""
        return git(["rev-parse", "HEAD"], cwd=self.work)

    def push_commit(
        self,
        files: Mapping[str, str] | None = None,
        *,
        remove: Iterable[str] = (),
        message: str = "Update",
        branch: str = "main",
    ) -> str:
        """Write/delete files in the work repo, commit, push ``branch`` to the bare repo;
        return the new commit SHA."""
        if files:
            write_files(self.work, files)
        for rel in remove:
            (self.work / rel).unlink()
        sha = commit_all(self.work, message)
        git(["push", "-q", "origin", f"HEAD:refs/heads/{branch}"], cwd=self.work)
        return sha

    def tag(self, tag: str, rev: str = "HEAD") -> str:
        """Create ``tag`` at ``rev`` in the work repo and push it; return the commit SHA."""
        git(["tag", tag, rev], cwd=self.work)
        git(["push", "-q", "origin", f"refs/tags/{tag}"], cwd=self.work)
        return git(["rev-parse", f"{rev}^{{commit}}"], cwd=self.work)


@dataclass
class GitDaemon:
    """``git daemon`` serving every repository under ``base_path`` on loopback
    (read and push)."""

    base_path: Path
    work_root: Path
    port: int = 0
    listen_host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def start(cls, root: Path, *, timeout: float = 20.0,
              listen_host: str = "127.0.0.1") -> GitDaemon:
        base = root / "served"
        work_root = root / "work"
        base.mkdir(parents=True, exist_ok=True)
        work_root.mkdir(parents=True, exist_ok=True)
        last_error = ""
        for _attempt in range(3):
            daemon = cls(base_path=base, work_root=work_root, port=free_port(listen_host),
                         listen_host=listen_host)
            log = (root / f"git-daemon-{daemon.port}.log").open("ab")
            daemon.process = subprocess.Popen(
                [
                    "git",
                    "daemon",
                    "--reuseaddr",
                    f"--base-path={base}",
                    "--export-all",
                    "--enable=receive-pack",
                    "--informative-errors",
                    f"--listen={daemon.listen_host}",
                    f"--port={daemon.port}",
                    str(base),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            log.close()
            proc = daemon.process

            def up(d: GitDaemon = daemon, p: subprocess.Popen[bytes] = proc) -> bool:
                if p.poll() is not None:
                    raise WaitAborted(f"git daemon exited with {p.returncode}")
                return port_accepts(d.listen_host, d.port)

            try:
                wait_until(up, timeout, 0.05, f"git daemon on port {daemon.port}")
                return daemon
            except (TimeoutError, RuntimeError) as exc:
                last_error = str(exc)
                daemon.stop()
        raise RuntimeError(f"git daemon did not start: {last_error}")

    def url(self, name: str) -> str:
        """``git://HOST:PORT/<name>.git``"""
        return f"git://{self.listen_host}:{self.port}/{name}.git"

    def make_ml_repo(self, name: str, files: Mapping[str, str]) -> MLRepo:
        """A new work repo with ``files`` committed, and its served bare clone."""
        work = make_ml_repo(self.work_root, name, files, bare_dir=self.base_path)
        return MLRepo(name=name, work=work, bare=self.base_path / f"{name}.git", url=self.url(name))

    def stop(self) -> None:
        if self.process is not None:
            _stop_process(self.process)


# --------------------------------------------------------------------------------------------
# FLOps-layout ML repository contents
# --------------------------------------------------------------------------------------------

MODEL_MANAGER_PY = '''\
"""Model manager of a tiny FLOps ML repository ({flavor} flavor in name only).

A one-feature linear regression trained with plain gradient descent: pure Python, no
third-party imports, so it runs anywhere in seconds.
"""

from data_manager import load_data


class ModelManager:
    def __init__(self):
        self.weights = [0.0, 0.0]  # slope, intercept
        self.learning_rate = 0.05
        self.epochs = 20
        self.train = []
        self.test = []

    def set_model_data(self):
        self.train, self.test = load_data()

    def get_model(self):
        return self.weights

    def get_model_parameters(self):
        return list(self.weights)

    def set_model_parameters(self, parameters):
        self.weights = [float(p) for p in parameters]

    def fit_model(self):
        slope, intercept = self.weights
        n = len(self.train)
        for _ in range(self.epochs):
            grad_slope = 0.0
            grad_intercept = 0.0
            for x, y in self.train:
                error = slope * x + intercept - y
                grad_slope += 2 * error * x / n
                grad_intercept += 2 * error / n
            slope -= self.learning_rate * grad_slope
            intercept -= self.learning_rate * grad_intercept
        self.weights = [slope, intercept]
        return n

    def evaluate_model(self):
        slope, intercept = self.weights
        n = len(self.test)
        loss = sum((slope * x + intercept - y) ** 2 for x, y in self.test) / n
        accuracy = sum(1 for x, y in self.test if abs(slope * x + intercept - y) < 0.5) / n
        return loss, accuracy, n
'''

DATA_MANAGER_PY = '''\
"""Data manager: a small deterministic data set (y = 2x + 1 plus fixed noise)."""


def load_data(size=40):
    points = []
    for i in range(size):
        x = i / size
        noise = ((i * 7919) % 13 - 6) / 100
        points.append((x, 2 * x + 1 + noise))
    split = int(size * 0.8)
    return points[:split], points[split:]
'''


def flops_ml_repo_files(
    flavor: str = "sklearn",
    *,
    drop: str | Iterable[str] | None = None,
    extra_deps: Iterable[str] = (),
) -> dict[str, str]:
    """Files of a valid FLOps-layout ML repository: ``model_manager.py`` (``ModelManager``
    with the six contract methods, pure Python), ``data_manager.py``, ``conda.yaml`` (pip
    dependencies = ``extra_deps``) and a README. ``drop`` names files to leave out; tests
    alter or remove entries of the returned dict as they need."""
    conda = {
        "name": f"flops-{flavor}-example",
        "channels": ["conda-forge"],
        "dependencies": ["python=3.11", "pip", {"pip": list(extra_deps)}],
    }
    files = {
        "model_manager.py": MODEL_MANAGER_PY.replace("{flavor}", flavor),
        "data_manager.py": DATA_MANAGER_PY,
        "conda.yaml": yaml.safe_dump(conda, sort_keys=False),
        "README.md": f"# Example FLOps ML repository ({flavor})\n",
    }
    dropped = [drop] if isinstance(drop, str) else list(drop or ())
    for name in dropped:
        files.pop(name, None)
    return files


# --------------------------------------------------------------------------------------------
# Docker resource bookkeeping (used by the docker_cleanup fixture)
# --------------------------------------------------------------------------------------------

BUILDER_LABEL = "flops.role=image-builder"
TEST_LABEL = "flops.test"
_PROJECT_LABELS = ("com.docker.compose.project", "com.docker.stack.namespace")


def _ids(cmd: Sequence[str]) -> set[str]:
    return set(run(cmd, timeout=60).stdout.split())


@dataclass
class DockerSnapshot:
    containers: set[str]
    networks: set[str]
    volumes: set[str]
    images: set[str]
    services: set[str]
    time: float

    @classmethod
    def take(cls) -> DockerSnapshot:
        return cls(
            containers=_ids(["docker", "ps", "-aq", "--no-trunc"]),
            networks=_ids(["docker", "network", "ls", "-q", "--no-trunc"]),
            volumes=_ids(["docker", "volume", "ls", "-q"]),
            images=_ids(["docker", "image", "ls", "-aq", "--no-trunc"]),
            services=_ids(["docker", "service", "ls", "-q"]) if swarm_manager() else set(),
            time=time.time(),
        )


def swarm_manager() -> bool:
    """Whether the engine is a swarm manager (so ``docker service`` works)."""
    proc = run(
        ["docker", "info", "--format", "{{.Swarm.ControlAvailable}}"], check=False, timeout=30
    )
    return proc.stdout.strip() == "true"


def _labelled(kind: str, label: str) -> set[str]:
    if kind == "container":
        return _ids(["docker", "ps", "-aq", "--no-trunc", "--filter", f"label={label}"])
    if kind == "network":
        return _ids(["docker", "network", "ls", "-q", "--no-trunc", "--filter", f"label={label}"])
    if kind == "service":
        return _ids(["docker", "service", "ls", "-q", "--filter", f"label={label}"])
    return _ids(["docker", "volume", "ls", "-q", "--filter", f"label={label}"])


def builder_projects_since(since: float, until: float) -> set[str]:
    """Compose project / stack names of builder containers created between the two times
    (from ``docker events``, so containers already removed count too)."""
    proc = run(
        [
            "docker",
            "events",
            "--since",
            f"{since:.3f}",
            "--until",
            f"{until:.3f}",
            "--filter",
            "type=container",
            "--filter",
            "event=create",
            "--filter",
            f"label={BUILDER_LABEL}",
            "--format",
            "{{json .Actor.Attributes}}",
        ],
        timeout=60,
        check=False,
    )
    projects: set[str] = set()
    for line in proc.stdout.splitlines():
        with contextlib.suppress(ValueError):
            attrs = json.loads(line)
            if isinstance(attrs, dict):
                projects.update(str(attrs[k]) for k in _PROJECT_LABELS if attrs.get(k))
    return projects


def leftover_resources(before: DockerSnapshot) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Containers, networks, volumes and swarm services created since ``before`` that are the
    builder's (label ``flops.role=image-builder``, or in a compose project / stack of a
    builder container) and those labelled ``flops.test``. Returns ``(builder, test)``, each kind ->
    ids."""
    after = DockerSnapshot.take()
    new = {
        "container": after.containers - before.containers,
        "network": after.networks - before.networks,
        "volume": after.volumes - before.volumes,
        "service": after.services - before.services,
    }
    builder: dict[str, set[str]] = {}
    test: dict[str, set[str]] = {}
    projects = builder_projects_since(before.time - 1, after.time + 1)
    for kind, ids in new.items():
        if not ids:
            continue
        b = _labelled(kind, BUILDER_LABEL)
        for project in projects:
            for key in _PROJECT_LABELS:
                b |= _labelled(kind, f"{key}={project}")
        builder[kind] = ids & b
        test[kind] = (ids & _labelled(kind, TEST_LABEL)) - builder[kind]
    return builder, test


def remove_resources(resources: Mapping[str, set[str]]) -> None:
    """Force-remove services and containers first, then networks and volumes."""
    if ids := sorted(resources.get("service", ())):
        run(["docker", "service", "rm", *ids], check=False, timeout=120)
        for sid in ids:  # their task containers go away asynchronously
            task_label = f"com.docker.swarm.service.id={sid}"

            def tasks_gone(label: str = task_label) -> bool:
                return not _labelled("container", label)

            with contextlib.suppress(TimeoutError):
                wait_until(tasks_gone, 30, 0.25, f"containers of service {sid} to go")
    if ids := sorted(resources.get("container", ())):
        run(["docker", "rm", "-f", "-v", *ids], check=False, timeout=120)
    if ids := sorted(resources.get("network", ())):
        run(["docker", "network", "rm", *ids], check=False, timeout=120)
    if ids := sorted(resources.get("volume", ())):
        run(["docker", "volume", "rm", "-f", *ids], check=False, timeout=120)
