"""ML repository URLs and refs: which are allowed, and the owner/repo an image is named after.

Decision: allow-list, not deny-list. A URL is accepted only in one of the forms git clones
over the network (https, http, ssh, git, scp-like) or, when the operator opts in, a local
path; git's remote-helper syntax (``ext::``, ``fd::``) and anything starting with ``-`` can
never reach a git command line, so no SLA value can become a git option or a shell command.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

NETWORK_SCHEMES = ("https", "http", "ssh", "git")
SCP_LIKE = re.compile(r"^(?:[A-Za-z0-9._-]+@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>[^:\\]+)$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
_FORBIDDEN_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|/$|\.lock$|^/|^\.|/\.")
_NAME_PART = re.compile(r"[^a-z0-9]+")


def check_repo_url(url: str, *, allow_file_repos: bool) -> str:
    """The URL unchanged when it is acceptable, else ValueError with the fix."""
    if url != url.strip() or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ValueError("must be one line without surrounding spaces or control characters")
    if not url:
        raise ValueError("must not be empty")
    if url.startswith("-"):
        raise ValueError("must not start with '-' (it would be read as a git option)")
    if "::" in url:
        raise ValueError(
            "git remote-helper URLs like 'ext::' or 'fd::' are not allowed; "
            "use an https://, ssh:// or git:// URL"
        )
    if is_local(url):
        if not allow_file_repos:
            raise ValueError(
                "local paths and file:// URLs are off; use a network URL, or set "
                "allow_file_repos = true in the configuration"
            )
        return url
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme not in NETWORK_SCHEMES:
            raise ValueError(
                f"scheme '{parts.scheme}' is not allowed; use one of "
                + ", ".join(f"{s}://" for s in NETWORK_SCHEMES)
            )
        if not parts.hostname:
            raise ValueError("has no host name")
        if parts.password is not None or (parts.username and parts.scheme != "ssh"):
            raise ValueError(
                "must not carry credentials (user:password@ or a token@): they would show in "
                "process lists, state and logs; give the reconciler and image-builder hosts a "
                "git credential helper or an SSH key (ssh://git@host/owner/repo.git) instead"
            )
        if not _path_parts(parts.path):
            raise ValueError("names no repository path after the host")
        return url
    match = SCP_LIKE.match(url)
    if match and _path_parts(match["path"]):
        return url
    raise ValueError(
        "is not a git URL; use e.g. https://github.com/<owner>/<repo>.git "
        "or git@github.com:<owner>/<repo>.git"
    )


def check_ref(ref: str) -> str:
    """A branch, tag or commit name that cannot be mistaken for an option or a revision range."""
    if not ref:
        raise ValueError("must not be empty; leave the key out to follow the remote's HEAD")
    if ref.startswith("-"):
        raise ValueError("must not start with '-' (it would be read as a git option)")
    if _FORBIDDEN_REF.search(ref):
        raise ValueError(
            "is not a valid git branch, tag or commit name (no spaces, '..', '~', '^', ':', "
            "'?', '*', '[', '\\', control characters)"
        )
    return ref


def is_local(url: str) -> bool:
    return url.startswith(("file://", "/", "./", "../", "~")) or url in (".", "..")


def local_path(url: str) -> str:
    """The path of a local repository; a file:// URL is percent-decoded, as git does."""
    return unquote(url.removeprefix("file://")) if url.startswith("file://") else url


def owner_and_repo(url: str) -> tuple[str, str]:
    """The two last path parts of the URL, cleaned to what a registry accepts as a name."""
    if is_local(url):
        path = local_path(url)
        host = "local"
    elif "://" in url:
        parts = urlsplit(url)
        path, host = parts.path, parts.hostname or "git"
    else:
        match = SCP_LIKE.match(url)
        path, host = (match["path"], match["host"]) if match else (url, "git")
    parts_ = _path_parts(path)
    repo = parts_[-1].removesuffix(".git") if parts_ else "repo"
    owner = parts_[-2] if len(parts_) >= 2 else host
    return _name_part(owner), _name_part(repo)


def _path_parts(path: str) -> list[str]:
    return [p for p in PurePosixPath(path).parts if p not in ("/", ".", "..", "~")]


def _name_part(text: str) -> str:
    cleaned = _NAME_PART.sub("-", text.lower()).strip("-")
    return cleaned or "x"
