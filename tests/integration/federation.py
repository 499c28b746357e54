"""Running FL-actor images as the README says to, for the federation tests: the compose file
examples/federation/compose.yaml (one aggregator, two learners, a network of their own), or
single actor containers; their stdout events read back from Docker.

Every container and network made here carries the label ``flops.test`` or is removed by
``down``/``remove``, so the leftover check of ``docker_cleanup`` sees nothing of them.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from integration.harness import docker

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "examples" / "federation" / "compose.yaml"
Event = dict[str, Any]


def events_in(text: str) -> list[Event]:
    """The JSON events of an actor's output (other lines are not events)."""
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict) and "type" in value:
                found.append(value)
    return found


@dataclass
class Federation:
    """One compose project of examples/federation/compose.yaml."""

    name: str
    env: dict[str, str]

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "compose", "-f", str(COMPOSE_FILE), "-p", self.name, *args],
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", **self.env}, capture_output=True,
            text=True, timeout=timeout, check=False)

    def run(self, timeout: float = 600) -> None:
        """`docker compose up`, attached: returns once every container has ended."""
        done = self.compose("up", "--no-color", timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"docker compose up failed ({done.returncode}):\n"
                                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")

    def exit_codes(self) -> dict[str, int]:
        listed = self.compose("ps", "-a", "--format", "json").stdout
        rows = [json.loads(line) for line in listed.splitlines() if line.strip()]
        return {row["Service"]: int(row["ExitCode"]) for row in rows}

    def events(self, service: str) -> list[Event]:
        return events_in(self.compose("logs", "--no-color", "--no-log-prefix", service).stdout)

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", timeout=120)

    def containers(self) -> list[str]:
        return self.compose("ps", "-a", "-q").stdout.split()


@dataclass
class Actor:
    """One actor container run alone (`docker run`, labelled flops.test), for the bad
    cases: it is started detached, waited for, and its output and status read back."""

    image: str
    env: dict[str, str]
    mounts: list[str] = field(default_factory=list)
    network: str = "host"
    name: str = ""  # the container's name: its host name on a user-defined network
    container: str = ""

    def start(self) -> Actor:
        args = ["run", "-d", "--label", "flops.test=federation", "--network", self.network]
        if self.name:
            args += ["--name", self.name]
        for key, value in self.env.items():
            args += ["-e", f"{key}={value}"]
        for mount in self.mounts:
            args += ["-v", mount]
        self.container = docker(*args, self.image).strip()
        return self

    def output(self) -> str:
        return docker("logs", self.container)

    def wait(self, timeout: float = 300) -> int:
        return int(docker("wait", self.container, timeout=timeout).strip())

    def remove(self) -> None:
        if self.container:
            subprocess.run(["docker", "rm", "-f", self.container], capture_output=True,
                           check=False)
