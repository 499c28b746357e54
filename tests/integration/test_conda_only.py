"""Conda-only packages through a real build: without `conda_base_image` the project fails
(category `dependencies`) before anything is built, with an error listing the packages and
where they are written, and `check-repo` gives the builder's verdict word for word."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from support import RegistryServer

from integration.harness import (
    REMOVES_REGISTRY_IMAGES,
    MlFiles,
    Publish,
    Workspace,
    assert_check_repo_agrees,
    assert_failed_before_building,
    sla_text,
)

pytestmark = REMOVES_REGISTRY_IMAGES

# cudatoolkit and cudnn are conda-only (reconciler/builder/conda.py: CONDA_ONLY).
CONDA_YAML = {
    "name": "flops-gpu-example",
    "channels": ["conda-forge", "nvidia"],
    "dependencies": ["python=3.11", "cudatoolkit=11.8", "cudnn", "pip", {"pip": []}],
}
CUDATOOLKIT_LINE, CUDNN_LINE = 7, 8  # their lines in the dumped conda.yaml


def test_conda_only_packages_without_a_conda_base_fail_listing_them(
    tmp_path: Path, registry: RegistryServer, base_image: str, publish: Publish,
    ml_files: MlFiles,
) -> None:
    files = ml_files(marker="gpu")
    files["conda.yaml"] = yaml.safe_dump(CONDA_YAML, sort_keys=False)
    lines = files["conda.yaml"].splitlines()
    assert lines[CUDATOOLKIT_LINE - 1].endswith("cudatoolkit=11.8")
    assert lines[CUDNN_LINE - 1].endswith("- cudnn")
    url, _ = publish("gpu", files)
    ws = Workspace(tmp_path / "ws", registry.url, base_image)
    ws.sla("gpu.yaml", sla_text(url, flavor="pytorch"))
    assert ws.run("apply", "--wait").code == 1

    row = ws.status()["gpu"]
    assert row["phase"] == "failed", row
    error: str = row["error"]
    assert error.startswith(f"dependencies: conda.yaml:{CUDATOOLKIT_LINE}: conda-only packages "
                            "cannot be installed with pip: "), error
    assert f"cudatoolkit=11.8 (conda.yaml:{CUDATOOLKIT_LINE}" in error, error
    assert f"cudnn (conda.yaml:{CUDNN_LINE}" in error, error
    assert "conda_base_image" in error, error  # the hint names the setting
    assert_failed_before_building(ws, "gpu", registry.url)
    assert_check_repo_agrees(ws, url, error)
    text = ws.run("check-repo", url)
    assert text.code == 1 and "cudatoolkit=11.8" in text.stdout and "cudnn" in text.stdout

    # With a conda-capable base configured the same repository passes the review, and the
    # conda install is shown as a repair (no such image can be had here to build from).
    conda_site = Workspace(tmp_path / "conda-site", registry.url, base_image)
    conda_site.config.write_text(conda_site.config.read_text().replace(
        "[images]\n", '[images]\nconda_base_image = "mambaorg/micromamba:1.5"\n'))
    allowed = conda_site.run("check-repo", url, "--json")
    assert allowed.code == 0, allowed.stdout + allowed.stderr
    repairs = json.loads(allowed.stdout)["repairs"]
    assert any("cudatoolkit=11.8" in r["summary"] and "micromamba" in r["summary"]
               for r in repairs), repairs
