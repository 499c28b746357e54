"""What a trained model's image build is: its name, its labels and the request a builder gets.

Decision: the trained-model image is built by the same builder service as the FL-actor images,
as a second kind of request (``kind: trained-model``, DESIGN §10), assembled here purely from
what a finished run left: the learner image it starts from, the image it makes and the run's
labels. The model directory itself is not in the request: the caller copies it into the
created builder container at ``model_dir`` before starting it, as it does with the request
file, or (a swarm builder, which nothing can be copied into) pushes it as a carrier image
that the request names. The request carries no package index, proxy or CA settings: the
trained-model Dockerfile installs nothing (its one RUN step loads the model), so they would
have nothing to reach.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from jinja2 import Environment

from reconciler import __version__
from reconciler.core.render import render_model_dockerfile
from reconciler.core.repo_url import owner_and_repo
from reconciler.protocol.events import MODEL_DIR, TRAINED_MODEL, TRAINED_MODEL_ROLE
from reconciler.protocol.request import BuildRequest

__all__ = ["MODEL_DIR", "TRAINED_MODEL_ROLE", "model_carrier_ref", "trained_model_labels",
           "trained_model_ref", "trained_model_request"]
CARRIER_REPOSITORY = "trained-model-files"


def trained_model_ref(prefix: str, repo_url: str, commit: str, run: str) -> str:
    """``<registry>/<owner>/<repo>/trained-model:<commit>-<run>``, lower-cased (as the
    FL-actor images' references: ``naming.image_refs``)."""
    owner, repo = owner_and_repo(repo_url)
    return f"{prefix}/{owner}/{repo}/{TRAINED_MODEL_ROLE}:{commit}-{run}".lower()


def model_carrier_ref(prefix: str, repo_url: str, commit: str, run: str) -> str:
    """``<registry>/<owner>/<repo>/trained-model-files:<commit>-<run>``: the image that carries
    a run's model directory to a builder nothing can be copied into (a swarm's)."""
    owner, repo = owner_and_repo(repo_url)
    return f"{prefix}/{owner}/{repo}/{CARRIER_REPOSITORY}:{commit}-{run}".lower()


def trained_model_labels(
    *, source_url: str, commit: str, run: str, best_round: int | None,
    accuracy: float | None, loss: float | None, build_key: str = "",
) -> dict[str, str]:
    """The OCI labels of a trained-model image: where its code came from, the run, the best
    round's metrics (``""`` when the run reported none, e.g. a NaN loss)."""
    labels = {
        "org.opencontainers.image.source": source_url,
        "org.opencontainers.image.revision": commit,
        "flops.run": run,
        "flops.best-round": "" if best_round is None else str(best_round),
        "flops.accuracy": _metric(accuracy),
        "flops.loss": _metric(loss),
        "flops.builder-version": __version__,
    }
    if build_key:
        labels["flops.build-key"] = build_key
    return labels


def trained_model_request(
    env: Environment, *, project: str, source_url: str, commit: str, learner_image: str,
    image: str, labels: Mapping[str, str], push: bool, build_key: str = "",
    model_dir: str = MODEL_DIR, model_carrier: str = "",
) -> BuildRequest:
    """The request that makes ``image`` from ``learner_image`` (the project's learner image at
    ``commit``) and the model directory the caller copies to ``model_dir`` in the builder
    container, or else pushed as the image ``model_carrier``. ``push``: false in registry
    "local" mode (the image stays in the engine)."""
    return BuildRequest(
        kind=TRAINED_MODEL,
        project=project,
        build_key=build_key,
        repo_url=source_url,
        source_url=source_url,
        commit=commit,
        images={TRAINED_MODEL_ROLE: image},
        push=push,
        labels=dict(labels),
        builder_version=__version__,
        model_from=learner_image,
        model_dir=model_dir,
        model_carrier=model_carrier,
        model_dockerfile=render_model_dockerfile(env, base_image=learner_image),
    )


def _metric(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return repr(float(value))
