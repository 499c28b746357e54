"""Driving the real `reconciler` command in a temporary workspace, and asking Docker about it.

Every call runs the installed program as a user would (a subprocess of `python -m
reconciler`), with its own desired dir, state dir and configuration file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BUILDER_LABEL = "flops.role=image-builder"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


@dataclass
class Workspace:
    root: Path
    registry: str  # "local" or a URL
    base_image: str
    hosts: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

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
            'build_timeout = "10m"',
            *(f"{key} = {json.dumps(value)}" for key, value in self.extra.items()),
            "[builder]",
            f'base_image = "{self.base_image}"',
            "[images]",
            f'base_image = "{self.base_image}"',
        ]
        for host in self.hosts or []:
            lines += ["[[hosts]]", *(f"{k} = {json.dumps(v)}" for k, v in host.items())]
        self.config.write_text("\n".join(lines) + "\n")

    def sla(self, name: str, text: str) -> Path:
        path = self.desired / name
        path.write_text(text)
        return path

    def run(self, *args: str, timeout: float = 600) -> Result:
        command = [
            sys.executable, "-m", "reconciler",
            "--desired", str(self.desired), "--state", str(self.state),
            "--config", str(self.config), *args,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        return Result(done.returncode, done.stdout, done.stderr)

    def status(self) -> dict[str, dict[str, Any]]:
        result = self.run("status", "--json")
        assert result.code == 0, result.stderr
        return {row["project"]: row for row in json.loads(result.stdout)}

    def log(self, project: str) -> str:
        return (self.state / "observers" / f"{project}.log").read_text()


def sla_text(url: str, *, flavor: str = "sklearn", extra: str = "") -> str:
    return f"ml_repo_url: {json.dumps(url)}\nml_model_flavor: {flavor}\n{extra}"


def docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=True)
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
