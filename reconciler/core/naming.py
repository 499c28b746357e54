"""Names derived from a project's image inputs: image references, build keys, builder names.

Decision: every name is a pure function of (image inputs, resolved commit, builder version),
so the reconciler can recompute it after a crash and find the same builder or the same images
instead of remembering them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from reconciler.core.repo_url import owner_and_repo

ROLES = ("learner", "aggregator")


def image_refs(prefix: str, repo_url: str, commit: str) -> dict[str, str]:
    """``<registry>/<owner>/<repo>/<role>:<commit>`` for each role, lower-cased."""
    owner, repo = owner_and_repo(repo_url)
    return {role: f"{prefix}/{owner}/{repo}/{role}:{commit}".lower() for role in ROLES}


def split_ref(ref: str) -> tuple[str, str]:
    """(repository name without the registry host, tag) of a full image reference."""
    name, _, tag = ref.rpartition(":")
    _, _, path = name.partition("/")
    return path, tag


def digest_of(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def build_key(
    image_inputs: dict[str, Any],
    commit: str,
    builder_version: str,
    settings: dict[str, Any] | None = None,
) -> str:
    """Identifies one build: equal keys mean identical images.

    The ref is left out: two refs that resolve to one commit build the same images.
    """
    inputs = {k: v for k, v in image_inputs.items() if k != "ml_repo_ref"}
    identity: dict[str, Any] = {"inputs": inputs, "commit": commit, "builder": builder_version}
    if settings:
        identity["settings"] = settings
    return digest_of(identity)[:16]


def builder_name(project: str, key: str) -> str:
    """The compose project / stack name of a project's builder (lower-case, <= 63 chars).

    A name longer than 34 characters is shortened with a hash of the whole name, so two
    projects that share a long prefix (and build the same images) never share a builder.
    """
    if len(project) > 34:
        project = f"{project[:25]}-{hashlib.sha256(project.encode()).hexdigest()[:8]}"
    return f"flops-build-{project}-{key[:12]}"
