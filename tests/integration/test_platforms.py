"""Platforms: an image must cover every requested platform to count as present, and a
multi-platform request on a host without buildx fails before any builder starts."""

from __future__ import annotations

from pathlib import Path

from support import RegistryServer

from integration.harness import (
    REMOVES_REGISTRY_IMAGES,
    BuilderEvents,
    MlFiles,
    Publish,
    Workspace,
    sla_text,
)
from reconciler.edges.registry import EngineImages, RegistryImages

pytestmark = REMOVES_REGISTRY_IMAGES

BOTH = "supported_platforms: [linux/amd64, linux/arm64]\n"


def test_an_amd64_image_does_not_satisfy_an_arm64_request_and_no_buildx_fails_early(
    tmp_path: Path, registry: RegistryServer, base_image: str, publish: Publish,
    ml_files: MlFiles, builds: BuilderEvents,
) -> None:
    url, commit = publish("multi", ml_files(marker="multi"))
    ws = Workspace(tmp_path / "ws", registry.url, base_image)
    ws.sla("amd.yaml", sla_text(url))
    assert ws.run("apply", "--wait").code == 0
    learner = ws.status()["amd"]["images"]["learner"]

    images = RegistryImages(registry.url, timeout=10)
    assert images.exists(learner)
    assert images.exists(learner, ("linux/amd64",))
    assert not images.exists(learner, ("linux/arm64",))
    assert not images.exists(learner, ("linux/amd64", "linux/arm64"))
    engine = EngineImages("unix:///var/run/docker.sock")
    assert engine.exists(learner) and not engine.exists(learner, ("linux/arm64",))

    ws.sla("both.yaml", sla_text(url, extra=BOTH))
    result = ws.run("apply", "--wait")
    assert result.code == 1
    row = ws.status()["both"]
    assert row["phase"] == "failed" and "buildx" in row["error"], row
    assert row["commit"] == commit
    assert "a build is needed" in ws.log("both")  # the amd64 images did not count
    assert builds.created("both") == []  # failed before any builder started
