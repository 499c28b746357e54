"""Resolving an ML repository ref to a commit by asking the remote (ls-remote), never cloning.

Decision: the URL and ref were allow-listed by the SLA model; here they are still passed after
``--`` and with remote-helper transports disabled, so even a value that slipped through could
not become a git option or run a command. Credentials prompts are off: a private repository
fails fast with a message instead of hanging the loop.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from git.cmd import Git
from git.exc import GitCommandError

from reconciler.core.repo_url import COMMIT, is_local, local_path

_SAFE_CONFIG = ("-c", "protocol.ext.allow=never", "-c", "protocol.fd.allow=never")


class GitRemoteError(RuntimeError):
    """The remote could not be asked or does not have the ref; ``str()`` is one line."""


def resolve_commit(url: str, ref: str | None, *, timeout: float) -> str:
    """The commit that ``ref`` (default: the remote's HEAD) names on the remote ``url``."""
    if ref is not None and COMMIT.match(ref):
        return ref
    location = local_path(url) if is_local(url) else url
    if is_local(url) and not os.path.exists(location):
        raise GitRemoteError(f"repository {url} does not exist; check ml_repo_url")
    wanted = ref or "HEAD"
    # `<ref>^{}` too: ls-remote lists an annotated tag's peeled commit only when asked.
    output = _ls_remote(location, wanted, f"{wanted}^{{}}", timeout=timeout)
    return _pick(url, ref, dict(_parse(output)))


class RemoteRefs:
    """Every ref of each remote, asked once: many projects on one repository cost one
    ls-remote, and several repositories are asked in parallel (a resync over many projects).
    """

    def __init__(self, *, timeout: float, workers: int = 8) -> None:
        self.timeout = timeout
        self.workers = workers
        self._refs: dict[str, dict[str, str] | GitRemoteError] = {}

    def prefetch(self, urls: set[str]) -> None:
        todo = sorted(url for url in urls if url not in self._refs)
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            for url, answer in zip(todo, pool.map(self._list, todo), strict=True):
                self._refs[url] = answer

    def resolve(self, url: str, ref: str | None) -> str:
        if ref is not None and COMMIT.match(ref):
            return ref
        if url not in self._refs:
            self.prefetch({url})
        answer = self._refs[url]
        if isinstance(answer, GitRemoteError):
            raise answer
        return _pick(url, ref, answer)

    def _list(self, url: str) -> dict[str, str] | GitRemoteError:
        location = local_path(url) if is_local(url) else url
        if is_local(url) and not os.path.exists(location):
            return GitRemoteError(f"repository {url} does not exist; check ml_repo_url")
        try:
            return dict(_parse(_ls_remote(location, timeout=self.timeout)))
        except GitRemoteError as error:
            return error


def _pick(url: str, ref: str | None, refs: dict[str, str]) -> str:
    wanted = ref or "HEAD"
    for candidate in _candidates(wanted):
        if candidate in refs:
            return refs[candidate]
    if ref is None:
        raise GitRemoteError(f"repository {url} has no HEAD (is it empty?); push a commit")
    raise GitRemoteError(
        f"ref '{ref}' not found in {url}; set ml_repo_ref to an existing branch, tag or commit"
    )


def _ls_remote(location: str, *patterns: str, timeout: float) -> str:
    env = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true"}
    command = ["git", *_SAFE_CONFIG, "ls-remote", "--", location, *patterns]
    try:
        output: str = Git().execute(
            command, env=env, kill_after_timeout=timeout, with_extended_output=False
        )
    except GitCommandError as error:
        raise GitRemoteError(_explain(location, error)) from None
    return output


def _parse(output: str) -> list[tuple[str, str]]:
    pairs = []
    for line in output.splitlines():
        sha, _, name = line.partition("\t")
        if COMMIT.match(sha.strip()):
            pairs.append((name.strip(), sha.strip()))
    return pairs


def _candidates(ref: str) -> list[str]:
    if ref == "HEAD" or ref.startswith("refs/"):
        return [f"{ref}^{{}}", ref]
    return [
        f"refs/heads/{ref}",
        f"refs/tags/{ref}^{{}}",  # an annotated tag, peeled to its commit
        f"refs/tags/{ref}",
    ]


def _explain(location: str, error: GitCommandError) -> str:
    stderr = str(error.stderr or "").strip().replace("\n", " ")
    if error.status in (-9, -15) or "timed out" in str(error).lower():
        return f"git ls-remote {location} timed out; is the remote reachable?"
    detail = stderr.removeprefix("stderr: ").strip("' ") or f"exit status {error.status}"
    return f"cannot read repository {location}: {detail}; check ml_repo_url and access rights"
