"""Configuration (DESIGN §3): defaults < TOML file < RECONCILER_* environment < flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.config import (
    IMAGE_BUILDER_ADDON,
    LOCAL_REGISTRY_PREFIX,
    MAX_DURATION,
    Config,
    HostConfig,
    parse_duration,
)
from reconciler.edges.settings import (
    ConfigError,
    check_environment,
    config_path,
    env_overrides,
    load_config,
    template_dirs,
)

FULL_TOML = """\
registry = "http://127.0.0.1:5000"
backend = "swarm"
allow_file_repos = true
max_concurrent_builds = 4
build_timeout = "30m"
resync_interval = "90s"
[builder]
image = "flops-builder:file"
base_image = "debian:bookworm"
[images]
base_image = "python:3.12-slim"
[[hosts]]
name = "edge-1"
docker_host = "ssh://edge-1"
addons = ["image-builder"]
[[hosts]]
name = "edge-2"
"""


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "reconciler.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_and_no_environment_gives_the_embedded_defaults() -> None:
    config = load_config(None, environ={})
    assert config == Config()
    assert config.registry == "local"
    assert config.local_registry
    assert config.image_prefix == LOCAL_REGISTRY_PREFIX
    assert config.backend == "compose"
    assert config.allow_file_repos is False
    assert config.max_concurrent_builds == 2
    assert config.build_timeout == 30 * 60
    assert config.resync_interval == 60
    assert config.builder.image == "flops-builder:latest"
    assert [host.name for host in config.image_builder_hosts()] == ["local"]


def test_toml_values_are_read(tmp_path: Path) -> None:
    config = load_config(toml(tmp_path, FULL_TOML), environ={})
    assert config.registry == "http://127.0.0.1:5000"
    assert not config.local_registry
    assert config.image_prefix == "127.0.0.1:5000"
    assert config.backend == "swarm"
    assert config.allow_file_repos is True
    assert config.max_concurrent_builds == 4
    assert config.build_timeout == 1800.0
    assert config.resync_interval == 90.0
    assert config.builder.image == "flops-builder:file"
    assert config.builder.base_image == "debian:bookworm"
    assert config.images.base_image == "python:3.12-slim"
    assert [host.name for host in config.hosts] == ["edge-1", "edge-2"]
    assert [host.name for host in config.image_builder_hosts()] == ["edge-1"]


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    environ = {
        "RECONCILER_REGISTRY": "https://registry.example.org:5443/",
        "RECONCILER_BUILDER_IMAGE": "flops-builder:env",
        "RECONCILER_MAX_CONCURRENT_BUILDS": "7",
        "RECONCILER_ALLOW_FILE_REPOS": "false",
        "RECONCILER_BUILD_TIMEOUT": "1h",
        "RECONCILER_IMAGES_BASE_IMAGE": "python:3.13-slim",
        "RECONCILER_UNRELATED": "ignored",
        "OTHER_REGISTRY": "ftp://ignored",
    }
    config = load_config(toml(tmp_path, FULL_TOML), environ=environ)
    assert config.registry == "https://registry.example.org:5443"
    assert config.image_prefix == "registry.example.org:5443"
    assert config.builder.image == "flops-builder:env"
    assert config.builder.base_image == "debian:bookworm", "sections merge key by key"
    assert config.max_concurrent_builds == 7
    assert config.allow_file_repos is False
    assert config.build_timeout == 3600.0
    assert config.images.base_image == "python:3.13-slim"
    assert config.backend == "swarm"


def test_env_overrides_only_knows_configuration_keys() -> None:
    found = env_overrides({"RECONCILER_REGISTRY": "local", "RECONCILER_BUILDER_IMAGE": "b",
                           "RECONCILER_HOSTS": "x", "RECONCILER_NOPE": "1"})
    assert found == {"registry": "local", "builder": {"image": "b"}}


def test_flags_win_over_environment_and_file(tmp_path: Path) -> None:
    config = load_config(
        toml(tmp_path, FULL_TOML),
        environ={"RECONCILER_REGISTRY": "http://env:5000", "RECONCILER_BUILDER_IMAGE": "env"},
        overrides={"registry": "http://flag:5000", "builder": {"image": "flag"}},
    )
    assert config.registry == "http://flag:5000"
    assert config.builder.image == "flag"
    assert config.builder.base_image == "debian:bookworm"


@pytest.mark.parametrize("source", ["file", "env", "flag"])
def test_a_bad_registry_url_names_the_key(tmp_path: Path, source: str) -> None:
    bad = "ftp://registry.example.org"
    path = toml(tmp_path, f'registry = "{bad}"\n') if source == "file" else None
    environ = {"RECONCILER_REGISTRY": bad} if source == "env" else {}
    overrides = {"registry": bad} if source == "flag" else {}
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=environ, overrides=overrides)
    assert "registry:" in str(info.value)
    assert bad in str(info.value)


@pytest.mark.parametrize(
    "registry", ["http://", "127.0.0.1:5000", "http://host:5000/v2/path", "registry"]
)
def test_registry_must_be_local_or_a_bare_http_url(registry: str) -> None:
    with pytest.raises(ConfigError, match="registry"):
        load_config(None, environ={}, overrides={"registry": registry})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("build_timeout", "soon"),
        ("build_timeout", "0s"),
        ("build_timeout", "-5m"),
        ("build_timeout", "10 days"),
        ("resync_interval", "nan"),
        ("resync_interval", ""),
        ("registry_timeout", "1x"),
        ("git_timeout", "inf"),
    ],
)
def test_a_bad_duration_names_the_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, environ={f"RECONCILER_{key.upper()}": value})
    assert f"{key}:" in str(info.value)


@pytest.mark.parametrize("literal", ["nan", "inf", "-1", "0"])
def test_non_finite_or_non_positive_toml_durations_are_refused(
    tmp_path: Path, literal: str
) -> None:
    with pytest.raises(ConfigError, match="build_timeout"):
        load_config(toml(tmp_path, f"build_timeout = {literal}\n"), environ={})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800.0), ("90s", 90.0), ("90", 90.0), ("1h", 3600.0), ("1.5h", 5400.0),
     ("250ms", 0.25), (" 10 s ", 10.0), (45, 45.0), (2.5, 2.5)],
)
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@given(amount=st.integers(1, 10**6), unit=st.sampled_from(["ms", "s", "m", "h", "d", ""]))
def test_every_unit_scales_the_amount_up_to_a_year(amount: int, unit: str) -> None:
    factor = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "": 1}[unit]
    if amount * factor <= MAX_DURATION:
        assert parse_duration(f"{amount}{unit}") == pytest.approx(amount * factor)
    else:
        with pytest.raises(ValueError, match="at most 365d"):
            parse_duration(f"{amount}{unit}")


@pytest.mark.parametrize("literal", ["1e300", "31536001", '"366d"', '"9000000h"'])
def test_durations_beyond_a_year_are_refused(tmp_path: Path, literal: str) -> None:
    """1e300 seconds used to reach threading's Event.wait and overflow there."""
    with pytest.raises(ConfigError, match=r"resync_interval: .*at most 365d"):
        load_config(toml(tmp_path, f"resync_interval = {literal}\n"), environ={})


def test_a_retry_cap_below_the_retry_base_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"retry_cap \(5s\) is shorter than retry_base \(60s\)"):
        load_config(toml(tmp_path, 'retry_base = "1m"\nretry_cap = "5s"\n'), environ={})
    config = load_config(toml(tmp_path, 'retry_base = "1m"\nretry_cap = "1m"\n'), environ={})
    assert config.retry_cap == config.retry_base == 60.0


def test_unknown_reconciler_variables_are_errors_with_a_suggestion() -> None:
    options = ("RECONCILER_DESIRED",)
    check_environment({"RECONCILER_REGISTRY": "local", "RECONCILER_DESIRED": "d",
                       "RECONCILER_BUILDER_IMAGE": "b", "OTHER_THING": "x"}, options)
    with pytest.raises(ConfigError) as info:
        check_environment({"RECONCILER_REGISTY": "http://r:5000", "RECONCILER_ZZZ": "1"},
                          options)
    message = str(info.value)
    assert "RECONCILER_REGISTY (did you mean RECONCILER_REGISTRY?)" in message
    assert "RECONCILER_ZZZ" in message and "did you mean" not in message.split("ZZZ")[1]


def test_true_is_not_a_duration() -> None:
    with pytest.raises(ValueError):
        parse_duration(True)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("max_concurrent_builds = 0\n", "max_concurrent_builds"),
        ('backend = "kubernetes"\n', "backend"),
        ("registri = 'local'\n", "registri"),
        ("[builder]\nimagee = 'x'\n", "builder.imagee"),
        ("[[hosts]]\ndocker_host = 'unix:///x'\n", "hosts.0.name"),
    ],
)
def test_bad_values_and_unknown_keys_name_the_key(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = toml(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_a_malformed_toml_file_names_the_file(tmp_path: Path) -> None:
    path = toml(tmp_path, "registry = \n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(path, environ={})
    assert str(path) in str(info.value)


def test_a_missing_explicit_configuration_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        config_path(str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml", environ={})


def test_the_default_configuration_file_is_used_when_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert config_path(None) is None
    toml(tmp_path, "max_concurrent_builds = 3\n")
    found = config_path(None)
    assert found is not None
    assert load_config(found, environ={}).max_concurrent_builds == 3
    other = tmp_path / "other.toml"
    other.write_text("max_concurrent_builds = 5\n", encoding="utf-8")
    assert config_path(str(other)) == other


def test_the_process_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_MAX_CONCURRENT_BUILDS", "9")
    assert load_config(None).max_concurrent_builds == 9


def test_templates_override_comes_first_and_shipped_templates_follow(tmp_path: Path) -> None:
    dirs = template_dirs(str(tmp_path))
    assert dirs[0] == tmp_path
    assert any((d / "builder-compose.yaml.j2").is_file() for d in dirs[1:])
    assert tmp_path not in template_dirs(None)


@pytest.mark.parametrize(
    ("host", "socket"),
    [
        (HostConfig(name="a"), "/var/run/docker.sock"),
        (HostConfig(name="b", docker_host="unix:///run/user/1000/docker.sock"),
         "/run/user/1000/docker.sock"),
        (HostConfig(name="c", docker_host="ssh://c"), "/var/run/docker.sock"),
        (HostConfig(name="d", docker_host="tcp://d:2375", docker_socket="/srv/d.sock"),
         "/srv/d.sock"),
    ],
)
def test_the_socket_mounted_into_builders(host: HostConfig, socket: str) -> None:
    assert host.socket_path() == socket


def test_only_hosts_with_the_addon_build_images() -> None:
    config = Config(hosts=(HostConfig(name="a"), HostConfig(name="b", addons=("gpu",)),
                           HostConfig(name="c", addons=("gpu", IMAGE_BUILDER_ADDON))))
    assert [host.name for host in config.image_builder_hosts()] == ["c"]


def test_swarm_with_a_local_registry_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(toml(tmp_path, 'backend = "swarm"\n'), environ={})
    assert 'backend = "swarm" needs registry' in str(info.value)
    assert "environment): backend" in str(info.value)  # no empty key before the message
    config = load_config(toml(tmp_path, 'backend = "swarm"\nregistry = "http://r:5000"\n'),
                         environ={})
    assert config.backend == "swarm"
    assert config.placement_timeout == 60.0
    assert config.swarm_manager.docker_host == "unix:///var/run/docker.sock"


def test_a_local_registry_with_several_image_builder_hosts_is_an_error(tmp_path: Path) -> None:
    hosts = "".join(f'[[hosts]]\nname = "{name}"\naddons = ["image-builder"]\n'
                    for name in ("a", "b"))
    with pytest.raises(ConfigError) as info:
        load_config(toml(tmp_path, hosts), environ={})
    assert "several [[hosts]] have the image-builder addon" in str(info.value)
    assert len(load_config(toml(tmp_path, 'registry = "http://r:5000"\n' + hosts),
                           environ={}).image_builder_hosts()) == 2


def test_placement_timeout_is_a_duration(tmp_path: Path) -> None:
    assert load_config(toml(tmp_path, 'placement_timeout = "2m"\n'),
                       environ={}).placement_timeout == 120.0
    with pytest.raises(ConfigError) as info:
        load_config(toml(tmp_path, 'placement_timeout = "0s"\n'), environ={})
    assert "placement_timeout" in str(info.value)


def test_a_registry_url_with_credentials_is_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, environ={"RECONCILER_REGISTRY": "http://bob:pw-5ecret@10.0.0.1:5000"})
    message = str(info.value)
    assert "must not carry credentials" in message and "registry 10.0.0.1 without" in message
    assert "pw-5ecret" not in message and "bob" not in message
