"""Names (DESIGN §6): image references, build keys and builder names are pure functions."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler import __version__
from reconciler.core.config import LOCAL_REGISTRY_PREFIX
from reconciler.core.naming import ROLES, build_key, builder_name, image_refs, split_ref
from reconciler.core.sla import PROJECT_NAME, parse_sla
from reconciler.edges.state import checked_key

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "f" * 40
# The distribution reference grammar: lower-case path components separated by '/', then a tag.
REFERENCE = re.compile(
    r"^(?P<host>[a-z0-9.-]+(?::[0-9]+)?)"
    r"(?P<path>(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+)"
    r":(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$"
)


def inputs(**sla: Any) -> dict[str, Any]:
    data = {"ml_repo_url": "https://github.com/Owner/Repo.git", "ml_model_flavor": "sklearn"}
    return parse_sla({**data, **sla}, allow_file_repos=True).image_inputs()


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/Owner/Repo.git",
        "https://GitHub.com/OWNER/REPO",
        "git@github.com:Owner/Repo.git",
        "ssh://git@github.com/Owner/Repo.git",
        "/srv/git/Owner/Repo",
        "file:///srv/git/Owner/Repo.git",
    ],
)
@pytest.mark.parametrize("prefix", ["127.0.0.1:5000", LOCAL_REGISTRY_PREFIX])
def test_image_references_are_registry_owner_repo_role_commit(url: str, prefix: str) -> None:
    refs = image_refs(prefix, url, COMMIT)
    assert refs == {role: f"{prefix}/owner/repo/{role}:{COMMIT}" for role in ROLES}
    assert set(ROLES) == {"learner", "aggregator"}


def test_image_references_are_lower_case_throughout() -> None:
    refs = image_refs("Registry.Example.org:5000", "git@h:Team/ML-Repo.git", COMMIT.upper())
    for role, ref in refs.items():
        assert ref == ref.lower()
        assert ref == f"registry.example.org:5000/team/ml-repo/{role}:{COMMIT}"


_PATH_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/?#:"), min_size=1
)


@given(owner=_PATH_TEXT, repo=_PATH_TEXT, commit=st.from_regex(r"\A[0-9a-f]{40}\Z"))
def test_image_references_are_always_valid_references(
    owner: str, repo: str, commit: str
) -> None:
    for role, ref in image_refs("127.0.0.1:5000", f"https://h/{owner}/{repo}", commit).items():
        match = REFERENCE.match(ref)
        assert match, ref
        assert match["tag"] == commit
        assert match["path"].endswith(f"/{role}")
        assert split_ref(ref) == (match["path"].removeprefix("/"), commit)


def test_split_ref_gives_the_repository_path_and_tag() -> None:
    ref = image_refs("127.0.0.1:5000", "https://h/owner/repo", COMMIT)["learner"]
    assert split_ref(ref) == ("owner/repo/learner", COMMIT)


def test_build_key_ignores_which_ref_named_the_commit() -> None:
    one = build_key(inputs(ml_repo_ref="main"), COMMIT, __version__)
    two = build_key(inputs(ml_repo_ref="v1.0"), COMMIT, __version__)
    three = build_key(inputs(), COMMIT, __version__)
    assert one == two == three
    assert re.fullmatch(r"[0-9a-f]{16}", one)


@pytest.mark.parametrize(
    "change",
    [
        {"ml_model_flavor": "pytorch"},
        {"ml_repo_url": "https://github.com/Owner/Other.git"},
        {"supported_platforms": ["linux/arm64"]},
        {"use_devel_base_images": True},
    ],
)
def test_build_key_changes_with_any_image_input(change: dict[str, Any]) -> None:
    assert build_key(inputs(**change), COMMIT, __version__) != build_key(
        inputs(), COMMIT, __version__
    )


def test_build_key_changes_with_the_commit_and_the_builder_version() -> None:
    base = build_key(inputs(), COMMIT, __version__)
    assert build_key(inputs(), OTHER_COMMIT, __version__) != base
    assert build_key(inputs(), COMMIT, __version__ + ".1") != base


def test_build_key_does_not_depend_on_dict_order() -> None:
    forward = inputs()
    backward = dict(reversed(list(forward.items())))
    assert build_key(forward, COMMIT, "1") == build_key(backward, COMMIT, "1")


_PROJECT = st.from_regex(PROJECT_NAME, fullmatch=True)
_KEY = st.from_regex(r"\A[0-9a-f]{16}\Z")


@given(project=_PROJECT, key=_KEY)
def test_builder_names_are_state_keys_and_dns_labels(project: str, key: str) -> None:
    name = builder_name(project, key)
    assert len(name) <= 63
    assert checked_key(name) == name
    assert name == name.lower()
    assert name.startswith("flops-build-")
    assert name.endswith(key[:12])


@given(project=_PROJECT, other=_PROJECT, key=_KEY)
def test_builder_names_of_different_projects_differ(project: str, other: str, key: str) -> None:
    # Two projects can build identical images (same repository and commit: same key); their
    # builders must still be distinct, even when the names share a long prefix.
    if project != other:
        assert builder_name(project, key) != builder_name(other, key)


def test_long_project_names_sharing_a_prefix_get_distinct_builders() -> None:
    stem = "federated-mnist-experiment-cohort-2026"
    assert len(stem) > 34
    names = {builder_name(f"{stem}-{suffix}", "0" * 16) for suffix in ("a", "b", "c")}
    assert len(names) == 3
    assert all(len(name) <= 63 for name in names)


def test_short_project_names_appear_whole_in_the_builder_name() -> None:
    assert builder_name("mnist-sklearn", "0123456789abcdef") == (
        "flops-build-mnist-sklearn-0123456789ab"
    )
