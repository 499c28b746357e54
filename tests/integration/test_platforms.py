"""Platforms (issue 13): an image must cover every requested platform to count as present; a
two-platform project builds under QEMU emulation with the classic builder (no buildx), the
registry gets one manifest list per role, the arm64 learner runs as aarch64; a second apply,
dropping arm64 and asking for an unconfigured platform build nothing."""

from __future__ import annotations

from pathlib import Path

import httpx
from support import RegistryServer

from integration.conftest import ARM64, ARM64_BASE_IMAGE
from integration.harness import (
    REMOVES_REGISTRY_IMAGES,
    BuilderEvents,
    MlFiles,
    Publish,
    Workspace,
    docker,
    sla_text,
)
from reconciler.builder.index import MANIFEST_LIST
from reconciler.core.naming import split_ref
from reconciler.edges.registry import EngineImages, RegistryImages

pytestmark = REMOVES_REGISTRY_IMAGES

BOTH = "supported_platforms: [linux/amd64, linux/arm64]\n"
PROBE = ("import platform; from model_manager import ModelManager; "
         "print(platform.machine(), ModelManager.__name__)")


def test_an_amd64_image_does_not_satisfy_an_arm64_request(
    tmp_path: Path, registry: RegistryServer, base_image: str, publish: Publish,
    ml_files: MlFiles,
) -> None:
    url, _ = publish("multi", ml_files(marker="multi"))
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


def run_as(platform: str, image: str) -> str:
    """What the image's python says on ``platform``, pulled from the registry as a site's
    engine pulls it (the manifest list picks the platform's image)."""
    return docker("run", "--rm", "--pull", "always", "--platform", platform, "--entrypoint",
                  "python3", image, "-c", PROBE).strip()


def test_two_platforms_build_under_emulation_into_one_index_per_role(
    tmp_path: Path, registry: RegistryServer, base_image: str, arm64_base_image: str,
    publish: Publish, ml_files: MlFiles, builds: BuilderEvents,
) -> None:
    url, commit = publish("arm", ml_files(marker="arm"))
    ws = Workspace(tmp_path / "ws", registry.url, base_image,
                   platforms={ARM64: arm64_base_image})
    ws.sla("both.yaml", sla_text(url, extra=BOTH))
    result = ws.run("apply", "--wait", timeout=1800)
    assert result.code == 0, result.stdout + ws.log("both")
    row = ws.status()["both"]
    assert row["phase"] == "ready" and row["commit"] == commit

    # The registry holds one manifest list per role under the normal name, naming both
    # platforms; status has its digest and each platform's.
    for role, ref in row["images"].items():
        name, tag = split_ref(ref)
        answer = httpx.get(f"{registry.url}/v2/{name}/manifests/{tag}",
                           headers={"Accept": MANIFEST_LIST}, timeout=10)
        assert answer.headers["content-type"] == MANIFEST_LIST
        listed = {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
                  for m in answer.json()["manifests"]}
        assert listed == row["platform_digests"][role], role
        assert set(listed) == {"linux/amd64", ARM64}
        assert answer.headers["docker-content-digest"] == row["digests"][role]
    assert RegistryImages(registry.url, timeout=10).exists(
        row["images"]["learner"], ("linux/amd64", ARM64))

    # Each platform's learner runs as that platform and imports the repository's model.
    learner = row["images"]["learner"]
    assert run_as(ARM64, learner) == "aarch64 ModelManager"
    assert run_as("linux/amd64", learner) == "x86_64 ModelManager"

    # The observer log and the timings say what each platform took.
    log = ws.log("both")
    assert f"{ARM64}: emulated from {ARM64_BASE_IMAGE}" in log
    for stage in ("runtime", "build:learner", "build:aggregator", "push:learner"):
        assert f"INFO {stage} {ARM64} finished in " in log, stage
        assert f"{stage} {ARM64}" in row["timings"] and f"{stage} linux/amd64" in row["timings"]
    assert f"image learner {learner} {ARM64} (" in log
    assert "index:learner" in row["timings"]
    (builder,) = builds.created("both")

    # A second apply builds nothing; dropping arm64 changes nothing built.
    assert ws.run("apply", "--wait").code == 0
    ws.sla("both.yaml", sla_text(url))
    assert ws.run("apply", "--wait").code == 0
    row = ws.status()["both"]
    assert row["phase"] == "ready" and row["images"]["learner"] == learner
    assert builds.created("both") == [builder]

    # A platform nobody configured fails before any builder starts, naming it.
    ws.sla("both.yaml", sla_text(url, extra="supported_platforms: [linux/amd64, linux/arm64, "
                                  "linux/riscv64]\n"))
    assert ws.run("apply", "--wait").code == 1
    row = ws.status()["both"]
    assert row["phase"] == "failed", row
    assert "cannot build linux/riscv64" in row["error"] and "buildx" not in row["error"]
    assert '[images.platforms] "linux/riscv64"' in row["error"]
    assert builds.created("both") == [builder]


def test_doctor_says_which_platforms_each_image_builder_host_builds(
    tmp_path: Path, registry: RegistryServer, base_image: str, arm64_base_image: str,
) -> None:
    ws = Workspace(tmp_path / "ws", registry.url, base_image,
                   platforms={ARM64: arm64_base_image, "linux/s390x": "flops-base:no-such"})
    lines = ws.run("doctor").stdout.splitlines()
    (line,) = [line for line in lines if "platforms on local" in line]
    assert line.startswith("problem") and f"{ARM64} (emulated from {arm64_base_image})" in line
    assert "linux/amd64 (native)" in line
    assert "linux/s390x: base image flops-base:no-such is not on local" in line
    assert "setup.sh --platforms linux/s390x" in line

    ws.platforms = {ARM64: arm64_base_image}
    ws.write_config()
    (line,) = [line for line in ws.run("doctor").stdout.splitlines()
               if "platforms on local" in line]
    assert line.startswith("ok") and f"{ARM64} (emulated" in line, line
