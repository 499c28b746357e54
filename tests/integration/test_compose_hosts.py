"""The compose backend with an inventory of Docker hosts: the main engine, a second engine
over TCP in its own network namespace, and hosts that do not answer.

Where a builder ran is read from Docker: the engine that holds the built images is the one
that built them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import GitDaemon, RegistryServer, docker_image_exists, run

from integration.conftest import DockerCleanup
from integration.harness import MlFiles, Workspace, sla_text
from integration.swarm_bed import SecondEngine

IMAGE_BUILDER = ["image-builder"]
MAIN = {"name": "main", "docker_host": "unix:///var/run/docker.sock", "addons": IMAGE_BUILDER}


def dead_host(name: str, tmp_path: Path) -> dict[str, Any]:
    return {"name": name, "docker_host": f"unix://{tmp_path / f'{name}.sock'}",
            "addons": IMAGE_BUILDER}


@pytest.fixture
def busy_main_engine(base_image: str) -> Iterator[str]:
    """A running container that counts as a builder on the main engine."""
    container = run(["docker", "run", "-d", "--label", "flops.role=image-builder",
                     "--label", "flops.test=busy", base_image, "sleep", "600"]).stdout.strip()
    try:
        yield container
    finally:
        run(["docker", "rm", "-f", container], check=False)


def test_a_builder_goes_to_the_image_builder_host_with_fewest_running_builders(
    tmp_path: Path, second_engine: SecondEngine, testbed_registry: RegistryServer,
    testbed_git: GitDaemon, base_image: str, ml_files: MlFiles, docker_cleanup: DockerCleanup,
    busy_main_engine: str,
) -> None:
    docker_cleanup.add_image_prefix(testbed_registry.host)
    node_b = {"name": "b", "docker_host": second_engine.tcp_host, "addons": IMAGE_BUILDER}
    plain = {"name": "plain", "docker_host": "unix:///var/run/docker.sock"}  # no addon
    ws = Workspace(tmp_path / "ws", testbed_registry.url, base_image,
                   hosts=[plain, MAIN, node_b])
    first = testbed_git.make_ml_repo("owner/first", ml_files(marker="fewest: first"))
    ws.sla("first.yaml", sla_text(first.url))
    assert_ready(ws, "first", first.commit, testbed_registry)
    assert "on host b" in ws.log("first")
    learner = f"{testbed_registry.host}/owner/first/learner:{first.commit}"
    assert second_engine.has_image(learner), "the idle host b built the images"
    assert not docker_image_exists(learner), "the busy main engine did not"

    run(["docker", "rm", "-f", busy_main_engine])
    busy_b = second_engine.docker(
        "run", "-d", "--label", "flops.role=image-builder", base_image, "sleep", "600"
    ).stdout.strip()
    try:
        second = testbed_git.make_ml_repo("owner/second", ml_files(marker="fewest: second"))
        ws.sla("second.yaml", sla_text(second.url))
        assert_ready(ws, "second", second.commit, testbed_registry)
    finally:
        second_engine.docker("rm", "-f", busy_b, check=False)
    assert "on host main" in ws.log("second")
    learner = f"{testbed_registry.host}/owner/second/learner:{second.commit}"
    assert docker_image_exists(learner), "now the main engine is the idle one and builds"
    assert not second_engine.has_image(learner)


def test_a_host_reached_over_ssh_builds_there(
    tmp_path: Path, second_engine: SecondEngine, testbed_registry: RegistryServer,
    testbed_git: GitDaemon, base_image: str, ml_files: MlFiles, docker_cleanup: DockerCleanup,
) -> None:
    """``ssh://`` in [[hosts]]: Docker's own ssh transport to a real sshd on the second
    engine's host; compose, the builder and its image all live there."""
    docker_cleanup.add_image_prefix(testbed_registry.host)
    ssh = second_engine.start_sshd()
    over_ssh = {"name": "remote", "docker_host": ssh.docker_host, "addons": IMAGE_BUILDER}
    ws = Workspace(tmp_path / "ws", testbed_registry.url, base_image, hosts=[over_ssh],
                   env=ssh.env)
    doctor = ws.run("doctor")
    assert f"ok       image-builder host remote ({ssh.docker_host}): ready" in doctor.stdout
    repo = testbed_git.make_ml_repo("owner/by-ssh", ml_files(marker="over ssh"))
    ws.sla("by-ssh.yaml", sla_text(repo.url))
    assert_ready(ws, "by-ssh", repo.commit, testbed_registry)
    assert "on host remote" in ws.log("by-ssh")
    learner = f"{testbed_registry.host}/owner/by-ssh/learner:{repo.commit}"
    assert second_engine.has_image(learner)
    assert not docker_image_exists(learner)


def test_an_unreachable_host_is_skipped_with_a_warning(
    tmp_path: Path, registry: RegistryServer, git_remote: GitDaemon, base_image: str,
    ml_files: MlFiles, docker_cleanup: DockerCleanup,
) -> None:
    docker_cleanup.add_image_prefix(registry.host)
    ws = Workspace(tmp_path / "ws", registry.url, base_image,
                   hosts=[dead_host("gone", tmp_path), MAIN])
    repo = git_remote.make_ml_repo("owner/skip", ml_files(marker="skip the dead host"))
    ws.sla("skip.yaml", sla_text(repo.url))
    assert_ready(ws, "skip", repo.commit, registry)
    log = ws.log("skip")
    assert "WARN deploy image-builder host gone is unreachable and was skipped" in log
    assert "on host main" in log
    assert docker_image_exists(f"{registry.host}/owner/skip/learner:{repo.commit}")


def test_no_reachable_image_builder_host_is_a_clear_error(
    tmp_path: Path, registry: RegistryServer, git_remote: GitDaemon, base_image: str,
    ml_files: MlFiles, docker_cleanup: DockerCleanup,
) -> None:
    ws = Workspace(tmp_path / "ws", registry.url, base_image,
                   hosts=[dead_host("gone", tmp_path), dead_host("away", tmp_path)])
    repo = git_remote.make_ml_repo("owner/nowhere", ml_files(marker="nowhere to build"))
    ws.sla("nowhere.yaml", sla_text(repo.url))
    result = ws.run("apply", "--wait")
    assert result.code == 1
    error = ws.record("nowhere")["error"]
    assert error.startswith("infrastructure: no image-builder host is reachable: gone (")
    assert "; away (" in error and "fix docker_host in [[hosts]]" in error
    log = ws.log("nowhere")
    assert "image-builder host gone is unreachable" in log
    assert "image-builder host away is unreachable" in log


def test_doctor_lists_every_image_builder_host_and_whether_it_is_ready(
    tmp_path: Path, registry: RegistryServer, base_image: str, busy_main_engine: str,
) -> None:
    plain = {"name": "plain", "docker_host": "unix:///var/run/docker.sock"}  # no addon
    ws = Workspace(tmp_path / "ws", registry.url, base_image,
                   hosts=[plain, MAIN, dead_host("gone", tmp_path)])
    result = ws.run("doctor")
    assert result.code == 1, result.stdout
    lines = result.stdout.splitlines()
    main = next(line for line in lines if "image-builder host main" in line)
    assert main.startswith("ok ") and "ready" in main
    assert "1 builder(s) running" in main  # the busy container counts
    gone = next(line for line in lines if "image-builder host gone" in line)
    assert gone.startswith("problem ") and "not answering" in gone
    assert not any("host plain" in line for line in lines)  # not an image-builder host


def assert_ready(ws: Workspace, project: str, commit: str, registry: RegistryServer) -> None:
    result = ws.run("apply", "--wait")
    assert result.code == 0, result.stdout + result.stderr + ws.log(project)
    row = ws.status()[project]
    assert row["phase"] == "ready" and row["commit"] == commit
    for role in ("learner", "aggregator"):
        assert registry.manifest_exists(f"owner/{project}/{role}", commit)
