"""Air-gapped sites: the FL-actor images install their dependencies from a package index
that the site configures (`[build] pip_index_url`); here a PEP 503 index the test serves.
The index URLs carry credentials, and none of them is anywhere in the images: not in their
environment, history, inspect output or files; nor is the copy of the site CA pip read."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

from support import RegistryServer, free_port, port_accepts, wait_until

from integration.harness import (
    REMOVES_REGISTRY_IMAGES,
    BuildGate,
    MlFiles,
    PackageIndex,
    Publish,
    Workspace,
    builder_containers,
    docker,
    held_templates,
    sla_text,
)
from integration.image_leaks import SAVED, where_found

pytestmark = REMOVES_REGISTRY_IMAGES

PACKAGE, VERSION = "flops_testdep", "1.0"
INDEX_SECRET, EXTRA_SECRET = "flops-index-secret-5b2f", "flops-extra-index-secret-e04c"
INSTALLED = f"{PACKAGE}-{VERSION}.dist-info"  # in a layer of every image: the scan sees files


def with_user(url: str, user: str, password: str) -> str:
    """``http://host:port/path`` -> ``http://user:password@host:port/path``."""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{user}:{password}@{rest}"


def assert_only_installed_files_found(ref: str, values: tuple[str, ...]) -> None:
    """None of ``values`` is in the image's history, inspect output or files, while the scan
    does find the installed package's files (so it read the layers)."""
    found = where_found(ref, (*values, INSTALLED))
    assert {v: places for v, places in found.items() if places} == {INSTALLED: {SAVED}}, ref


def test_dependencies_install_from_the_configured_index(
    tmp_path: Path, registry: RegistryServer, base_image: str, publish: Publish,
    ml_files: MlFiles, package_index: PackageIndex,
) -> None:
    package_index.add("flops-testdep", VERSION)
    url, commit = publish("indexed", ml_files(marker="indexed",
                                              extra_deps=[f"flops-testdep=={VERSION}"]))
    # The index needs no credentials, but pip sends them (Authorization) and they must not
    # stay anywhere; the extra index has no projects (pip skips its 404s).
    index = with_user(package_index.url, "flops-index-user", INDEX_SECRET)
    extra = with_user(package_index.url.replace("/simple", "/extra/simple"),
                      "flops-extra-user", EXTRA_SECRET)
    ws = Workspace(tmp_path / "ws", registry.url, base_image,
                   build={"pip_index_url": index, "pip_extra_index_url": extra})
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
        assert_only_installed_files_found(
            ref, (index, extra, INDEX_SECRET, EXTRA_SECRET, package_index.url))


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
            ws = Workspace(tmp_path / name, registry.url, base_image,
                           build={"pip_index_url": index, **({"ca_bundle": str(ca)}
                                                             if trust else {})})
            ws.sla(f"{name}.yaml", sla_text(url))
            results[trust] = (ws.run("apply", "--wait").code, ws.status()[name])
    finally:
        server.terminate()
        server.wait(timeout=20)
    untrusted_code, untrusted = results[False]
    assert untrusted_code == 1 and untrusted["phase"] == "failed", untrusted
    trusted_code, trusted = results[True]
    assert trusted_code == 0 and trusted["phase"] == "ready", trusted
    for ref in trusted["images"].values():
        # The CA is trusted by the pip step only: no PIP_CERT, and the copy of the bundle the
        # pip step read is not in the image (the bundle's own file in /app/.flops, part of the
        # build context, is not trusted by anything).
        out = docker("run", "--rm", "--entrypoint", "python3", ref, "-c",
                     f"import {PACKAGE}, os, glob; print({PACKAGE}.VERSION, "
                     "os.environ.get('PIP_CERT'), "
                     "bool(glob.glob('/tmp/flops/**/ca-bundle.pem', recursive=True)))")
        assert out.split() == [VERSION, "None", "False"], out
        assert_only_installed_files_found(ref, (index,))


HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def test_the_request_with_credentials_and_a_site_sized_ca_bundle_stays_out_of_spec_and_env(
    tmp_path: Path, registry: RegistryServer, base_image: str, publish: Publish,
    ml_files: MlFiles, package_index: PackageIndex, build_gate: BuildGate,
) -> None:
    """A real site's bundle (the system's, ~220 KB, plus the site CA) once made the builder
    fail with "argument list too long": the request travelled in its environment, and was
    written with the index password into compose.yaml (0644). Now it is copied into the
    created container as a file (0600 on our side only until it is copied)."""
    package_index.add("flops-testdep", VERSION)
    (tmp_path / "tls").mkdir()
    ca, cert, key = make_site_ca(tmp_path / "tls")
    bundle = tmp_path / "site-bundle.pem"
    bundle.write_bytes(HOST_CA_BUNDLE.read_bytes() + ca.read_bytes())
    assert bundle.stat().st_size > 150_000
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", TLS_SERVER, str(port),
                               str(package_index.root), str(cert), str(key)])
    try:
        wait_until(lambda: port_accepts("127.0.0.1", port), 20, 0.05, "no TLS index")
        index = with_user(f"https://127.0.0.1:{port}/simple", "flops-index-user", INDEX_SECRET)
        url, _ = publish("big-ca", ml_files(marker="big-ca",
                                            extra_deps=[f"flops-testdep=={VERSION}"]))
        templates = held_templates(tmp_path / "templates", build_gate, uuid.uuid4().hex)
        ws = Workspace(tmp_path / "ws", registry.url, base_image,
                       options=["--templates", str(templates)],
                       build={"pip_index_url": index, "ca_bundle": str(bundle)})
        ws.sla("big-ca.yaml", sla_text(url))
        apply = ws.start("apply", "--wait")
        try:
            wait_until(lambda: build_gate.reached.is_set() or not apply.alive(), 180, 0.05)
            apply.check_alive()
            [spec_dir] = list((ws.state / "builds").iterdir())
            assert [p.name for p in spec_dir.iterdir()] == ["compose.yaml"]
            spec = (spec_dir / "compose.yaml").read_text()
            assert INDEX_SECRET not in spec and "BEGIN CERTIFICATE" not in spec
            [container] = builder_containers("big-ca")
            inspected = docker("inspect", container)
            assert INDEX_SECRET not in inspected and "BEGIN CERTIFICATE" not in inspected
            mode, request = docker(
                "exec", container, "sh", "-c", "stat -c %a /run/secrets/flops-build-request && "
                "cat /run/secrets/flops-build-request").split("\n", 1)
            assert mode == "600" and INDEX_SECRET in request
            assert json.loads(request)["ca_bundle"] == bundle.read_text()
        finally:
            build_gate.release()
            code = apply.process.wait(timeout=600)
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert code == 0, apply.output() + ws.log("big-ca")
    row = ws.status()["big-ca"]
    assert row["phase"] == "ready", row
    assert not list((ws.state / "builds").iterdir()), "the request file goes with the builder"
    for path in ws.state.rglob("*"):
        if path.is_file():
            assert INDEX_SECRET not in path.read_text(errors="replace"), path
