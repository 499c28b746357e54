"""Rendering the builder's compose spec (DESIGN §7): SLA values are data, never spec structure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.builder.protocol import REQUEST_SECRET
from reconciler.core.build_request import builder_spec
from reconciler.core.config import Config, HostConfig
from reconciler.core.project import DesiredProject
from reconciler.core.render import (
    REPO_MOUNT,
    REQUEST_FILE,
    BuilderSpec,
    make_environment,
    quote,
    render_actor_dockerfile,
    render_compose,
    render_request,
    render_runtime_dockerfile,
)
from reconciler.core.repo_url import check_ref
from reconciler.core.sla import parse_sla
from reconciler.protocol.request import BuildRequest

ROOT = Path(__file__).resolve().parents[2]
ENV = make_environment([ROOT / "templates"])
COMMIT = "0123456789abcdef0123456789abcdef01234567"

NASTY = [
    "\nkey: value",
    "\n  injected: true\nservices: {}",
    '"',
    "'",
    "\\",
    '\\"\n',
    "$HOME",
    "${VAR}",
    "$${VAR}",
    "$",
    "$$$",
    "${VAR:-default}",
    "# comment",
    "&anchor",
    "*alias",
    "!!python/object/apply:os.system ['id']",
    "{{ name }}",
    "{% if true %}x{% endif %}",
    "- item",
    "? key",
    "|\n  block",
    "%YAML 1.2\n---\n",
    "\u2028\u2029\x85",
    "\r\n\t\x00\x07\x1b[31m",
    "\x7f",
    "\ufeff",
    "😀🚀",
    "é中文",
]
# Arbitrary text (no lone surrogates: they are not text and cannot be encoded), with the known
# troublemakers mixed in often.
TEXT = st.one_of(
    st.text(),
    st.sampled_from(NASTY),
    st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=5)), max_size=6).map("".join),
)
JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        TEXT,
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)
    ),
    max_leaves=12,
)
# pure Python, and libyaml (what go-yaml ports)
LOADERS: list[Any] = [yaml.SafeLoader, yaml.CSafeLoader]


def shape(node: Any) -> Any:
    """The key structure of a parsed document: keys, nesting, list lengths and scalar types."""
    if isinstance(node, dict):
        return {key: shape(value) for key, value in node.items()}
    if isinstance(node, list):
        return [shape(item) for item in node]
    return type(node).__name__


def benign_spec(**changes: Any) -> BuilderSpec:
    fields: dict[str, Any] = {
        "name": "flops-build-demo-0123456789ab",
        "project": "demo",
        "build_key": "0123456789abcdef",
        "image": "flops-builder:latest",
        "network": "host",
        "docker_socket": "/var/run/docker.sock",
        "request": BuildRequest(project="demo", repo_url="https://example.org/owner/demo",
                                source_url="https://example.org/owner/demo", commit=COMMIT,
                                images={}, dockerfiles={}, runtime_dockerfile="FROM base\n"),
        "repo_mount": None,
    }
    fields.update(changes)
    return BuilderSpec(**fields)


def uncompose(value: str) -> str:
    """What compose makes of a value after interpolation: ``$$`` is a literal ``$``."""
    return value.replace("$$", "$")


def parse(text: str, loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> dict[str, Any]:
    document = yaml.load(text, Loader=loader)
    assert isinstance(document, dict)
    return document


def service(document: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = document["services"]["image-builder"]
    return result


@pytest.mark.parametrize("mounted", [False, True])
def test_the_benign_spec_is_a_one_shot_builder_on_image_builder_hosts(mounted: bool) -> None:
    spec = benign_spec(repo_mount="/srv/git/repo" if mounted else None)
    document = parse(render_compose(ENV, spec))
    assert set(document) == {"name", "services"}
    assert document["name"] == spec.name
    assert list(document["services"]) == ["image-builder"]
    builder = service(document)
    assert builder["image"] == spec.image
    assert builder["restart"] == "no"
    assert builder["network_mode"] == spec.network
    assert builder["labels"] == {
        "flops.project": spec.project,
        "flops.role": "image-builder",
        "flops.build-key": spec.build_key,
    }
    assert builder["deploy"]["restart_policy"] == {"condition": "none"}
    assert builder["deploy"]["placement"]["constraints"] == ["node.labels.image-builder == true"]
    # The request is copied into the created container: not in the environment or the spec.
    assert "environment" not in builder and "secrets" not in builder
    socket = {"type": "bind", "source": spec.docker_socket, "target": "/var/run/docker.sock"}
    repo = {"type": "bind", "source": "/srv/git/repo", "target": REPO_MOUNT, "read_only": True}
    assert builder["volumes"] == ([socket, repo] if mounted else [socket])


def test_the_stack_spec_is_the_same_builder_for_docker_stack_deploy() -> None:
    """`docker stack deploy` knows no top-level name and no network_mode: the stack joins the
    builder network by name, and everything else is the compose spec's."""
    spec = benign_spec()
    compose = parse(render_compose(ENV, spec))
    stack = parse(render_compose(ENV, benign_spec(stack=True)))
    assert set(stack) == {"services", "networks", "secrets"}
    assert stack["networks"] == {"builder": {"external": True, "name": spec.network}}
    # A swarm gets the request as the stack's secret, made from the file beside the spec.
    assert stack["secrets"] == {
        "build-request": {"file": f"./{REQUEST_FILE}", "name": spec.name}}
    builder = service(stack)
    assert builder.pop("networks") == ["builder"]
    assert builder.pop("secrets") == [{"source": "build-request", "target": REQUEST_SECRET}]
    del service(compose)["network_mode"]
    assert builder == service(compose)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(network=TEXT, project=TEXT)
def test_no_value_can_change_the_shape_of_the_stack_spec(network: str, project: str) -> None:
    text = render_compose(ENV, benign_spec(stack=True, network=network, project=project))
    for loader in LOADERS:
        document = parse(text, loader)
        assert shape(document) == shape(parse(render_compose(ENV, benign_spec(stack=True)),
                                              loader))
        assert uncompose(document["networks"]["builder"]["name"]) == network
        assert uncompose(service(document)["labels"]["flops.project"]) == project


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    request=st.dictionaries(TEXT, JSON_VALUES, max_size=6),
    strings=st.fixed_dictionaries(
        {
            "name": TEXT,
            "project": TEXT,
            "build_key": TEXT,
            "image": TEXT,
            "network": TEXT,
            "docker_socket": TEXT,
        }
    ),
    repo_mount=st.one_of(st.none(), TEXT.filter(bool)),
)
def test_no_value_can_change_the_shape_of_the_spec(
    request: dict[str, Any], strings: dict[str, str], repo_mount: str | None
) -> None:
    typed = BuildRequest(
        project=strings["project"], repo_url="https://example.org/owner/" + strings["name"],
        source_url=strings["image"], commit=COMMIT, ref=strings["network"], images={},
        dockerfiles={}, runtime_dockerfile="FROM base\n",
        labels={key: json.dumps(value) for key, value in request.items()})
    spec = benign_spec(request=typed, repo_mount=repo_mount, **strings)
    text = render_compose(ENV, spec)
    benign = benign_spec(repo_mount="/srv/repo" if repo_mount else None)
    content = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert "$" not in content.replace("$$", ""), "a lone $ would be interpolated by compose"
    for loader in LOADERS:
        document = parse(text, loader)
        assert shape(document) == shape(parse(render_compose(ENV, benign), loader))
        builder = service(document)
        assert json.loads(render_request(spec)) == typed.as_json()
        assert "environment" not in builder
        assert uncompose(document["name"]) == spec.name
        assert uncompose(builder["image"]) == spec.image
        assert uncompose(builder["network_mode"]) == spec.network
        assert uncompose(builder["labels"]["flops.project"]) == spec.project
        assert uncompose(builder["labels"]["flops.build-key"]) == spec.build_key
        assert uncompose(builder["volumes"][0]["source"]) == spec.docker_socket
        if repo_mount is not None:
            assert uncompose(builder["volumes"][1]["source"]) == repo_mount


_REF = st.text(min_size=1, max_size=30).filter(lambda ref: _valid_ref(ref))


def _valid_ref(ref: str) -> bool:
    try:
        check_ref(ref)
    except ValueError:
        return False
    return True


def _valid_url(url: str) -> bool:
    try:
        parse_sla({"ml_repo_url": url, "ml_model_flavor": "sklearn"}, allow_file_repos=False)
    except ValueError:
        return False
    return True


_URL = st.text(min_size=1).map(lambda path: f"https://example.org/owner/{path}").filter(_valid_url)


_TAG = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,10}", fullmatch=True)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(url=_URL, ref=st.one_of(st.none(), _REF), customer=TEXT, tags=st.lists(_TAG, max_size=3))
def test_sla_values_through_a_real_build_request_stay_data(
    url: str, ref: str | None, customer: str, tags: list[str]
) -> None:
    data: dict[str, Any] = {
        "ml_repo_url": url,
        "ml_model_flavor": "pytorch",
        "customerID": customer,
        "training_configuration": {"data_tags": tags},
    }
    if ref is not None:
        data["ml_repo_ref"] = ref
    project = DesiredProject("demo", "desired/demo.yaml", parse_sla(data, allow_file_repos=False))
    config = Config()
    host = HostConfig(name="local", addons=("image-builder",))
    spec = builder_spec(project, COMMIT, config, host, ENV)
    benign = DesiredProject(
        "demo", "desired/demo.yaml",
        parse_sla({"ml_repo_url": "https://example.org/o/r.git", "ml_model_flavor": "pytorch"},
                  allow_file_repos=False),
    )
    benign_text = render_compose(ENV, builder_spec(benign, COMMIT, config, host, ENV))
    text = render_compose(ENV, spec)
    document = parse(text)
    assert shape(document) == shape(parse(benign_text))
    request = json.loads(render_request(spec))
    assert request == spec.request.as_json()
    assert request["source_url"] == url
    assert request["ref"] == ref
    assert request["labels"]["org.opencontainers.image.source"] == url


def test_quote_writes_an_ascii_double_quoted_scalar_with_dollars_doubled() -> None:
    assert quote("a$b") == '"a$$b"'
    assert quote(3) == '"3"'
    assert quote(True) == '"True"'
    for value in NASTY:
        rendered = quote(value)
        assert rendered.isascii()
        assert rendered.startswith('"') and rendered.endswith('"')
        assert "\n" not in rendered


def test_characters_beyond_the_bmp_use_the_yaml_long_escape() -> None:
    # JSON's surrogate pairs (\ud83d\ude00) are rejected by libyaml and go-yaml, i.e. by compose.
    rendered = quote("😀")
    assert "\\ud83d" not in rendered
    assert yaml.load(rendered, Loader=yaml.CSafeLoader) == "😀"
    assert yaml.safe_load(rendered) == "😀"


@pytest.mark.parametrize("value", [None, ["a"], {"a": 1}, b"bytes"])
def test_quote_refuses_anything_but_scalars(value: Any) -> None:
    with pytest.raises(TypeError):
        quote(value)


@pytest.mark.parametrize("isolate", [False, True])
def test_one_actor_dockerfile_builds_both_roles_on_shared_stages(isolate: bool) -> None:
    text = render_actor_dockerfile(ENV, base_image="example.org/python:3.11", flavor="keras",
                                   isolate=isolate)
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    # The builder sets this first image to the FL runtime image (Dockerfile.runtime.j2).
    assert instructions[0] == "FROM example.org/python:3.11 AS runtime"
    stages = [line.split(" AS ")[1] for line in instructions if line.startswith("FROM")]
    side = ["deps-install", "aggregator-deps-install"]
    expected = ["runtime", "deps", "learner", "aggregator-deps", "aggregator"]
    assert [s for s in stages if s not in side] == expected
    assert [s for s in stages if s in side] == (side if isolate else [])
    # Every stage but the first starts from an earlier one: the base image is pulled once.
    froms = [line for line in instructions if line.startswith("FROM")][1:]
    assert all(line.split()[1] in stages for line in froms)
    assert "ENV FLOPS_ROLE=learner" in text and 'CMD ["python3", "-m", "flops_actor.learner"]' \
        in text
    assert "FLOPS_MODEL_FLAVOR=keras" in text
    # The site's build arguments are declared in side stages only (never when not isolating).
    assert text.count("ARG PIP_INDEX_URL") == (2 if isolate else 0)


def test_the_runtime_dockerfile_installs_only_the_runtime_requirements() -> None:
    text = render_runtime_dockerfile(ENV, base_image="example.org/python:3.11")
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert instructions[0] == "FROM example.org/python:3.11 AS actor-base"
    assert "PYTHONPATH=/opt/flops/runtime" in text
    assert ".flops/requirements-runtime-image.txt" in text
    assert "requirements-learner" not in text and "COPY . " not in text
    # Always in a side stage: the one runtime image serves sites with and without an index.
    assert text.count("ARG PIP_INDEX_URL") == 1
