"""The build request's one serializer and one parser (reconciler/protocol/request.py): what
the reconciler writes, the builder reads back as the same value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.core.build_request import builder_spec
from reconciler.core.config import Config, HostConfig
from reconciler.core.model_request import trained_model_request
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


def model_request_text(**fields: object) -> str:
    """What the reconciler writes for a trained model (``trained_model_request``)."""
    request = trained_model_request(
        make_environment(template_dirs(None)), project="demo",
        source_url="https://github.com/owner/repo.git", commit=COMMIT,
        learner_image=f"registry:5000/owner/repo/learner:{COMMIT}",
        image=f"registry:5000/owner/repo/trained-model:{COMMIT}-0a1b2c3d4e5f",
        labels={"flops.run": "0a1b2c3d4e5f"}, push=True, build_key="0a1b2c3d4e5f")
    document = json.loads(request_json(request))
    return json.dumps({**document, **fields}, ensure_ascii=True, separators=(",", ":"))


def test_a_trained_model_request_reads_back_unchanged() -> None:
    text = model_request_text()
    request = parse_request(text)
    assert request_json(request) == text
    assert request.kind == "trained-model"
    assert request.images == {"trained-model": f"registry:5000/owner/repo/trained-model:"
                                               f"{COMMIT}-0a1b2c3d4e5f"}
    assert request.model_from == f"registry:5000/owner/repo/learner:{COMMIT}"
    assert request.model_dir == "/flops/model"
    assert request.model_dockerfile.startswith("# The trained-model image")
    assert request.dockerfiles == {} and request.runtime_dockerfile == ""


def test_the_kinds_need_only_their_own_fields() -> None:
    actors = json.loads(spec_request())
    assert actors["kind"] == "actors"
    # A request from before the kinds existed is an FL-actor build; model fields are ignored.
    legacy = {k: v for k, v in actors.items()
              if k not in ("kind", "model_from", "model_dir", "model_dockerfile")}
    assert parse_request(json.dumps({**legacy, "model_from": "x y"})).kind == "actors"
    # A trained model needs no repository to clone and no FL-actor Dockerfiles.
    model = json.loads(model_request_text())
    for key in ("repo_url", "source_url", "dockerfiles", "runtime_dockerfile", "model_dir"):
        del model[key]
    request = parse_request(json.dumps(model))
    assert request.model_dir == "/flops/model" and request.repo_url == ""


@pytest.mark.parametrize(("fields", "named"), [
    ({"kind": "model"}, "'kind' must be one of actors, trained-model, not 'model'"),
    ({"images": {"learner": "a:1"}}, "'images' must map trained-model (only)"),
    ({"images": {"trained-model": "a b"}}, "'images' must map trained-model (only)"),
    ({"model_from": ""}, "'model_from' must be an image reference"),
    ({"model_dir": "flops/model"}, "'model_dir' must be an absolute path"),
    ({"model_dir": "/flops/../etc"}, "'model_dir' must be an absolute path"),
    ({"model_dir": "/flops/model/"}, "'model_dir' must be an absolute path"),
    ({"model_dockerfile": None}, "'model_dockerfile' must be the trained-model image's"),
    ({"commit": "main"}, "'commit' must be a full hex commit id"),
])
def test_a_bad_trained_model_field_is_named(fields: dict[str, object], named: str) -> None:
    with pytest.raises(RequestError) as raised:
        parse_request(model_request_text(**fields))
    assert named in str(raised.value)
