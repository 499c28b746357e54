"""ML repository URLs and refs: the allow-list, and the owner/repo images are named after."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.repo_url import (
    check_ref,
    check_repo_url,
    is_local,
    local_path,
    owner_and_repo,
)

NAME_COMPONENT = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/Owner/Repo.git",
        "http://git.example.org:8080/group/sub/repo",
        "ssh://git@example.org:2222/owner/repo.git",
        "git://example.org/owner/repo",
        "git@github.com:Owner/Repo.git",
        "example.org:owner/repo",
    ],
)
def test_network_urls_are_accepted_unchanged(url: str) -> None:
    for allow in (False, True):
        assert check_repo_url(url, allow_file_repos=allow) == url


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ext::sh -c touch% /tmp/pwned", "ext::"),
        ("fd::7", "remote-helper"),
        ("https::example.org/o/r", "remote-helper"),
        ("-uhttps://example.org/o/r", "'-'"),
        ("--upload-pack=touch /tmp/x", "'-'"),
        (" https://example.org/o/r", "surrounding spaces"),
        ("https://example.org/o/r\n", "control characters"),
        ("https://example.org/o/r\x00x", "control characters"),
        ("", "must not be empty"),
        ("ftp://example.org/o/r", "scheme 'ftp'"),
        ("javascript://example.org/o/r", "scheme 'javascript'"),
        ("https:///o/r", "no host"),
        ("https://example.org", "no repository path"),
        ("https://example.org/", "no repository path"),
        ("just-a-name", "is not a git URL"),
        ("https://bob:s3cret@github.com/o/r.git", "must not carry credentials"),
        ("https://ghp_token123@github.com/o/r.git", "git credential helper"),
        ("http://user@example.org/o/r", "must not carry credentials"),
        ("git://user:pw@example.org/o/r", "must not carry credentials"),
        ("ssh://git:pw@example.org/o/r", "must not carry credentials"),
    ],
)
def test_bad_urls_are_rejected_with_a_reason(url: str, fragment: str) -> None:
    for allow in (False, True):
        with pytest.raises(ValueError, match=re.escape(fragment)):
            check_repo_url(url, allow_file_repos=allow)


@pytest.mark.parametrize(
    "url", ["file:///srv/git/repo", "/srv/git/repo", "./repo", "../repos/repo", "~/repo", "."]
)
def test_local_urls_are_accepted_only_when_allowed(url: str) -> None:
    assert is_local(url)
    with pytest.raises(ValueError, match="allow_file_repos = true"):
        check_repo_url(url, allow_file_repos=False)
    assert check_repo_url(url, allow_file_repos=True) == url


def test_local_path_strips_only_the_file_scheme() -> None:
    assert local_path("file:///srv/git/repo") == "/srv/git/repo"
    assert local_path("./repo") == "./repo"
    assert local_path("/srv/ml%20repo") == "/srv/ml%20repo"


def test_file_urls_are_percent_decoded_like_git_does() -> None:
    assert local_path("file:///srv/ml%20repo/caf%C3%A9") == "/srv/ml repo/café"
    assert local_path("file:///srv/ml repo") == "/srv/ml repo"


@given(st.text(min_size=1))
def test_nothing_starting_with_a_dash_is_ever_accepted(rest: str) -> None:
    for allow in (False, True):
        with pytest.raises(ValueError):
            check_repo_url("-" + rest, allow_file_repos=allow)
        with pytest.raises(ValueError):
            check_ref("-" + rest)


@given(st.text(), st.text())
def test_nothing_with_a_remote_helper_separator_is_ever_accepted(head: str, tail: str) -> None:
    for allow in (False, True):
        with pytest.raises(ValueError):
            check_repo_url(f"{head}::{tail}", allow_file_repos=allow)


@pytest.mark.parametrize(
    "ref", ["main", "feature/x-1", "v1.2.0", "refs/heads/main", "release_2024", "a" * 40, "HEAD"]
)
def test_good_refs_are_accepted_unchanged(ref: str) -> None:
    assert check_ref(ref) == ref


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "-x",
        "--upload-pack=evil",
        "a..b",
        "..",
        "has space",
        "tab\there",
        "new\nline",
        "nul\x00",
        "del\x7f",
        "a~1",
        "a^",
        "a:b",
        "a?",
        "a*",
        "a[1]",
        "a\\b",
        "a@{1}",
        "a//b",
        "a/",
        "a.lock",
        "/a",
        ".hidden",
        "a/.b",
    ],
)
def test_bad_refs_are_rejected(ref: str) -> None:
    with pytest.raises(ValueError):
        check_ref(ref)


@given(st.text())
def test_an_accepted_ref_can_never_be_a_revision_range_or_an_option(ref: str) -> None:
    try:
        checked = check_ref(ref)
    except ValueError:
        return
    assert checked == ref
    assert not ref.startswith("-")
    assert ".." not in ref
    assert not any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in ref)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/Owner/Repo.git", ("owner", "repo")),
        ("git@github.com:Owner/Repo.git", ("owner", "repo")),
        ("ssh://git@host:22/Group/Sub/My.Repo.git", ("sub", "my-repo")),
        ("/srv/git/Team_A/ML_Repo", ("team-a", "ml-repo")),
        ("file:///srv/git/team/repo.git", ("team", "repo")),
        ("https://example.org/repo", ("example-org", "repo")),
        ("host:repo.git", ("host", "repo")),
    ],
)
def test_owner_and_repo(url: str, expected: tuple[str, str]) -> None:
    assert owner_and_repo(url) == expected


_PATH_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/?#:"), min_size=1
)


@given(owner=_PATH_TEXT, repo=_PATH_TEXT, scp=st.booleans())
def test_owner_and_repo_are_always_valid_registry_name_components(
    owner: str, repo: str, scp: bool
) -> None:
    url = f"git@example.org:{owner}/{repo}.git" if scp else f"https://example.org/{owner}/{repo}"
    for part in owner_and_repo(url):
        assert NAME_COMPONENT.match(part), part
