"""The `[images.python]` map through real builds: conda.yaml's python pin picks the FL-actor
base image from the configured map, and a pin that no configured version satisfies fails
the project (category `dependencies`) before anything is built.

The site's "python 3.11 image" is the base image plus one layer and a label, under a name of
its own, so the built images can show which base they came from."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import RegistryServer, run

from integration.harness import (
    REMOVES_REGISTRY_IMAGES,
    MlFiles,
    Publish,
    Workspace,
    assert_check_repo_agrees,
    assert_failed_before_building,
    docker,
    sla_text,
)

pytestmark = REMOVES_REGISTRY_IMAGES

MARK = "flops.test.base"  # the label the stand-in python 3.11 image carries
MARKER_FILE = "/etc/flops-test-base"


@pytest.fixture
def python311_image(tmp_path: Path, base_image: str, docker_cleanup: Any) -> str:
    """A local image standing in for a site's python 3.11 base (nothing can be pulled here):
    ``base_image`` plus a marker file and the label ``flops.test.base``; its name is unique
    to the test and it is removed at teardown."""
    name = f"flops-test-python311-{uuid.uuid4().hex[:12]}"
    docker_cleanup.add_image_prefix(f"{name}:")
    context = tmp_path / "python311-image"
    context.mkdir()
    (context / "marker").write_text(f"{name}\n")
    (context / "Dockerfile").write_text(
        f"FROM {base_image}\nLABEL {MARK}={name}\nCOPY marker {MARKER_FILE}\n")
    # The engine's classic builder: this host has no buildx, and nothing is pulled.
    run(["docker", "build", "--quiet", "--tag", f"{name}:latest", str(context)],
        env={"DOCKER_BUILDKIT": "0"}, timeout=300)
    return f"{name}:latest"


def pinning(files: dict[str, str], pin: str) -> dict[str, str]:
    """``files`` with conda.yaml's python pin replaced by ``pin``."""
    conda = yaml.safe_load(files["conda.yaml"])
    conda["dependencies"] = [pin if isinstance(d, str) and d.startswith("python") else d
                             for d in conda["dependencies"]]
    return {**files, "conda.yaml": yaml.safe_dump(conda, sort_keys=False)}


def layers(ref: str) -> list[str]:
    return list(json.loads(docker("image", "inspect", ref, "--format", "{{json .RootFS.Layers}}")))


def workspace(root: Path, registry: RegistryServer, base_image: str,
              python_images: dict[str, str]) -> Workspace:
    ws = Workspace(root, registry.url, base_image)
    entries = "".join(f'"{version}" = "{image}"\n' for version, image in python_images.items())
    ws.config.write_text(ws.config.read_text() + "[images.python]\n" + entries)
    return ws


def test_the_python_pin_picks_the_mapped_base_image(
    tmp_path: Path, registry: RegistryServer, base_image: str, python311_image: str,
    publish: Publish, ml_files: MlFiles,
) -> None:
    url, commit = publish("mapped", pinning(ml_files(marker="mapped"), "python=3.11"))
    ws = workspace(tmp_path / "ws", registry, base_image,
                   {"3.10": base_image, "3.11": python311_image})
    ws.sla("mapped.yaml", sla_text(url))
    result = ws.run("apply", "--wait")
    assert result.code == 0, result.stdout + result.stderr + ws.log("mapped")

    row = ws.status()["mapped"]
    assert row["phase"] == "ready" and row["commit"] == commit
    assert row["base_image"] == python311_image
    assert ws.record("mapped")["base_image"] == python311_image
    mapped_layers, default_layers = layers(python311_image), layers(base_image)
    assert len(mapped_layers) > len(default_layers)  # the stand-in is distinguishable
    name = python311_image.split(":")[0]
    for role, ref in row["images"].items():
        # Built FROM the mapped image: its layers (the marker's included) come first, and
        # its label and marker file are in the FL-actor image.
        assert layers(ref)[:len(mapped_layers)] == mapped_layers, role
        labels = json.loads(docker("image", "inspect", ref, "--format",
                                   "{{json .Config.Labels}}"))
        assert labels[MARK] == name and labels["flops.role"] == role
        marker = docker("run", "--rm", "--entrypoint", "cat", ref, MARKER_FILE).strip()
        assert marker == name, role
    assert f"the images build from {python311_image} (python 3.11)" in ws.log("mapped")

    # A later pass finds the images in the registry and keeps what the build recorded.
    again = ws.run("apply", "--wait")
    assert again.code == 0, again.stdout + again.stderr
    assert ws.status()["mapped"]["base_image"] == python311_image


def test_a_pin_no_configured_version_satisfies_fails_naming_pin_and_versions(
    tmp_path: Path, registry: RegistryServer, base_image: str, publish: Publish,
    ml_files: MlFiles,
) -> None:
    url, _ = publish("unmapped", pinning(ml_files(marker="unmapped"), "python=3.12"))
    ws = workspace(tmp_path / "ws", registry, base_image,
                   {"3.10": base_image, "3.11": base_image})
    ws.sla("unmapped.yaml", sla_text(url))
    assert ws.run("apply", "--wait").code == 1

    row = ws.status()["unmapped"]
    assert row["phase"] == "failed", row
    error: str = row["error"]
    assert error.startswith("dependencies: conda.yaml:"), error
    assert "'python=3.12'" in error and "(3.10, 3.11)" in error, error
    assert row["base_image"] is None
    assert_failed_before_building(ws, "unmapped", registry.url)
    assert_check_repo_agrees(ws, url, error)
