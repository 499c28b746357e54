"""The desired directory: one SLA file per project, parsed safely; every error names its file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core.project import Desired, DesiredProject, InvalidProject
from reconciler.core.sla import PROJECT_NAME, Flavor
from reconciler.edges.desired import (
    MAX_BYTES,
    MAX_DEPTH,
    DesiredDirMissing,
    load_desired,
    load_file,
    sla_files,
    storage_key,
)
from reconciler.edges.state import checked_key

URL = "https://github.com/owner/repo.git"
VALID = f"ml_repo_url: {URL}\nml_model_flavor: sklearn\n"


def write(directory: Path, name: str, content: str | bytes) -> Path:
    path = directory / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def invalid(path: Path, *, allow_file_repos: bool = False) -> InvalidProject:
    project = load_file(path, allow_file_repos=allow_file_repos)
    assert isinstance(project, InvalidProject), project
    assert project.sla_file == str(path)
    assert project.error.startswith(f"{path}: "), "every error names the file"
    return project


def valid(path: Path, *, allow_file_repos: bool = False) -> DesiredProject:
    project = load_file(path, allow_file_repos=allow_file_repos)
    assert isinstance(project, DesiredProject), project
    return project


# --- good files -----------------------------------------------------------------------------


def test_a_yaml_file_is_a_project_named_after_its_stem(tmp_path: Path) -> None:
    path = write(tmp_path, "mnist-sklearn.yaml", VALID + "customerID: acme\n")
    project = valid(path)
    assert project.name == "mnist-sklearn"
    assert project.sla_file == str(path)
    assert project.sla.customer_id == "acme"
    assert project.sla.ml_model_flavor is Flavor.sklearn


def test_yaml_yml_and_json_files_give_the_same_sla(tmp_path: Path) -> None:
    data = {"ml_repo_url": URL, "ml_model_flavor": "keras", "training_configuration": {
        "training_rounds": 7, "data_tags": ["a", "b"]}}
    one = valid(write(tmp_path, "one.yaml", yaml.safe_dump(data)))
    two = valid(write(tmp_path, "two.yml", yaml.safe_dump(data)))
    three = valid(write(tmp_path, "three.json", json.dumps(data)))
    assert one.sla == two.sla == three.sla
    assert three.sla.training_configuration.data_tags == ("a", "b")


def test_the_directory_listing_skips_hidden_files_and_other_suffixes(tmp_path: Path) -> None:
    write(tmp_path, "b.yaml", VALID)
    write(tmp_path, "a.json", json.dumps({"ml_repo_url": URL, "ml_model_flavor": "sklearn"}))
    write(tmp_path, "c.yml", VALID)
    write(tmp_path, ".hidden.yaml", "not: [valid")
    write(tmp_path, "notes.txt", "hello")
    write(tmp_path, "backup.yaml~", "x")
    assert [p.name for p in sla_files(tmp_path)] == ["a.json", "b.yaml", "c.yml"]
    assert sorted(load_desired(tmp_path, allow_file_repos=False)) == ["a", "b", "c"]


@pytest.mark.parametrize("missing", ["absent", "a-file"])
def test_a_missing_desired_directory_is_an_error_not_an_empty_desire(
    tmp_path: Path, missing: str
) -> None:
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(DesiredDirMissing, match=f"desired directory .*{missing}.* --desired"):
        load_desired(tmp_path / missing, allow_file_repos=False)


def test_links_out_of_the_directory_dangling_links_directories_and_fifos_are_refused(
    tmp_path: Path,
) -> None:
    desired, outside = tmp_path / "desired", tmp_path / "outside"
    desired.mkdir()
    outside.mkdir()
    write(outside, "secret.yaml", VALID)
    write(desired, "real.yaml", VALID)
    (desired / "inside.yaml").symlink_to("real.yaml")
    (desired / "escape.yaml").symlink_to(outside / "secret.yaml")
    (desired / "dangling.yaml").symlink_to(tmp_path / "nothing.yaml")
    (desired / "folder.yaml").mkdir()
    os.mkfifo(desired / "pipe.yaml")  # reading it would block the loop forever
    projects = load_desired(desired, allow_file_repos=False)
    assert isinstance(projects["real"], DesiredProject)
    assert isinstance(projects["inside"], DesiredProject)  # a link that stays inside: fine
    reasons = {
        "escape": "symbolic link out of the desired directory",
        "dangling": "symbolic link to nothing",
        "folder": "is a directory",
        "pipe": "not a regular file",
    }
    for name, reason in reasons.items():
        project = projects[name]
        assert isinstance(project, InvalidProject), name
        assert project.error.startswith(f"{desired / (name + '.yaml')}: "), project.error
        assert reason in project.error, project.error


def test_one_bad_file_does_not_affect_the_others(tmp_path: Path) -> None:
    write(tmp_path, "good.yaml", VALID)
    write(tmp_path, "bad.yaml", "ml_repo_url: [")
    projects = load_desired(tmp_path, allow_file_repos=False)
    assert isinstance(projects["good"], DesiredProject)
    assert isinstance(projects["bad"], InvalidProject)


# --- schema errors name the file ------------------------------------------------------------


def test_unknown_key_names_file_key_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", VALID.replace("ml_repo_url", "ml_repo_urll"))
    error = invalid(path).error
    assert "unknown key `ml_repo_urll`" in error
    assert "did you mean `ml_repo_url`?" in error


def test_unknown_nested_key_names_its_path(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", VALID + "training_configuration:\n  training_roundz: 3\n")
    error = invalid(path).error
    assert "`training_configuration.training_roundz`" in error
    assert "did you mean `training_rounds`?" in error


def test_missing_repo_url(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "ml_model_flavor: sklearn\n")
    assert "missing required key `ml_repo_url`" in invalid(path).error


def test_unsupported_flavor(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", VALID.replace("sklearn", "jax"))
    error = invalid(path).error
    assert "`ml_model_flavor`" in error
    assert "'jax'" in error


def test_wrong_type(tmp_path: Path) -> None:
    path = write(tmp_path, "p.json", json.dumps(
        {"ml_repo_url": URL, "ml_model_flavor": "sklearn", "resource_constraints": {"vcpus": "x"}}
    ))
    assert "`resource_constraints.vcpus`" in invalid(path).error


@pytest.mark.parametrize(("content", "kind"), [("", "empty"), ("- a\n- b\n", "list"), ("7", "int")])
def test_a_document_that_is_not_a_mapping(tmp_path: Path, content: str, kind: str) -> None:
    assert f"the document is {kind}" in invalid(write(tmp_path, "p.yaml", content)).error


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("ml_repo_url: 'ext::sh -c touch% /tmp/pwned'", "ext::"),
        ("ml_repo_url: -uhttps://example.org/o/r", "'-'"),
        ("ml_repo_ref: --upload-pack=evil", "'-'"),
        ("ml_repo_ref: main..evil", "'..'"),
        ("ml_repo_ref: 'two words'", "no spaces"),
    ],
)
def test_dangerous_urls_and_refs_are_invalid(tmp_path: Path, line: str, fragment: str) -> None:
    lines = [f"ml_repo_url: {URL}", "ml_model_flavor: sklearn"]
    key = line.split(":", 1)[0]
    lines = [entry for entry in lines if not entry.startswith(key)] + [line]
    path = write(tmp_path, "p.yaml", "\n".join(lines) + "\n")
    for allow in (False, True):
        error = invalid(path, allow_file_repos=allow).error
        assert f"key `{key}`" in error
        assert fragment in error


# --- file names -----------------------------------------------------------------------------


@pytest.mark.parametrize("stem", ["Bad Name", "UPPER", "-dash", "_under", "a.b", "x" * 64, "ü"])
def test_a_file_name_that_is_not_a_project_name(tmp_path: Path, stem: str) -> None:
    path = write(tmp_path, f"{stem}.yaml", VALID)
    project = invalid(path)
    assert "~" in project.name
    assert not PROJECT_NAME.match(project.name)
    assert checked_key(project.name) == project.name
    assert f"file name `{stem}` is not a valid project name" in project.error
    assert load_desired(tmp_path, allow_file_repos=False) == {project.name: project}


@given(st.text(min_size=1))
def test_storage_keys_are_safe_and_never_a_project_name(name: str) -> None:
    key = storage_key(name)
    assert checked_key(key) == key
    assert not PROJECT_NAME.match(key)


def test_storage_keys_differ_for_names_with_the_same_slug() -> None:
    assert storage_key("My Project") != storage_key("my-project ")


def test_two_files_with_the_same_stem_make_the_project_invalid(tmp_path: Path) -> None:
    document = json.dumps({"ml_repo_url": URL, "ml_model_flavor": "keras"})
    first = write(tmp_path, "twin.json", document)
    second = write(tmp_path, "twin.yaml", VALID)
    projects = load_desired(tmp_path, allow_file_repos=False)
    assert list(projects) == ["twin"]
    twin = projects["twin"]
    assert isinstance(twin, InvalidProject)
    assert str(first) in twin.error
    assert str(second) in twin.error


# --- hostile or broken content --------------------------------------------------------------


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    lines = [f"ml_repo_url: {URL}", "ml_model_flavor: sklearn", "verbose: true", "  bad: : x"]
    path = write(tmp_path, "p.yaml", "\n".join(lines) + "\n")
    error = invalid(path).error
    assert "malformed YAML" in error
    assert f"line {len(lines)}" in error


def test_malformed_json_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "p.json", '{\n"ml_repo_url": "x",\n"ml_model_flavor": sklearn\n}')
    error = invalid(path).error
    assert "malformed JSON" in error
    assert "line 3" in error


BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
ml_repo_url: https://github.com/owner/repo.git
ml_model_flavor: sklearn
post_training_steps: *i
"""


def test_a_yaml_alias_bomb_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "bomb.yaml", BILLION_LAUGHS)
    assert path.stat().st_size < MAX_BYTES
    assert "anchors and aliases" in invalid(path).error


def test_a_shared_mapping_through_an_alias_is_rejected(tmp_path: Path) -> None:
    content = VALID + "training_configuration: &t {training_rounds: 2}\nresource_constraints: *t\n"
    assert "anchors and aliases" in invalid(write(tmp_path, "p.yaml", content)).error


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_absurd_nesting_is_rejected_instead_of_crashing(tmp_path: Path, suffix: str) -> None:
    # 100,000 levels in 200 KB: libyaml's composer and the JSON decoder recurse per level
    # (the first used to kill the process with a segmentation fault).
    depth = 100_000
    path = write(tmp_path, f"deep{suffix}", "[" * depth + "]" * depth)
    assert path.stat().st_size <= MAX_BYTES
    error = invalid(path).error
    # Our own depth check, or libyaml's (newer libyaml refuses > 1000 levels while scanning).
    assert "nests deeper than" in error or "exceeded maximum nesting depth" in error, error


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_nesting_up_to_the_limit_is_only_a_schema_matter(tmp_path: Path, suffix: str) -> None:
    inner = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    path = write(tmp_path, f"p{suffix}", '{"extra": ' + inner + "}")
    error = invalid(path).error
    assert "nests deeper" not in error
    assert "unknown key `extra`" in error
    deeper = write(tmp_path, f"q{suffix}", '{"extra": [' + inner + "]}")
    assert "nests deeper" in invalid(deeper).error


def test_a_file_over_the_size_limit_is_rejected(tmp_path: Path) -> None:
    padding = MAX_BYTES - len(VALID.encode())
    at_limit = write(tmp_path, "at.yaml", VALID + "#" * (padding - 1) + "\n")
    assert at_limit.stat().st_size == MAX_BYTES
    valid(at_limit)
    over = write(tmp_path, "over.yaml", VALID + "#" * padding + "\n")
    assert over.stat().st_size == MAX_BYTES + 1
    assert f"larger than {MAX_BYTES // 1024} KiB" in invalid(over).error


def test_non_utf8_content_names_the_byte(tmp_path: Path) -> None:
    raw = VALID.encode() + b"customerID: caf\xe9\n"
    path = write(tmp_path, "p.yaml", raw)
    error = invalid(path).error
    assert "not UTF-8" in error
    bad = raw.index(b"\xe9")
    assert f"byte {bad}" in error


@settings(max_examples=60, deadline=None)
@given(content=st.binary(max_size=400), suffix=st.sampled_from([".yaml", ".yml", ".json"]))
def test_reading_never_raises_for_any_bytes(content: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = write(Path(directory), f"p{suffix}", content)
        project: Desired = load_file(path, allow_file_repos=True)
        assert project.name == "p"
        if isinstance(project, InvalidProject):
            assert project.error.startswith(f"{path}: ")


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=300))
def test_reading_never_raises_for_any_text(content: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = write(Path(directory), "p.yaml", content)
        assert load_file(path, allow_file_repos=False).name == "p"


# --- local repositories ---------------------------------------------------------------------


@pytest.mark.parametrize("url", ["./repo", "../elsewhere/repo", "file:///srv/git/repo", "/srv/r"])
def test_local_repositories_are_off_by_default(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, "p.yaml", VALID.replace(URL, url))
    assert "allow_file_repos" in invalid(path).error


def test_relative_local_paths_resolve_against_the_sla_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    desired = tmp_path / "config" / "desired"
    desired.mkdir(parents=True)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    here = valid(write(desired, "here.yaml", VALID.replace(URL, "./repo")), allow_file_repos=True)
    assert here.sla.ml_repo_url == str((desired / "repo").resolve())
    up = valid(
        write(desired, "up.yaml", VALID.replace(URL, "../../ml/repo")), allow_file_repos=True
    )
    assert up.sla.ml_repo_url == str((tmp_path / "ml" / "repo").resolve())


def test_file_urls_and_home_paths_become_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    url_file = valid(
        write(tmp_path, "f.yaml", VALID.replace(URL, f"file://{tmp_path}/git/repo")),
        allow_file_repos=True,
    )
    assert url_file.sla.ml_repo_url == str(tmp_path / "git" / "repo")
    home = valid(write(tmp_path, "h.yaml", VALID.replace(URL, "~/repo")), allow_file_repos=True)
    assert home.sla.ml_repo_url == str(tmp_path / "home" / "repo")
    repo = tmp_path / "ml repo"
    encoded = valid(
        write(tmp_path, "e.yaml", VALID.replace(URL, repo.as_uri())), allow_file_repos=True
    )
    assert "%20" in repo.as_uri()
    assert encoded.sla.ml_repo_url == str(repo)


def test_network_urls_are_left_alone_when_local_repos_are_allowed(tmp_path: Path) -> None:
    assert valid(write(tmp_path, "p.yaml", VALID), allow_file_repos=True).sla.ml_repo_url == URL
