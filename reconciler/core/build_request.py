"""What one build is: the request handed to a builder and the compose spec that carries it.

Decision: the request is assembled here, purely, from the desired SLA, the resolved commit and
the configuration; the loop only adds the chosen host. So a test can see exactly what a
builder would be told without starting one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jinja2 import Environment

from reconciler import __version__
from reconciler.core.config import Config, HostConfig
from reconciler.core.naming import ROLES, build_key, builder_name, image_refs
from reconciler.core.platforms import platform_images
from reconciler.core.project import DesiredProject
from reconciler.core.render import (
    REPO_MOUNT,
    BuilderSpec,
    render_actor_dockerfile,
    render_runtime_dockerfile,
)
from reconciler.core.repo_url import is_local, local_path
from reconciler.protocol.request import BuildRequest


def image_labels(project: DesiredProject, commit: str, key: str) -> dict[str, str]:
    sla = project.sla
    return {
        "org.opencontainers.image.source": sla.ml_repo_url,
        "org.opencontainers.image.revision": commit,
        "flops.flavor": sla.ml_model_flavor.value,
        "flops.platforms": ",".join(p.value for p in sla.supported_platforms),
        "flops.devel-base-images": str(sla.use_devel_base_images).lower(),
        "flops.builder-version": __version__,
        "flops.build-key": key,
    }


def build_settings(config: Config, project: DesiredProject | None = None) -> dict[str, Any]:
    """The configuration that shapes the images, part of the build key: changing the base
    images or the package index makes a different build."""
    return {
        "base_image": config.images.base_image,
        "python_images": config.images.python,
        "conda_base_image": config.images.conda_base_image,
        "build_args": config.build.build_args(),
        "ca_bundle": config.build.ca_bundle,
        **_platform_settings(project.sla.supported_platforms if project else (), config),
    }


def _platform_settings(platforms: Sequence[str], config: Config) -> dict[str, Any]:
    """The images of the extra platforms this project asks for (none: nothing, so the keys
    of single-platform builds stay what they were before platforms were configurable)."""
    used = {p: config.images.platforms[p].model_dump() for p in sorted(platforms)
            if p in config.images.platforms}
    return {"platform_images": used} if used else {}


def project_build_key(project: DesiredProject, commit: str, config: Config) -> str:
    return build_key(project.image_inputs, commit, __version__, build_settings(config, project))


def builder_spec(
    project: DesiredProject, commit: str, config: Config, host: HostConfig, env: Environment,
    *, ca_bundle: str = "", builder_image: str | None = None, stack: bool = False,
) -> BuilderSpec:
    """``ca_bundle``: the PEM text of ``[build] ca_bundle``, read by the caller;
    ``builder_image``: the reference the backend made usable (default: ``[builder] image``);
    ``stack``: render for ``docker stack deploy`` instead of ``docker compose``."""
    sla = project.sla
    key = project_build_key(project, commit, config)
    local = is_local(sla.ml_repo_url)
    request_platforms = [p.value for p in sla.supported_platforms]
    request = BuildRequest(
        project=project.name,
        build_key=key,
        repo_url=REPO_MOUNT if local else sla.ml_repo_url,
        source_url=sla.ml_repo_url,
        commit=commit,
        ref=sla.ml_repo_ref,
        flavor=sla.ml_model_flavor.value,
        platforms=request_platforms,
        use_devel_base_images=sla.use_devel_base_images,
        images=image_refs(config.image_prefix, sla.ml_repo_url, commit),
        push=not config.local_registry,
        dockerfiles=dict.fromkeys(ROLES, render_actor_dockerfile(
            env, base_image=config.images.base_image, flavor=sla.ml_model_flavor.value,
            isolate=bool(config.build.build_args()))),
        runtime_dockerfile=render_runtime_dockerfile(env, base_image=config.images.base_image),
        labels=image_labels(project, commit, key),
        builder_version=__version__,
        python_images=dict(config.images.python),
        conda_base_image=config.images.conda_base_image,
        build_args=config.build.build_args(),
        build_network=config.build.network,
        ca_bundle=ca_bundle,
        platform_images={p: images for p, images in platform_images(config).items()
                         if p in request_platforms},
        registry_url="" if config.local_registry else config.registry,
    )
    return BuilderSpec(
        name=builder_name(project.name, key),
        project=project.name,
        build_key=key,
        image=builder_image or config.builder.image,
        network=config.builder.network,
        docker_socket=host.socket_path(),
        request=request,
        repo_mount=local_path(sla.ml_repo_url) if local else None,
        stack=stack,
    )
