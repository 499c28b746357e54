"""What a builder is told (DESIGN §6, §7): assembled purely from SLA, commit and configuration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler import __version__
from reconciler.core.build_request import build_settings, builder_spec, image_labels
from reconciler.core.config import LOCAL_REGISTRY_PREFIX, Config, HostConfig
from reconciler.core.naming import ROLES, build_key, builder_name
from reconciler.core.project import DesiredProject
from reconciler.core.render import REPO_MOUNT, make_environment, render_compose, render_request
from reconciler.core.sla import parse_sla
from reconciler.edges.desired import load_file
from reconciler.edges.state import checked_key

ROOT = Path(__file__).resolve().parents[2]
ENV = make_environment([ROOT / "templates"])
COMMIT = "0123456789abcdef0123456789abcdef01234567"
URL = "https://github.com/Owner/Repo.git"
HOST = HostConfig(name="builder-1", docker_host="unix:///run/alt/docker.sock",
                  addons=("image-builder",))


def project(**sla: Any) -> DesiredProject:
    data = {"ml_repo_url": URL, "ml_model_flavor": "pytorch", **sla}
    return DesiredProject("demo", "desired/demo.yaml", parse_sla(data, allow_file_repos=False))


def parsed_compose(text: str) -> dict[str, Any]:
    document = yaml.safe_load(text)
    assert isinstance(document, dict)
    result: dict[str, Any] = document["services"]["image-builder"]
    return result


def test_local_mode_names_images_after_the_commit_and_does_not_push() -> None:
    spec = builder_spec(project(), COMMIT, Config(), HOST, ENV)
    request = spec.request
    assert request.push is False
    assert request.commit == COMMIT
    assert request.images == {
        role: f"{LOCAL_REGISTRY_PREFIX}/owner/repo/{role}:{COMMIT}" for role in ROLES
    }


def test_a_registry_url_prefixes_the_images_and_pushes() -> None:
    config = Config(registry="http://127.0.0.1:5000/")
    request = builder_spec(project(), COMMIT, config, HOST, ENV).request
    assert request.push is True
    for role in ROLES:
        assert request.images[role] == f"127.0.0.1:5000/owner/repo/{role}:{COMMIT}"


def test_the_request_carries_the_sla_image_inputs() -> None:
    sla_project = project(ml_repo_ref="v2", supported_platforms=["linux/arm64", "linux/amd64"],
                          use_devel_base_images=True)
    request = builder_spec(sla_project, COMMIT, Config(), HOST, ENV).request
    assert request.project == "demo"
    assert request.repo_url == URL
    assert request.source_url == URL
    assert request.ref == "v2"
    assert request.flavor == "pytorch"
    assert request.platforms == ["linux/arm64", "linux/amd64"]
    assert request.use_devel_base_images is True
    assert request.builder_version == __version__
    assert json.loads(json.dumps(request.as_json())) == request.as_json()


def test_labels_name_the_source_and_revision() -> None:
    spec = builder_spec(project(), COMMIT, Config(), HOST, ENV)
    labels = spec.request.labels
    assert labels["org.opencontainers.image.source"] == URL
    assert labels["org.opencontainers.image.revision"] == COMMIT
    assert labels["flops.flavor"] == "pytorch"
    assert labels["flops.platforms"] == "linux/amd64"
    assert labels["flops.builder-version"] == __version__
    assert labels["flops.build-key"] == spec.build_key
    assert labels == image_labels(project(), COMMIT, spec.build_key)


def test_the_builder_is_named_after_project_and_build_key() -> None:
    demo = project()
    spec = builder_spec(demo, COMMIT, Config(), HOST, ENV)
    assert spec.build_key == build_key(demo.image_inputs, COMMIT, __version__,
                                       build_settings(Config()))
    assert spec.request.build_key == spec.build_key
    assert spec.name == builder_name("demo", spec.build_key)
    assert checked_key(spec.name) == spec.name
    assert spec.project == "demo"


def test_two_refs_for_one_commit_make_the_same_build() -> None:
    one = builder_spec(project(ml_repo_ref="main"), COMMIT, Config(), HOST, ENV)
    two = builder_spec(project(ml_repo_ref="release"), COMMIT, Config(), HOST, ENV)
    assert (one.name, one.build_key, one.request.images) == (
        two.name, two.build_key, two.request.images
    )


def test_builder_image_network_and_socket_come_from_configuration() -> None:
    config = Config(builder={"image": "registry.example.org/flops-builder:2", "network": "bridge"})
    spec = builder_spec(project(), COMMIT, config, HOST, ENV)
    assert spec.image == "registry.example.org/flops-builder:2"
    assert spec.network == "bridge"
    assert spec.docker_socket == "/run/alt/docker.sock"
    builder = parsed_compose(render_compose(ENV, spec))
    assert builder["image"] == spec.image
    assert builder["volumes"] == [
        {"type": "bind", "source": "/run/alt/docker.sock", "target": "/var/run/docker.sock"}
    ]


def test_actor_dockerfiles_use_the_configured_base_image() -> None:
    config = Config(images={"base_image": "debian-python:bookworm"})
    request = builder_spec(project(), COMMIT, config, HOST, ENV).request
    assert "FROM debian-python:bookworm AS actor-base\n" in request.runtime_dockerfile
    dockerfiles = request.dockerfiles
    assert set(dockerfiles) == set(ROLES)
    assert dockerfiles["learner"] == dockerfiles["aggregator"]  # one file, a target a role
    for role in ROLES:
        assert f"FLOPS_ROLE={role}" in dockerfiles[role]


def test_a_network_repository_is_not_mounted() -> None:
    spec = builder_spec(project(), COMMIT, Config(), HOST, ENV)
    assert spec.repo_mount is None
    assert len(parsed_compose(render_compose(ENV, spec))["volumes"]) == 1


@pytest.mark.parametrize("url", ["./ML_Repo", "file://{root}/ML_Repo"])
def test_a_local_repository_is_mounted_read_only_and_cloned_from_the_mount(
    tmp_path: Path, url: str
) -> None:
    team = tmp_path / "Team_A"
    repo = team / "ML_Repo"
    repo.mkdir(parents=True)
    sla_file = team / "demo.yaml"
    sla_file.write_text(
        f"ml_repo_url: {url.format(root=team)}\nml_model_flavor: sklearn\n", encoding="utf-8"
    )
    local = load_file(sla_file, allow_file_repos=True)
    assert isinstance(local, DesiredProject)
    config = Config(allow_file_repos=True)
    spec = builder_spec(local, COMMIT, config, HOST, ENV)
    assert spec.repo_mount == str(repo.resolve())
    assert spec.request.repo_url == REPO_MOUNT
    assert spec.request.source_url == str(repo.resolve())
    assert spec.request.labels["org.opencontainers.image.source"] == str(repo.resolve())
    assert spec.request.images["learner"] == (
        f"{LOCAL_REGISTRY_PREFIX}/team-a/ml-repo/learner:{COMMIT}"
    )
    builder = parsed_compose(render_compose(ENV, spec))
    mounts = [volume for volume in builder["volumes"] if volume["target"] == REPO_MOUNT]
    assert mounts == [
        {"type": "bind", "source": str(repo.resolve()), "target": REPO_MOUNT, "read_only": True}
    ]
    assert json.loads(render_request(spec)) == spec.request.as_json()
    assert "environment" not in builder


def test_site_settings_reach_the_request_and_change_the_build_key() -> None:
    plain = builder_spec(project(), COMMIT, Config(), HOST, ENV)
    site = Config.model_validate({
        "images": {"python": {"3.10": "py310:base"}, "conda_base_image": "conda:base"},
        "build": {"pip_index_url": "http://127.0.0.1:8080/simple", "https_proxy": "http://p:3128",
                  "ca_bundle": "/etc/site-ca.pem", "network": "bridge"},
    })
    spec = builder_spec(project(), COMMIT, site, HOST, ENV, ca_bundle="PEM")
    assert spec.request.build_args == {
        "PIP_INDEX_URL": "http://127.0.0.1:8080/simple", "HTTPS_PROXY": "http://p:3128"}
    assert spec.request.python_images == {"3.10": "py310:base"}
    assert spec.request.conda_base_image == "conda:base"
    assert spec.request.build_network == "bridge"
    assert spec.request.ca_bundle == "PEM"
    assert plain.request.build_args == {} and plain.request.ca_bundle == ""
    assert spec.build_key != plain.build_key
