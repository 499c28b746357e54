"""Rendering the builder's compose spec and the FL-actor Dockerfiles from Jinja templates.

Decision: every value that reaches a compose spec goes through the ``q`` filter, which writes
it as a JSON string (a YAML double-quoted scalar, ASCII only, characters beyond the BMP as
YAML ``\\U`` escapes) with ``$`` doubled against compose interpolation. A value can therefore
never end its scalar, start a new key or be rewritten by compose: the spec's shape is fixed by
the template alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from reconciler import __version__
from reconciler.core.training import TrainingSpec
from reconciler.protocol.events import REQUEST_SECRET
from reconciler.protocol.request import BuildRequest, request_json

COMPOSE_TEMPLATE = "builder-compose.yaml.j2"
TRAINING_TEMPLATE = "training-compose.yaml.j2"
ACTOR_DOCKERFILE_TEMPLATE = "Dockerfile.actor.j2"
RUNTIME_DOCKERFILE_TEMPLATE = "Dockerfile.runtime.j2"
MODEL_DOCKERFILE_TEMPLATE = "Dockerfile.model.j2"
BUILDER_DOCKERFILE = "Dockerfile.builder"
REPO_MOUNT = "/flops/repo"
# The build request's file beside the rendered spec (see the compose template).
REQUEST_FILE = "request.json"


def quote(value: object) -> str:
    if not isinstance(value, str | int | float | bool):
        raise TypeError(f"only scalars may be rendered, not {type(value).__name__}")
    text = json.dumps(str(value), ensure_ascii=False)
    return "".join(_ascii(ch) for ch in text).replace("$", "$$")


def _ascii(ch: str) -> str:
    """Printable ASCII as is; anything else as a YAML escape.

    JSON's ``\\uXXXX`` surrogate pairs are not YAML: libyaml and go-yaml (so compose) reject
    them, so a character outside the BMP is written as ``\\UXXXXXXXX``.
    """
    code = ord(ch)
    if 0x20 <= code < 0x7F:
        return ch
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def make_environment(template_dirs: Sequence[Path]) -> Environment:
    env = Environment(
        loader=FileSystemLoader([str(d) for d in template_dirs]),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters["q"] = quote
    return env


@dataclass(frozen=True)
class BuilderSpec:
    """Everything the compose template needs, and the request that goes beside it."""

    name: str
    project: str
    build_key: str
    image: str
    network: str
    docker_socket: str
    request: BuildRequest  # goes to the builder as a file, never into the spec
    repo_mount: str | None = None  # host path of a local ML repository, mounted read-only
    stack: bool = False  # for `docker stack deploy` (swarm) rather than `docker compose`


def render_request(spec: BuilderSpec) -> str:
    """The request document the builder reads from its secret file."""
    return request_json(spec.request)


def render_compose(env: Environment, spec: BuilderSpec) -> str:
    return env.get_template(COMPOSE_TEMPLATE).render(
        name=spec.name,
        project=spec.project,
        build_key=spec.build_key,
        image=spec.image,
        network=spec.network,
        docker_socket=spec.docker_socket,
        request_file=f"./{REQUEST_FILE}",
        request_target=REQUEST_SECRET,
        repo_mount=spec.repo_mount,
        repo_target=REPO_MOUNT,
        stack=spec.stack,
        version=__version__,
    )


def render_actor_dockerfile(
    env: Environment, *, base_image: str, flavor: str, isolate: bool
) -> str:
    """The FL-actor Dockerfile (one for both roles: a target per role). ``isolate``: install
    in side stages so the site's build arguments (index, proxies) stay out of the history."""
    return env.get_template(ACTOR_DOCKERFILE_TEMPLATE).render(
        base_image=base_image, flavor=flavor, isolate=isolate)


def render_runtime_dockerfile(env: Environment, *, base_image: str) -> str:
    """The FL runtime image's Dockerfile: the base every FL-actor image starts from. One text
    whatever the site's settings (a stage that installs in place, and a last stage whose
    install ran in a side stage), so one runtime image serves every build on a base, with or
    without a site index."""
    return env.get_template(RUNTIME_DOCKERFILE_TEMPLATE).render(
        base_image=base_image, isolate=True)


def render_model_dockerfile(env: Environment, *, base_image: str) -> str:
    """The trained-model image's Dockerfile (templates/Dockerfile.model.j2): the learner image
    ``base_image`` plus the saved model and the model server; the builder writes the request's
    ``model_from`` into its FROM line."""
    return env.get_template(MODEL_DOCKERFILE_TEMPLATE).render(base_image=base_image)


def render_training_compose(env: Environment, spec: TrainingSpec) -> str:
    """One engine's compose project of a training run (templates/training-compose.yaml.j2)."""
    return env.get_template(TRAINING_TEMPLATE).render(spec=spec, version=__version__)
