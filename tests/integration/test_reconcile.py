"""End to end on one Docker host: SLA -> plan -> image-builder -> images -> observer log.

Real engine, real `docker compose`, a real registry v2 server and real git remotes (a served
`git://` daemon and local repositories). Assertions go to Docker and the registry, not to
the reconciler's own words, wherever the fact lives there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from integration.harness import (
    REMOVES_REGISTRY_IMAGES,
    MlFiles,
    Publish,
    Workspace,
    builder_leftovers,
    builders_created,
    docker,
    docker_now,
    image_labels_in_registry,
    sla_text,
)

pytestmark = REMOVES_REGISTRY_IMAGES


@pytest.fixture
def url_workspace(tmp_path: Path, registry: Any, base_image: str) -> Workspace:
    return Workspace(tmp_path / "ws", registry.url, base_image)


def assert_no_builder_left() -> None:
    assert builder_leftovers() == []


def test_new_project_becomes_ready_with_both_images_in_the_registry(
    url_workspace: Workspace, registry: Any, publish: Publish, ml_files: MlFiles
) -> None:
    url, commit = publish("alpha", ml_files(), via="git")
    assert url.startswith("git://")
    url_workspace.sla("alpha.yaml", sla_text(url))

    plan = url_workspace.run("plan", "--json")
    assert plan.code == 1
    assert json.loads(plan.stdout)[0]["action"] == "create"

    result = url_workspace.run("apply", "--wait")
    assert result.code == 0, result.stdout + result.stderr
    row = url_workspace.status()["alpha"]
    assert row["phase"] == "ready" and row["commit"] == commit
    for role in ("learner", "aggregator"):
        ref = row["images"][role]
        assert ref == f"{registry.host}/alpha-owner/alpha/{role}:{commit}"
        name, tag = ref.split("/", 1)[1].rsplit(":", 1)
        assert registry.manifest_exists(name, tag)
        labels = image_labels_in_registry(registry.url, ref)
        assert labels["org.opencontainers.image.revision"] == commit
        assert labels["org.opencontainers.image.source"] == url
    log = url_workspace.log("alpha")
    assert "ERROR" not in log
    assert f"image learner {row['images']['learner']}" in log
    assert_no_builder_left()
    assert url_workspace.run("plan").code == 0


def test_a_second_apply_and_a_fresh_state_start_no_builder(
    url_workspace: Workspace, tmp_path: Path, registry: Any, base_image: str,
    publish: Publish, ml_files: MlFiles,
) -> None:
    url, commit = publish("beta", ml_files())
    url_workspace.sla("beta.yaml", sla_text(url))
    first_start = docker_now()
    assert url_workspace.run("apply", "--wait").code == 0
    first_end = docker_now()
    assert len(builders_created(first_start, first_end)) == 1

    since = docker_now()
    again = url_workspace.run("apply", "--wait")
    assert again.code == 0
    # A different state dir knows nothing, but the registry has the images: adopt, no build.
    fresh = Workspace(tmp_path / "fresh", registry.url, base_image)
    fresh.sla("beta.yaml", sla_text(url))
    adopted = fresh.run("apply", "--wait")
    assert adopted.code == 0, adopted.stdout + adopted.stderr
    assert builders_created(since, docker_now()) == []
    assert fresh.status()["beta"]["phase"] == "ready"
    assert fresh.status()["beta"]["commit"] == commit
    assert "no build needed" in fresh.log("beta")


def test_two_projects_in_one_pass(
    url_workspace: Workspace, registry: Any, publish: Publish, ml_files: MlFiles
) -> None:
    for name in ("gamma", "delta"):
        url, _ = publish(name, ml_files(marker=name))
        url_workspace.sla(f"{name}.yaml", sla_text(url))
    since = docker_now()
    result = url_workspace.run("apply", "--wait")
    assert result.code == 0, result.stdout + result.stderr
    rows = url_workspace.status()
    assert {rows["gamma"]["phase"], rows["delta"]["phase"]} == {"ready"}
    assert len(builders_created(since, docker_now())) == 2
    for row in rows.values():
        name, tag = row["images"]["aggregator"].split("/", 1)[1].rsplit(":", 1)
        assert registry.manifest_exists(name, tag)
    assert_no_builder_left()


def test_local_registry_mode_keeps_images_in_the_engine(
    tmp_path: Path, base_image: str, publish: Publish, ml_files: MlFiles
) -> None:
    ws = Workspace(tmp_path / "ws", "local", base_image)
    url, commit = publish("epsilon", ml_files(marker="local-mode"))
    ws.sla("epsilon.yaml", sla_text(url))
    result = ws.run("apply", "--wait")
    assert result.code == 0, result.stdout + result.stderr
    row = ws.status()["epsilon"]
    try:
        for ref in row["images"].values():
            labels = json.loads(docker("image", "inspect", ref, "--format",
                                       "{{json .Config.Labels}}"))
            assert labels["org.opencontainers.image.revision"] == commit
    finally:
        docker("image", "rm", "--force", *row["images"].values())
    assert_no_builder_left()


def test_apply_without_wait_leaves_the_builder_and_the_next_pass_harvests_it_once(
    url_workspace: Workspace, publish: Publish, ml_files: MlFiles
) -> None:
    url, _ = publish("zeta", ml_files(marker="adopt"))
    url_workspace.sla("zeta.yaml", sla_text(url))
    started = url_workspace.run("apply")
    assert started.code == 0, started.stdout + started.stderr
    assert url_workspace.status()["zeta"]["phase"] == "building"
    finished = url_workspace.run("apply", "--wait")
    assert finished.code == 0, finished.stdout + finished.stderr
    assert url_workspace.status()["zeta"]["phase"] == "ready"
    log = url_workspace.log("zeta")
    for stage in ("clone", "check", "build:learner", "push:aggregator"):
        assert log.count(f" INFO {stage} started") == 1, log
    assert_no_builder_left()


def test_no_image_builder_host_fails_the_project_and_starts_nothing(
    tmp_path: Path, registry: Any, base_image: str, publish: Publish,
    ml_files: MlFiles,
) -> None:
    hosts = [{"name": "plain", "docker_host": "unix:///var/run/docker.sock", "addons": []}]
    ws = Workspace(tmp_path / "ws", registry.url, base_image, hosts=hosts)
    url, _ = publish("eta", ml_files(marker="no-host"))
    ws.sla("eta.yaml", sla_text(url))
    since = docker_now()
    result = ws.run("apply", "--wait")
    assert result.code == 1
    row = ws.status()["eta"]
    assert row["phase"] == "failed"
    assert "no image-builder host" in row["error"]
    assert "no image-builder host" in ws.log("eta")
    assert builders_created(since, docker_now()) == []
