"""The swarm backend on real swarms: builders go only to nodes labelled image-builder=true.

A single-node swarm (the main engine) and a two-node swarm (the main engine as manager A, a
second engine in its own network namespace as worker B, DESIGN §8). Where a builder ran is
read from Docker (the task's node, which engine holds the built images), not only from the
reconciler's log.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from support import GitDaemon, RegistryServer, docker_image_exists, run, wait_until

from integration.conftest import DockerCleanup
from integration.harness import MlFiles, Workspace, sla_text
from integration.swarm_bed import SecondEngine, Swarm

BUILDER = "label=flops.role=image-builder"
SWARM = {"backend": "swarm", "retry_base": "1s", "retry_cap": "2s"}


def wait_no_stack(swarm: Swarm, *engines: SecondEngine) -> None:
    """No builder stack is left, and the swarm has removed their task containers (it does
    that in the background after `docker stack rm`) on every node."""
    def gone() -> bool:
        containers = [run(["docker", *engine, "ps", "-aq", "--filter", BUILDER]).stdout
                      for engine in [[], *(["-H", e.docker_host] for e in engines)]]
        return swarm.stacks() == [] and not "".join(containers).strip()

    wait_until(gone, 60, 0.2, "the builder stacks and their containers to be removed")


def test_single_node_swarm_fails_without_the_label_and_builds_once_it_is_added(
    tmp_path: Path, registry: RegistryServer, base_image: str, git_remote: GitDaemon,
    ml_files: MlFiles, docker_cleanup: DockerCleanup,
) -> None:
    docker_cleanup.add_image_prefix(registry.host)
    repo = git_remote.make_ml_repo("owner/solo", ml_files(marker="solo swarm"))
    ws = Workspace(tmp_path / "ws", registry.url, base_image,
                   extra={**SWARM, "placement_timeout": "3s"})
    ws.sla("solo.yaml", sla_text(repo.url))
    with Swarm.formed("127.0.0.1") as swarm:
        doctor = ws.run("doctor")
        assert doctor.code == 1, doctor.stdout
        assert "problem  image-builder nodes: no ready, active node is labelled" in doctor.stdout
        assert f"({swarm.node_a}): not an image-builder" in doctor.stdout

        result = ws.run("apply", "--wait")
        assert result.code == 1, result.stdout + result.stderr
        record = ws.record("solo")
        assert record["phase"] == "failed"
        assert record["error"].startswith("infrastructure: no image-builder node")
        assert "scheduling constraints not satisfied" in record["error"]  # the swarm's reason
        assert "placement_timeout (3s)" in record["error"]
        assert "no image-builder node" in ws.log("solo")
        wait_no_stack(swarm)

        with ws.watching() as watch:
            swarm.label(swarm.node_a, present=True)
            doctor = ws.run("doctor")
            assert "ok       image-builder nodes: 1 of 1 node(s) ready" in doctor.stdout
            assert f"({swarm.node_a}): ready" in doctor.stdout
            row = ws.wait_row("solo", lambda r: r["phase"] == "ready", timeout=300,
                              what="ready once the node is labelled", process=watch)
        assert row["commit"] == repo.commit
        for role in ("learner", "aggregator"):
            assert registry.manifest_exists(f"owner/solo/{role}", repo.commit)
        assert f"builder task placed on node {swarm.node_a}" in ws.log("solo")
        wait_no_stack(swarm)


def test_two_node_swarm_builds_only_on_the_labelled_node(
    tmp_path: Path, second_engine: SecondEngine, testbed_registry: RegistryServer,
    testbed_git: GitDaemon, base_image: str, ml_files: MlFiles, docker_cleanup: DockerCleanup,
) -> None:
    docker_cleanup.add_image_prefix(testbed_registry.host)
    first = testbed_git.make_ml_repo("owner/on-b", ml_files(marker="two nodes, B"))
    second = testbed_git.make_ml_repo("owner/on-a", ml_files(marker="two nodes, A"))
    ws = Workspace(tmp_path / "ws", testbed_registry.url, base_image,
                   extra={**SWARM, "placement_timeout": "60s"})
    with Swarm.formed(second_engine.host_addr, worker=second_engine) as swarm:
        assert swarm.node_b is not None and swarm.node_b != swarm.node_a
        swarm.label(swarm.node_b, present=True)

        ws.sla("on-b.yaml", sla_text(first.url))
        since = time.time()
        assert_built(ws, "on-b", first.commit, testbed_registry)
        # Docker's own event logs: the builder's task container was created on B only.
        assert created(["-H", second_engine.docker_host], "on-b", since)
        assert not created([], "on-b", since)
        log = ws.log("on-b")
        assert f"builder task placed on node {swarm.node_b} (flops-node-b)" in log
        learner = f"{testbed_registry.host}/owner/on-b/learner:{first.commit}"
        assert second_engine.has_image(learner), "node B's engine built the image"
        assert not local_image_exists(learner), "node A's engine did not"
        wait_no_stack(swarm, second_engine)

        swarm.label(swarm.node_b, present=False)
        swarm.label(swarm.node_a, present=True)
        ws.sla("on-a.yaml", sla_text(second.url))
        since = time.time()
        assert_built(ws, "on-a", second.commit, testbed_registry)
        assert created([], "on-a", since)
        assert not created(["-H", second_engine.docker_host], "on-a", since)
        assert f"builder task placed on node {swarm.node_a}" in ws.log("on-a")
        learner = f"{testbed_registry.host}/owner/on-a/learner:{second.commit}"
        assert local_image_exists(learner), "node A's engine built the image"
        assert not second_engine.has_image(learner), "node B's engine did not"
        wait_no_stack(swarm, second_engine)


def assert_built(ws: Workspace, project: str, commit: str, registry: RegistryServer) -> None:
    result = ws.run("apply", "--wait")
    assert result.code == 0, result.stdout + result.stderr + ws.log(project)
    row: dict[str, Any] = ws.status()[project]
    assert row["phase"] == "ready" and row["commit"] == commit
    for role in ("learner", "aggregator"):
        assert registry.manifest_exists(f"owner/{project}/{role}", commit)


def created(engine: list[str], project: str, since: float) -> list[str]:
    """Builder containers of ``project`` that the engine created since ``since``."""
    return run(["docker", *engine, "events", "--since", f"{since:.3f}", "--until",
                f"{time.time():.3f}", "--filter", "type=container", "--filter", "event=create",
                "--filter", f"label=flops.project={project}", "--format",
                "{{.Actor.Attributes.name}}"]).stdout.split()


def local_image_exists(ref: str) -> bool:
    return docker_image_exists(ref)
