"""A second Docker engine on this machine, in its own network namespace, for the multi-host
and swarm tests (DESIGN §8).

Decision: the second engine also gets its own mount namespace, in which ``/run`` is a
directory of the test's. So ``/var/run/docker.sock`` seen by that engine (and by any builder
container it starts, which mounts exactly that path) is its own socket, as on a real second
machine; from here it is reachable at ``<root>/run/docker.sock`` and over TCP on its address.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from support import free_port, run, wait_until

TESTBED_SUBNET = "10.231.0.0/16"  # scripts/setup.sh makes the main engine trust it (HTTP)
NODE_HOSTNAME = "flops-node-b"


def _used_subnets() -> set[int]:
    text = run(["ip", "-o", "-4", "addr", "show"], timeout=30).stdout
    return {int(part.split(".")[2]) for part in text.split() if part.startswith("10.231.")}


def main_engine_trusts_testbed() -> str | None:
    """None when the main engine treats the test-bed subnet as an HTTP registry network,
    else what is wrong."""
    proc = run(["docker", "info", "--format", "{{json .RegistryConfig.InsecureRegistryCIDRs}}"],
               check=False, timeout=30)
    if TESTBED_SUBNET not in proc.stdout:
        return (f"the Docker engine does not list {TESTBED_SUBNET} as an insecure registry "
                "network (scripts/setup.sh writes it to /etc/docker/daemon.json)")
    return None


@dataclass
class SecondEngine:
    """``dockerd`` in network namespace ``netns``: the main side of its veth pair is
    ``host_addr`` (where test servers listen), the engine's side is ``addr``."""

    root: Path
    netns: str
    host_addr: str
    addr: str
    tcp_port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    sshd: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    ssh_access: SshAccess | None = None

    @property
    def veth(self) -> str:
        return f"{self.netns}a"[-15:]

    @property
    def docker_host(self) -> str:
        return f"unix://{self.root / 'run' / 'docker.sock'}"

    @property
    def tcp_host(self) -> str:
        return f"tcp://{self.addr}:{self.tcp_port}"

    @classmethod
    def start(cls, root: Path, *, timeout: float = 90.0) -> SecondEngine:
        subnet = min(set(range(10, 250)) - _used_subnets())
        engine = cls(root=root, netns=f"flops-t{subnet}", host_addr=f"10.231.{subnet}.1",
                     addr=f"10.231.{subnet}.2", tcp_port=free_port())
        try:
            engine._network()
            engine._daemon()
            wait_until(engine._answers, timeout, 0.2, "the second Docker engine to answer")
        except BaseException:
            engine.stop()
            raise
        return engine

    def _network(self) -> None:
        peer = f"{self.netns}b"[-15:]
        for cmd in (
            ["ip", "netns", "add", self.netns],
            ["ip", "link", "add", self.veth, "type", "veth", "peer", "name", peer],
            ["ip", "link", "set", peer, "netns", self.netns],
            ["ip", "addr", "add", f"{self.host_addr}/24", "dev", self.veth],
            ["ip", "link", "set", self.veth, "up"],
            ["ip", "-n", self.netns, "addr", "add", f"{self.addr}/24", "dev", peer],
            ["ip", "-n", self.netns, "link", "set", peer, "up"],
            ["ip", "-n", self.netns, "link", "set", "lo", "up"],
        ):
            run(cmd, timeout=30)

    def _daemon(self) -> None:
        (self.root / "run").mkdir(parents=True, exist_ok=True)
        config = self.root / "daemon.json"
        config.write_text(json.dumps({"insecure-registries": [TESTBED_SUBNET]}))
        dockerd = [
            "dockerd", "--config-file", str(config), "--data-root", str(self.root / "data"),
            "--exec-root", "/run/docker", "--pidfile", "/run/docker.pid",
            "--cgroup-parent", f"/{self.netns}",
            "-H", "unix:///run/docker.sock", "-H", f"tcp://{self.addr}:{self.tcp_port}",
        ]
        # nsenter --net, not `ip netns exec`, which would hide the cgroup mounts (DESIGN §8).
        script = (f"hostname {NODE_HOSTNAME} && mount --bind {self.root / 'run'} /run && "
                  'exec "$@"')
        log = (self.root / "dockerd.log").open("ab")
        self.process = subprocess.Popen(
            ["nsenter", f"--net=/var/run/netns/{self.netns}", "unshare", "--mount", "--uts",
             "--propagation", "private", "sh", "-c", script, "sh", *dockerd],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            tail = (self.root / "dockerd.log").read_text(errors="replace")[-1500:]
            raise RuntimeError(f"the second dockerd exited: {tail}")
        return self.docker("info", "--format", "{{.ID}}", check=False).returncode == 0

    def docker(self, *args: str, check: bool = True,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run(["docker", "-H", self.docker_host, *args], check=check, timeout=timeout)

    def load_images(self, refs: Sequence[str]) -> None:
        """``docker save | docker -H ... load``: nothing can be pulled on this machine."""
        save = subprocess.Popen(["docker", "save", *refs], stdout=subprocess.PIPE)
        load = subprocess.run(["docker", "-H", self.docker_host, "load", "-q"],
                              stdin=save.stdout, capture_output=True, timeout=600, check=False)
        assert save.stdout is not None
        save.stdout.close()
        if save.wait(timeout=600) != 0 or load.returncode != 0:
            raise RuntimeError(f"loading {refs} into the second engine failed: {load.stderr!r}")

    def start_sshd(self) -> SshAccess:
        """An ``sshd`` in the engine's namespaces (so a session's ``docker`` reaches this
        engine at /var/run/docker.sock, as on a real host), with a key of its own; returns
        how to log in: the ``ssh://`` Docker host and a PATH entry whose ``ssh`` uses the
        test's keys and known hosts."""
        if self.ssh_access is not None:
            return self.ssh_access
        ssh = self.root / "ssh"
        ssh.mkdir()
        port = free_port(self.host_addr)
        for key in ("host_key", "client_key"):
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh / key)])
        (ssh / "authorized_keys").write_text((ssh / "client_key.pub").read_text())
        (ssh / "known_hosts").write_text(
            f"[{self.addr}]:{port} {(ssh / 'host_key.pub').read_text()}")
        (ssh / "sshd_config").write_text("\n".join([
            f"ListenAddress {self.addr}:{port}", f"HostKey {ssh / 'host_key'}",
            f"AuthorizedKeysFile {ssh / 'authorized_keys'}", "PermitRootLogin prohibit-password",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
            "StrictModes no", f"PidFile {ssh / 'sshd.pid'}", ""]))
        (ssh / "client_config").write_text("\n".join([
            f"Host {self.addr}", "  User root", f"  IdentityFile {ssh / 'client_key'}",
            "  IdentitiesOnly yes", f"  UserKnownHostsFile {ssh / 'known_hosts'}",
            "  StrictHostKeyChecking yes", "  BatchMode yes", ""]))
        shim = ssh / "bin"
        shim.mkdir()
        (shim / "ssh").write_text(
            f'#!/bin/sh\nexec /usr/bin/ssh -F {ssh / "client_config"} "$@"\n')
        (shim / "ssh").chmod(0o755)
        (self.root / "run" / "sshd").mkdir(exist_ok=True)  # privilege separation dir
        assert self.process is not None
        self.sshd = subprocess.Popen(
            ["nsenter", f"--target={self.process.pid}", "--net", "--mount", "--uts",
             "/usr/sbin/sshd", "-D", "-e", "-f", str(ssh / "sshd_config")],
            stdout=(ssh / "sshd.log").open("ab"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        access = self.ssh_access = SshAccess(f"ssh://root@{self.addr}:{port}", str(shim))
        wait_until(lambda: access.docker("info", check=False).returncode == 0, 60, 0.2,
                   lambda: "sshd did not let docker in: "
                   + (ssh / "sshd.log").read_text(errors="replace")[-1500:])
        return access

    def has_image(self, ref: str) -> bool:
        return self.docker("image", "inspect", ref, check=False).returncode == 0

    def stop(self) -> None:
        """Stop the daemon (its containers die with its namespaces), then remove the
        namespace, the veth pair and the daemon's files."""
        if self.sshd is not None and self.sshd.poll() is None:
            self.sshd.terminate()
            self.sshd.wait(timeout=30)
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(Exception):
                self.docker("swarm", "leave", "--force", check=False, timeout=60)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        run(["ip", "link", "del", self.veth], check=False, timeout=30)
        run(["ip", "netns", "del", self.netns], check=False, timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass(frozen=True)
class SshAccess:
    """``docker_host``: ``ssh://root@ADDR:PORT``; ``path``: put first on PATH, so the
    ``ssh`` that Docker runs uses the test's key and known hosts."""

    docker_host: str
    path: str

    @property
    def env(self) -> dict[str, str]:
        return {"PATH": f"{self.path}:{os.environ['PATH']}"}

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["docker", "-H", self.docker_host, *args], check=check, env=self.env,
                   timeout=60)


@dataclass
class Swarm:
    """The main engine as the manager (node A), optionally with the second engine as a
    worker (node B)."""

    node_a: str
    node_b: str | None = None

    @classmethod
    @contextlib.contextmanager
    def formed(cls, advertise: str, worker: SecondEngine | None = None) -> Iterator[Swarm]:
        state = run(["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"], timeout=30)
        if state.stdout.strip() != "inactive":
            raise RuntimeError("the main engine is in a swarm already; "
                               "`docker swarm leave --force` it first")
        try:
            run(["docker", "swarm", "init", "--advertise-addr", advertise,
                 "--listen-addr", f"{advertise}:2377"], timeout=60)
            swarm = cls(node_a=_node_id(["docker"]))
            if worker is not None:
                token = run(["docker", "swarm", "join-token", "-q", "worker"]).stdout.strip()
                worker.docker("swarm", "join", "--token", token, "--advertise-addr",
                              worker.addr, "--listen-addr", f"{worker.addr}:2377",
                              f"{advertise}:2377", timeout=60)
                swarm.node_b = _node_id(["docker", "-H", worker.docker_host])
                wait_until(lambda: swarm._ready(swarm.node_b), 60, 0.2, "node B to be ready")
            yield swarm
        finally:
            if worker is not None:
                worker.docker("swarm", "leave", "--force", check=False, timeout=60)
            run(["docker", "swarm", "leave", "--force"], check=False, timeout=60)

    def label(self, node: str, present: bool) -> None:
        change = ["--label-add", "image-builder=true"] if present else \
            ["--label-rm", "image-builder"]
        if present or "image-builder" in self.labels(node):
            run(["docker", "node", "update", *change, node], timeout=60)

    def labels(self, node: str) -> dict[str, str]:
        text = run(["docker", "node", "inspect", node, "--format", "{{json .Spec.Labels}}"])
        return json.loads(text.stdout) or {}

    def _ready(self, node: str | None) -> bool:
        text = run(["docker", "node", "inspect", str(node), "--format", "{{.Status.State}}"],
                   check=False).stdout
        return text.strip() == "ready"

    def stacks(self) -> list[str]:
        return run(["docker", "stack", "ls", "--format", "{{.Name}}"]).stdout.split()


def _node_id(docker: list[str]) -> str:
    return run([*docker, "info", "--format", "{{.Swarm.NodeID}}"], timeout=30).stdout.strip()
