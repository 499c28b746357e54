"""Air-gapped sites: the FL-actor images install their dependencies from a package index
that the site configures (`[build] pip_index_url`); here a PEP 503 index the test serves."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support import RegistryServer, free_port, port_accepts, wait_until

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


TLS_SERVER = """
import http.server, ssl, sys
port, root, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=root)
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


def make_site_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A site CA and a server certificate for 127.0.0.1 that it signed: (ca, cert, key)."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=flops test site CA", "-keyout", "ca.key", "-out", "ca.pem")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "server.key", "-out", "server.csr")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem")
    return directory / "ca.pem", directory / "server.pem", directory / "server.key"


def test_a_site_ca_bundle_lets_pip_trust_an_https_index(
    tmp_path: Path, registry: RegistryServer, base_image: str, publish: Publish,
    ml_files: MlFiles, package_index: PackageIndex,
) -> None:
    package_index.add("flops-testdep", VERSION)
    (tmp_path / "tls").mkdir()
    ca, cert, key = make_site_ca(tmp_path / "tls")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", TLS_SERVER, str(port),
                               str(package_index.root), str(cert), str(key)])
    try:
        wait_until(lambda: port_accepts("127.0.0.1", port), 20, 0.05, "no TLS index")
        index = f"https://127.0.0.1:{port}/simple"
        results = {}
        for trust in (False, True):
            name = f"tls-{str(trust).lower()}"
            url, _ = publish(name, ml_files(marker=name, extra_deps=[f"flops-testdep=={VERSION}"]))
            ws = Workspace(tmp_path / name, registry.url, base_image)
            bundle = f'ca_bundle = "{ca}"\n' if trust else ""
            ws.config.write_text(ws.config.read_text()
                                 + f'[build]\npip_index_url = "{index}"\n{bundle}')
            ws.sla(f"{name}.yaml", sla_text(url))
            results[trust] = (ws.run("apply", "--wait").code, ws.status()[name])
    finally:
        server.terminate()
        server.wait(timeout=20)
    untrusted_code, untrusted = results[False]
    assert untrusted_code == 1 and untrusted["phase"] == "failed", untrusted
    trusted_code, trusted = results[True]
    assert trusted_code == 0 and trusted["phase"] == "ready", trusted
    out = docker("run", "--rm", "--entrypoint", "python3", trusted["images"]["learner"], "-c",
                 f"import {PACKAGE}, os; print({PACKAGE}.VERSION, os.environ.get('PIP_CERT'))")
    assert out.split() == [VERSION, "None"], out
