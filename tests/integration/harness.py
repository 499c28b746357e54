"""Driving the real `reconciler` command in a temporary workspace, and asking Docker about it.

Every call runs the installed program as a user would (a subprocess of `python -m
reconciler`), with its own desired dir, state dir and configuration file.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import RegistryServer, WaitAborted, wait_until

BUILDER_LABEL = "flops.role=image-builder"

# The set-up the end-to-end modules share: the signatures of the `publish` and `ml_files`
# fixtures (conftest.py), and the mark that removes the images a test pushed to the session's
# registry from the engine afterwards (``pytestmark = REMOVES_REGISTRY_IMAGES``).
Publish = Callable[..., tuple[str, str]]
MlFiles = Callable[..., dict[str, str]]
REMOVES_REGISTRY_IMAGES = pytest.mark.usefixtures("remove_registry_images")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


@dataclass
class Background:
    """A `reconciler` command running as a subprocess; its output goes to files."""

    process: subprocess.Popen[bytes]
    out: Path
    err: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        text = self.out.read_text(errors="replace") if self.out.exists() else ""
        err = self.err.read_text(errors="replace") if self.err.exists() else ""
        return f"--- stdout ---\n{text[-4000:]}\n--- stderr ---\n{err[-4000:]}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def check_alive(self) -> None:
        """For wait_until predicates: stop waiting at once when the command has exited."""
        if not self.alive():
            raise WaitAborted(f"the command exited with {self.process.returncode}:\n"
                              + self.output())

    def signal(self, signum: int, timeout: float = 60) -> int:
        """Send ``signum`` to this process (only it, by its pid) and wait for its exit."""
        if self.alive():
            self.process.send_signal(signum)
        return self.process.wait(timeout=timeout)

    def kill(self) -> int:
        """kill -9 of the reconciler process itself (its children are left alone, as in a
        real crash of the reconciler)."""
        return self.signal(signal.SIGKILL)


HOST_CA_BUNDLE = Path(os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
                      or "/etc/ssl/certs/ca-certificates.crt")


def ensure_test_runtime(base_image: str, platform: str | None = None) -> str:
    """The FL runtime image for ``base_image`` on the local engine, made as a builder makes
    it (the same rendered Dockerfile, the same key), from PyPI with the host's CA bundle.
    ``platform``: for that platform, not the engine's own (under emulation: slow once, then
    found in the engine like the native one)."""
    from reconciler.builder.engine import Engine
    from reconciler.builder.runtime import load_runtime
    from reconciler.builder.runtime_image import ensure_runtime_image
    from reconciler.core.render import make_environment, render_runtime_dockerfile
    from reconciler.edges.settings import template_dirs

    dockerfile = render_runtime_dockerfile(make_environment(template_dirs(None)),
                                           base_image=base_image)
    ca_bundle = HOST_CA_BUNDLE.read_text() if HOST_CA_BUNDLE.is_file() else ""
    ref, _built = ensure_runtime_image(Engine.from_env(), base_image, dockerfile,
                                       load_runtime(), ca_bundle=ca_bundle, network="host",
                                       platform=platform)
    return ref


@dataclass
class Workspace:
    root: Path
    registry: str  # "local" or a URL
    base_image: str
    hosts: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    options: list[str] = field(default_factory=list)  # global options, before the command
    env: dict[str, str] = field(default_factory=dict)  # added to the commands' environment
    # `[build]`: the host's CA bundle unless a test says otherwise (PyPI is reached only
    # through a gateway that bundle trusts: DESIGN §8)
    build: dict[str, str] = field(default_factory=lambda: {"ca_bundle": str(HOST_CA_BUNDLE)})
    platforms: dict[str, str] = field(default_factory=dict)  # `[images.platforms]`

    def __post_init__(self) -> None:
        self.desired.mkdir(parents=True, exist_ok=True)
        self.write_config()

    @property
    def desired(self) -> Path:
        return self.root / "desired"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def config(self) -> Path:
        return self.root / "reconciler.toml"

    def write_config(self) -> None:
        lines = [
            f'registry = "{self.registry}"',
            "allow_file_repos = true",
            *([] if "build_timeout" in self.extra else ['build_timeout = "10m"']),
            *(f"{key} = {json.dumps(value)}" for key, value in self.extra.items()),
            "[builder]",
            f'base_image = "{self.base_image}"',
            "[images]",
            f'base_image = "{self.base_image}"',
            "[build]",
            *(f"{key} = {json.dumps(value)}" for key, value in self.build.items()),
            *(["[images.platforms]"] if self.platforms else []),
            *(f"{json.dumps(key)} = {json.dumps(value)}" for key, value in self.platforms.items()),
        ]
        for host in self.hosts or []:
            lines += ["[[hosts]]", *(f"{k} = {json.dumps(v)}" for k, v in host.items())]
        self.config.write_text("\n".join(lines) + "\n")

    def sla(self, name: str, text: str) -> Path:
        """Write an SLA file atomically (a hidden temp file, then a rename), so a watching
        reconciler never reads it half-written."""
        path = self.desired / name
        temp = path.with_name(f".{path.name}.tmp")
        temp.write_text(text)
        os.replace(temp, path)
        return path

    def command(self, *args: str, options: Sequence[str] = ()) -> list[str]:
        return [
            sys.executable, "-m", "reconciler",
            "--desired", str(self.desired), "--state", str(self.state),
            "--config", str(self.config), *self.options, *options, *args,
        ]

    def run(self, *args: str, timeout: float = 600, options: Sequence[str] = ()) -> Result:
        """Run a command to its end; ``options`` are global options (before the command)."""
        done = subprocess.run(self.command(*args, options=options), capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, **self.env})
        return Result(done.returncode, done.stdout, done.stderr)

    def start(self, *args: str, options: Sequence[str] = ()) -> Background:
        """Start a command in the background; stdout and stderr go to files in ``root``."""
        n = len(list(self.root.glob("bg-*.out")))
        out, err = self.root / f"bg-{n}.out", self.root / f"bg-{n}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(self.command(*args, options=options), stdout=stdout,
                                       stderr=stderr, stdin=subprocess.DEVNULL,
                                       env={**os.environ, **self.env})
        return Background(process, out, err)

    @contextlib.contextmanager
    def watching(self, timeout: float = 30) -> Iterator[Background]:
        """`reconciler watch` in the background for the ``with`` block; at its end SIGTERM,
        which must stop it with exit status 0."""
        watch = self.start("watch")
        try:
            def started() -> bool:
                watch.check_alive()
                return "watching " in watch.output()

            wait_until(started, timeout, 0.05, lambda: "watch did not start:\n" + watch.output())
            yield watch
        except BaseException:
            if watch.alive():
                watch.kill()
            raise
        code = watch.signal(signal.SIGTERM)
        assert code == 0, f"watch exited with {code} on SIGTERM\n{watch.output()}"

    def record(self, project: str) -> dict[str, Any]:
        """The recorded state of a project, as the state file holds it."""
        data: dict[str, Any] = json.loads(
            (self.state / "projects" / f"{project}.json").read_text())
        return data

    def wait_row(
        self,
        project: str,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 120,
        what: str = "the expected status",
        process: Background | None = None,
    ) -> dict[str, Any]:
        """Poll `status --json` until ``project``'s row satisfies ``predicate``; return it.
        With ``process``, stop waiting as soon as that background command has exited."""
        last: dict[str, Any] = {}

        def check() -> dict[str, Any]:
            nonlocal last
            if process is not None:
                process.check_alive()
            row = self.status().get(project)
            last = row or {}
            return row if row is not None and predicate(row) else {}

        def message() -> str:
            text = f"{project}: {what}; last row {json.dumps(last)}"
            with contextlib.suppress(FileNotFoundError):
                text += "\n--- observer log ---\n" + self.log(project)[-4000:]
            return text + ("\n" + process.output() if process is not None else "")

        found: dict[str, Any] = wait_until(check, timeout, 0.2, message)
        return found

    def status(self) -> dict[str, dict[str, Any]]:
        result = self.run("status", "--json")
        assert result.code == 0, result.stderr
        return {row["project"]: row for row in json.loads(result.stdout)}

    def log(self, project: str) -> str:
        return (self.state / "observers" / f"{project}.log").read_text()


def kill_apply_in_round_two(ws: Workspace, project: str) -> None:
    """``apply --wait`` started and killed (SIGKILL) once round 1 of the project's run is in
    its log (the learners hold round 2: actors_support.held_in_round_two)."""
    first = ws.start("apply", "--wait")
    try:
        def round_one_logged() -> bool:
            first.check_alive()
            return "train round 1/2" in ws.log(project)

        wait_until(round_one_logged, 900, 0.05,
                   lambda: "round 1 not reached\n" + first.output())
        assert first.kill() == -9
    finally:
        if first.alive():
            first.kill()


def apply_after_release(ws: Workspace, project: str, release: Callable[[], object]) -> None:
    """A new ``apply --wait``; ``release()`` lets the held round go on; it must succeed."""
    second = ws.start("apply", "--wait")
    try:
        release()
        assert second.process.wait(timeout=600) == 0, second.output() + ws.log(project)
    finally:
        if second.alive():
            second.kill()


def sla_text(url: str, *, flavor: str = "sklearn", extra: str = "") -> str:
    return f"ml_repo_url: {json.dumps(url)}\nml_model_flavor: {flavor}\n{extra}"


def docker(*args: str, timeout: float | None = 600) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=True,
                          timeout=timeout)
    return done.stdout


def builder_leftovers() -> list[str]:
    """Containers, networks and volumes of builders that still exist."""
    found = []
    for kind in ("container", "network", "volume"):
        extra = ["--all"] if kind == "container" else []
        out = docker(kind, "ls", *extra, "--quiet", "--filter", f"label={BUILDER_LABEL}")
        found += [f"{kind} {line}" for line in out.split()]
    networks = docker("network", "ls", "--format", "{{.Name}}").split()
    found += [f"network {name}" for name in networks if name.startswith("flops-build-")]
    return found


def clear_leftovers_of_killed_runs() -> None:
    """Remove the builders, actors and servers an earlier run on this engine left behind when
    it was killed (a session that ended mid-benchmark, a cancelled CI job): the suite checks
    that *it* leaves none, so it starts from none. Nothing of ours runs at session start."""
    labels = (BUILDER_LABEL, "flops.run", "flops.serving", "flops.role=data-probe")
    stale = {line for label in labels
             for line in docker("container", "ls", "--all", "--quiet", "--filter",
                                f"label={label}").split()}
    if stale:
        subprocess.run(["docker", "rm", "--force", "--volumes", *sorted(stale)],
                       capture_output=True, check=False)
    networks = [name for name in docker("network", "ls", "--format", "{{.Name}}").split()
                if name.startswith(("flops-build-", "flops-train-"))]
    if networks:
        subprocess.run(["docker", "network", "rm", *networks], capture_output=True, check=False)


def builders_created(since: str, until: str) -> list[str]:
    """Names of builder containers Docker created in [since, until] (its own event log)."""
    out = docker(
        "events", "--since", since, "--until", until, "--format", "{{json .}}",
        "--filter", "type=container", "--filter", "event=create",
        "--filter", f"label={BUILDER_LABEL}",
    )
    return [json.loads(line)["Actor"]["Attributes"]["name"] for line in out.splitlines() if line]


def docker_now() -> str:
    """The engine's clock, as `docker events` wants it."""
    return docker("info", "--format", "{{.SystemTime}}").strip()


def image_labels_in_registry(registry_url: str, ref: str) -> dict[str, str]:
    """The labels of an image, read from the registry's manifest and config blob."""
    host_and_path, _, tag = ref.rpartition(":")
    name = host_and_path.split("/", 1)[1]
    accept = "application/vnd.docker.distribution.manifest.v2+json"
    with httpx.Client(base_url=registry_url, timeout=10) as client:
        manifest = client.get(f"/v2/{name}/manifests/{tag}", headers={"Accept": accept})
        manifest.raise_for_status()
        digest = manifest.json()["config"]["digest"]
        config = client.get(f"/v2/{name}/blobs/{digest}")
        config.raise_for_status()
    labels: dict[str, str] = config.json()["config"].get("Labels") or {}
    return labels


class BuildGate:
    """An HTTP endpoint on loopback that a build step waits on (see :func:`held_templates`):
    it answers 503 until the test calls :meth:`release`, then 200. So a test holds a builder
    at a known step for exactly as long as it needs, on a loaded machine as on an idle one.
    ``reached`` is set when a build step first asked."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.reached = threading.Event()
        gate = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                gate.reached.set()
                self.send_response(200 if gate.released.is_set() else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/gate"

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()  # a builder still waiting goes on and ends
        self._server.shutdown()
        self._server.server_close()


def held_templates(directory: Path, gate: BuildGate, token: str) -> Path:
    """A --templates directory with a copy of the shipped Dockerfile.actor.j2 whose first step
    after FROM waits until ``gate`` is released (the build's RUN steps share the host's
    network). ``token`` makes the step unique, so Docker's build cache never skips it."""
    from reconciler.edges.settings import template_dirs

    source = next(d / "Dockerfile.actor.j2" for d in template_dirs(None)
                  if (d / "Dockerfile.actor.j2").exists())
    lines = source.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith("FROM "))
    probe = f"import urllib.request as u; u.urlopen('{gate.url}/{token}', timeout=5)"
    lines.insert(at + 1, f'RUN until python3 -c "{probe}" 2>/dev/null; do sleep 0.1; done\n')
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Dockerfile.actor.j2").write_text("".join(lines))
    return directory


@dataclass(frozen=True)
class ContainerEvent:
    at: float  # seconds since the epoch, from Docker's timeNano
    action: str  # create, start, die, destroy, ...
    name: str
    role: str = ""  # the container's flops.role label


class BuilderEvents:
    """Docker's events for builder containers, recorded from the start of a test by a
    `docker events` stream (the engine keeps only its last 256 events, so a query at the end
    of a busy test may miss the early ones). Use :meth:`recording`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    @contextlib.contextmanager
    def recording(cls, path: Path, label: str = BUILDER_LABEL,
                  docker_host: str | None = None) -> Iterator[BuilderEvents]:
        """Record the events of containers carrying ``label`` (default: builders), on the
        main engine or the one at ``docker_host`` (the engines share this machine's clock)."""
        since = docker_now()
        engine = ["-H", docker_host] if docker_host else []
        with path.open("wb") as out:
            process = subprocess.Popen(
                ["docker", *engine, "events", "--since", since, "--format", "{{json .}}",
                 "--filter", "type=container", "--filter", f"label={label}"],
                stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            )
        try:
            yield cls(path)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def events(self, project: str, after: float = 0.0) -> list[ContainerEvent]:
        """Events of the builder containers of ``project`` (label ``flops.project``) at or
        after ``after`` (seconds since the epoch), oldest first."""
        found = []
        for line in self.path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line being written
            attributes = event["Actor"]["Attributes"]
            at = event["timeNano"] / 1e9
            if attributes.get("flops.project") == project and at >= after:
                found.append(ContainerEvent(at, event["Action"], attributes["name"],
                                            attributes.get("flops.role", "")))
        return sorted(found, key=lambda e: e.at)

    def created(self, project: str, after: float = 0.0) -> list[str]:
        """Names of the builder containers Docker created for ``project`` since ``after``."""
        return [e.name for e in self.events(project, after) if e.action == "create"]


def builder_containers(project: str) -> list[str]:
    """Ids of the builder containers of ``project`` that exist now (any state)."""
    out = docker("ps", "--all", "--quiet", "--no-trunc", "--filter", f"label={BUILDER_LABEL}",
                 "--filter", f"label=flops.project={project}")
    return out.split()


def manifest_exists(registry_url: str, ref: str) -> bool:
    """HEAD /v2/<name>/manifests/<tag> of a full image reference in the registry."""
    host_and_path, _, tag = ref.rpartition(":")
    name = host_and_path.split("/", 1)[1]
    accept = "application/vnd.docker.distribution.manifest.v2+json"
    response = httpx.head(f"{registry_url}/v2/{name}/manifests/{tag}",
                          headers={"Accept": accept}, timeout=10)
    if response.status_code not in (200, 404):
        response.raise_for_status()
    return response.status_code == 200


def start_registry_on(root: Path, port: int) -> RegistryServer:
    """A real registry v2 server (the one the `registry` fixture runs) on a chosen port."""
    binary = shutil.which("docker-registry")
    assert binary is not None, "docker-registry is not installed"
    server = RegistryServer(root=root, port=port)
    server._spawn(binary)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


class PackageIndex:
    """A PEP 503 "simple" package index served over loopback HTTP from a directory, holding
    pure-Python wheels written by hand (a zip with dist-info): no build tool, no network."""

    def __init__(self, root: Path, url: str) -> None:
        self.root = root
        self.url = url

    def add(self, name: str, version: str, modules: dict[str, str] | None = None) -> None:
        """Publish ``name==version``; ``modules`` maps module names to their source (default:
        one module named after the package that knows its version)."""
        module = name.replace("-", "_")
        modules = modules or {module: f'VERSION = "{version}"\n'}
        dist = f"{module}-{version}.dist-info"
        files = {f"{m}/__init__.py": code for m, code in modules.items()}
        files[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        files[f"{dist}/WHEEL"] = ("Wheel-Version: 1.0\nGenerator: flops-tests\n"
                                  "Root-Is-Purelib: true\nTag: py3-none-any\n")
        record = [f"{path},sha256={_sha256(text)},{len(text.encode())}"
                  for path, text in files.items()]
        files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
        project = self.root / "simple" / _normalized(name)
        project.mkdir(parents=True, exist_ok=True)
        wheel = project / f"{module}-{version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            for path, text in files.items():
                archive.writestr(path, text)
        links = "".join(f'<a href="{w.name}">{w.name}</a>\n' for w in sorted(project.glob("*.whl")))
        (project / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")
        names = sorted(d.name for d in (self.root / "simple").iterdir() if d.is_dir())
        (self.root / "simple" / "index.html").write_text(
            "<html><body>\n" + "".join(f'<a href="{n}/">{n}</a>\n' for n in names)
            + "</body></html>\n")


def _sha256(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def assert_failed_before_building(ws: Workspace, project: str, registry_url: str) -> None:
    """The project's dependency error is logged and nothing was built or pushed."""
    log = ws.log(project)
    assert " ERROR dependencies dependencies: conda.yaml:" in log
    assert " INFO build:learner started" not in log
    images = ws.record(project)["images"]
    assert images and not any(manifest_exists(registry_url, ref) for ref in images.values())


def assert_check_repo_agrees(ws: Workspace, url: str, error: str) -> dict[str, Any]:
    """`check-repo` with the workspace's configuration gives the builder's verdict, word for
    word (category: file:line: message; hint); returns the JSON verdict."""
    checked = ws.run("check-repo", url, "--json")
    assert checked.code == 1, checked.stdout + checked.stderr
    verdict: dict[str, Any] = json.loads(checked.stdout)
    assert not verdict["ok"] and verdict["stage"] == "dependencies"
    [problem] = verdict["problems"]
    assert (f"{problem['category']}: {problem['file']}:{problem['line']}: "
            f"{problem['message']}; {problem['hint']}") == error
    return verdict
