"""Air-gapped sites: the FL-actor images install their dependencies from a package index
that the site configures (`[build] pip_index_url`); here a PEP 503 index the test serves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from support import RegistryServer

from integration.harness import PackageIndex, Workspace, docker, sla_text

pytestmark = pytest.mark.usefixtures("remove_registry_images")

Publish = Callable[..., tuple[str, str]]
MlFiles = Callable[..., dict[str, str]]
PACKAGE, VERSION = "flops_testdep", "1.0"


def test_dependencies_install_from_the_configured_index(
    tmp_path: Path, registry: RegistryServer, base_image: str, publish: Publish,
    ml_files: MlFiles, package_index: PackageIndex,
) -> None:
    package_index.add("flops-testdep", VERSION)
    url, commit = publish("indexed", ml_files(marker="indexed",
                                              extra_deps=[f"flops-testdep=={VERSION}"]))
    ws = Workspace(tmp_path / "ws", registry.url, base_image)
    ws.config.write_text(ws.config.read_text()
                         + f'[build]\npip_index_url = "{package_index.url}"\n')
    ws.sla("indexed.yaml", sla_text(url))
    result = ws.run("apply", "--wait")
    assert result.code == 0, result.stdout + result.stderr + ws.log("indexed")
    row = ws.status()["indexed"]
    assert row["phase"] == "ready" and row["commit"] == commit
    for ref in row["images"].values():
        out = docker("run", "--rm", "--entrypoint", "python3", ref, "-c",
                     f"import {PACKAGE}, os; print({PACKAGE}.VERSION, "
                     "os.environ.get('PIP_INDEX_URL'))")
        # Installed from the site's index, and the index URL did not stay in the image.
        assert out.split() == [VERSION, "None"], out
