"""Proxied sites: with `[build] http_proxy` the FL-actor images' `pip install` reaches the
site's package index through the proxy, and the proxy settings do not stay in the images.

The index is named by a host this machine cannot resolve (``.invalid``, RFC 6761); only the
test's forward proxy (tests/integration/forward_proxy.py) knows where it is, so pip can only
have reached it through the proxy, and the proxy's own record says it did. The proxies carry
credentials, and no setting's value (credentials included) is anywhere in either image: not
in its environment, its history, its inspect output or any of its files."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from support import RegistryServer

from integration.forward_proxy import ForwardProxy
from integration.harness import (
    REMOVES_REGISTRY_IMAGES,
    MlFiles,
    PackageIndex,
    Publish,
    Workspace,
    docker,
    sla_text,
)
from integration.image_leaks import SAVED, where_found

pytestmark = REMOVES_REGISTRY_IMAGES

INDEX_HOST = "flops-index.invalid"
PACKAGE, VERSION = "flops_testdep", "1.0"
BUILD_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "PIP_INDEX_URL", "PIP_TRUSTED_HOST")
HTTP_SECRET, HTTPS_SECRET = "flops-http-proxy-secret-3c1d", "flops-https-proxy-secret-9a7e"
NO_PROXY = "localhost,127.0.0.1,flops-no-proxy.invalid"
INSTALLED = f"{PACKAGE}-{VERSION}.dist-info"  # in a layer of every image: the scan sees files


def with_user(url: str, user: str, password: str) -> str:
    """``http://host:port`` -> ``http://user:password@host:port``."""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{user}:{password}@{rest}"


def test_dependencies_install_through_the_configured_http_proxy(
    tmp_path: Path, registry: RegistryServer, base_image: str, publish: Publish,
    ml_files: MlFiles, package_index: PackageIndex,
) -> None:
    with pytest.raises(socket.gaierror):  # no way to the index but the proxy
        socket.getaddrinfo(INDEX_HOST, None)
    package_index.add("flops-testdep", VERSION)
    index_port = urlsplit(package_index.url).port
    assert index_port is not None
    index = f"http://{INDEX_HOST}:{index_port}/simple"
    url, commit = publish("proxied", ml_files(marker="proxied",
                                              extra_deps=[f"flops-testdep=={VERSION}"]))
    with ForwardProxy({f"{INDEX_HOST}:{index_port}": ("127.0.0.1", index_port)}) as proxy:
        http_proxy = with_user(proxy.url, "flops-http-user", HTTP_SECRET)
        https_proxy = with_user(proxy.url, "flops-https-user", HTTPS_SECRET)  # unused: no TLS
        # no_proxy exempts the loopback names only: the index's host goes through the proxy.
        ws = Workspace(tmp_path / "ws", registry.url, base_image, build={
            "pip_index_url": index, "pip_trusted_host": INDEX_HOST, "http_proxy": http_proxy,
            "https_proxy": https_proxy, "no_proxy": NO_PROXY})
        ws.sla("proxied.yaml", sla_text(url))
        result = ws.run("apply", "--wait")
        requests = proxy.requests()
    assert result.code == 0, result.stdout + result.stderr + ws.log("proxied")
    row = ws.status()["proxied"]
    assert row["phase"] == "ready" and row["commit"] == commit

    # pip asked the proxy for the project page and the wheel, once: both images hold the
    # one dependency layer (the aggregator is built on the learner's).
    forwarded = [r.url for r in requests if r.forwarded and r.status == 200]
    assert all(r.url.startswith(f"http://{INDEX_HOST}:{index_port}/") for r in requests), requests
    assert forwarded.count(f"{index}/flops-testdep/") == 1, requests
    wheel = f"{index}/flops-testdep/{PACKAGE}-{VERSION}-py3-none-any.whl"
    assert forwarded.count(wheel) == 1, requests

    for role, ref in row["images"].items():
        env = json.loads(docker("image", "inspect", ref, "--format", "{{json .Config.Env}}"))
        names = {entry.split("=", 1)[0].upper() for entry in env}
        assert not names & set(BUILD_VARIABLES), (role, env)
        assert not any(proxy.url in entry or INDEX_HOST in entry for entry in env), (role, env)
        out = docker("run", "--rm", "--entrypoint", "python3", ref, "-c",
                     f"import {PACKAGE}, os; print({PACKAGE}.VERSION, "
                     "sorted(k for k in os.environ if 'PROXY' in k.upper()))")
        assert out.strip().split(maxsplit=1) == [VERSION, "[]"], (role, out)
        # Not in the history (`|N HTTP_PROXY=...` of a RUN step), the config or any file.
        values = (http_proxy, https_proxy, HTTP_SECRET, HTTPS_SECRET, proxy.url, NO_PROXY,
                  index, INDEX_HOST)
        found = where_found(ref, (*values, INSTALLED))
        assert {v: places for v, places in found.items() if places} == {INSTALLED: {SAVED}}, role
