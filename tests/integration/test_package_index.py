"""Air-gapped sites: the FL-actor images install their dependencies from a package index
that the site configures (`[build] pip_index_url`); here a PEP 503 index the test serves."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import RegistryServer, free_port, port_accepts, wait_until

from integration.harness import Workspace, docker, sla_text

pytestmark = pytest.mark.usefixtures("remove_registry_images")

Publish = Callable[..., tuple[str, str]]
MlFiles = Callable[..., dict[str, str]]
PACKAGE, VERSION = "flops_testdep", "1.0"


def build_wheel(directory: Path) -> Path:
    """A pure-Python wheel written by hand (zip + dist-info), so no build tool is needed."""
    files = {
        f"{PACKAGE}/__init__.py": f'VERSION = "{VERSION}"\n',
        f"{PACKAGE}-{VERSION}.dist-info/METADATA":
            f"Metadata-Version: 2.1\nName: flops-testdep\nVersion: {VERSION}\n",
        f"{PACKAGE}-{VERSION}.dist-info/WHEEL":
            "Wheel-Version: 1.0\nGenerator: flops-tests\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n",
    }
    record = [f"{name},sha256={_digest(text)},{len(text.encode())}"
              for name, text in files.items()]
    files[f"{PACKAGE}-{VERSION}.dist-info/RECORD"] = "\n".join(
        [*record, f"{PACKAGE}-{VERSION}.dist-info/RECORD,,"]) + "\n"
    wheel = directory / f"{PACKAGE}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return wheel


def _digest(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()


@pytest.fixture
def package_index(tmp_path: Path) -> Iterator[str]:
    """A PEP 503 "simple" index on a free loopback port, serving one wheel."""
    root = tmp_path / "index"
    project_dir = root / "simple" / "flops-testdep"
    project_dir.mkdir(parents=True)
    wheel = build_wheel(project_dir)
    (project_dir / "index.html").write_text(
        f'<html><body><a href="{wheel.name}">{wheel.name}</a></body></html>\n')
    (root / "simple" / "index.html").write_text(
        '<html><body><a href="flops-testdep/">flops-testdep</a></body></html>\n')
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_accepts("127.0.0.1", port), 20, 0.05, "the index did not start")
        yield f"http://127.0.0.1:{port}/simple"
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_dependencies_install_from_the_configured_index(
    tmp_path: Path, registry: RegistryServer, base_image: str, publish: Publish,
    ml_files: MlFiles, package_index: str,
) -> None:
    url, commit = publish("indexed", ml_files(marker="indexed",
                                              extra_deps=[f"flops-testdep=={VERSION}"]))
    ws = Workspace(tmp_path / "ws", registry.url, base_image)
    ws.config.write_text(ws.config.read_text()
                         + f'[build]\npip_index_url = "{package_index}"\n')
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
