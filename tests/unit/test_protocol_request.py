"""The build request's one serializer and one parser (reconciler/protocol/request.py): what
the reconciler writes, the builder reads back as the same value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.core.build_request import builder_spec
from reconciler.core.config import Config, HostConfig
from reconciler.core.project import DesiredProject
from reconciler.core.render import make_environment, render_request
from reconciler.core.sla import parse_sla
from reconciler.edges.settings import template_dirs
from reconciler.protocol.request import RequestError, parse_request, request_json

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def spec_request(**config: object) -> str:
    project = DesiredProject("demo", "desired/demo.yaml", parse_sla(
        {"ml_repo_url": "https://github.com/owner/repo.git", "ml_model_flavor": "pytorch",
         "ml_repo_ref": "v2", "supported_platforms": ["linux/arm64"]},
        allow_file_repos=False))
    spec = builder_spec(project, COMMIT, Config.model_validate(config),
                        HostConfig(name="local"), make_environment(template_dirs(None)),
                        ca_bundle="-----BEGIN CERTIFICATE-----\n")
    return render_request(spec)


@pytest.mark.parametrize("config", [
    {},
    {"registry": "http://127.0.0.1:5000",
     "images": {"python": {"3.10": "py310:base"}, "conda_base_image": "conda:base"},
     "build": {"pip_index_url": "http://index/simple", "network": "bridge"}},
])
def test_what_the_reconciler_writes_the_builder_reads_back_unchanged(
    config: dict[str, object],
) -> None:
    text = spec_request(**config)
    request = parse_request(text)
    assert request_json(request) == text
    assert request.commit == COMMIT and request.ref == "v2" and request.flavor == "pytorch"


def test_a_bad_field_is_named() -> None:
    document = json.loads(spec_request())
    with pytest.raises(RequestError, match="'build_network' must be a Docker network name"):
        parse_request(json.dumps({**document, "build_network": "a b"}))
    with pytest.raises(RequestError, match="'commit' must be a full hex commit id"):
        parse_request(json.dumps({**document, "commit": "HEAD"}))


def test_the_builder_image_carries_the_protocol_package() -> None:
    from reconciler.edges.builder_image import context_files

    files = context_files(template_dirs(None))
    assert "reconciler/protocol/request.py" in files
    assert "COPY reconciler/protocol/" in Path(files["Dockerfile"]).read_text()
