"""The platforms of one build: what each builds from, under which tag, and whether this
engine can build it at all, decided before anything is built.

Decision: the engine's own platform builds exactly as a single-platform build always did (the
request's images, no ``platform`` build parameter, the normal tag); every other platform
builds from its ``platform_images`` entry with the ``platform`` build parameter, so the
classic builder runs its RUN steps under the QEMU handler the host's kernel has. A build of
more than one platform tags each platform's image ``<tag>-<os>-<arch>`` (one engine tag
holds one image) and publishes the multi-platform image under the normal tag afterwards.
The check runs a shell of each emulated platform's base image once: a platform the engine
cannot execute fails here, naming the platform and the fix, not at some RUN step later.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.protocol.request import BuildRequest

from .baseimage import ImageOptions
from .engine import Engine, EngineError, EngineUnreachable
from .problems import StageFailure

EMULATION_HINT = (
    "register QEMU for it on the image-builder host: mount binfmt_misc (mount -t binfmt_misc "
    "binfmt_misc /proc/sys/fs/binfmt_misc) and install qemu-user-static and binfmt-support "
    "(bash scripts/setup.sh --platforms {platform} does both); `reconciler doctor` shows "
    "what each host can build")


@dataclass(frozen=True)
class Target:
    """One platform of the build."""

    platform: str
    native: bool  # the engine's own platform: no emulation, no build parameter
    base_image: str  # its default base (before a python pin or conda may choose another)
    options: ImageOptions  # its python map and conda base
    suffix: str  # what its images' tags end with ("" for a single-platform build)

    @property
    def build_platform(self) -> str | None:
        """The build's ``platform`` parameter: only for a platform other than the engine's."""
        return None if self.native else self.platform

    def tag(self, ref: str) -> str:
        return ref + self.suffix

    def dockerfile_key(self, role: str) -> str:
        """The name of this platform's Dockerfile for ``role`` in `.flops/`."""
        return role + self.suffix


def tag_suffix(platform: str) -> str:
    """`linux/arm/v7` -> `-linux-arm-v7`."""
    return "-" + platform.replace("/", "-")


def targets(request: BuildRequest, native: str, default_base: str) -> list[Target]:
    """The build's platforms in the request's order (the engine's own when it names none);
    StageFailure for a platform nobody configured, or several without a registry."""
    wanted = request.platforms or [native]
    if len(wanted) > 1 and not request.push:
        raise StageFailure(
            "infrastructure", f"{len(wanted)} platforms ({', '.join(wanted)}) cannot be kept in "
            "one engine (registry \"local\"): a multi-platform image is an index in a registry",
            "set registry to a URL, or ask for one platform in supported_platforms")
    missing = [p for p in wanted if p != native and p not in request.platform_images]
    if missing:
        raise StageFailure(
            "infrastructure", f"this engine is {native}; no base image is configured for "
            f"{', '.join(missing)}",
            f'add [images.platforms] "{missing[0]}" = "<a {missing[0]} base image>" to the '
            f"reconciler's configuration and {EMULATION_HINT.format(platform=missing[0])}")
    multi = len(wanted) > 1
    found = []
    for platform in wanted:
        suffix = tag_suffix(platform) if multi else ""
        if platform == native:
            found.append(Target(platform, True, default_base, ImageOptions(
                request.python_images, request.conda_base_image), suffix))
        else:
            images = request.platform_images[platform]
            found.append(Target(platform, False, images.base_image, ImageOptions(
                images.python_images, images.conda_base_image), suffix))
    return found


def check_emulated(engine: Engine, target: Target, base: str) -> str:
    """That ``base`` is a ``target.platform`` image on this engine and that the engine runs
    it; a line saying so, or StageFailure naming the platform and the fix."""
    try:
        found = engine.image_platform(base)
    except EngineUnreachable:
        raise
    except EngineError as exc:
        raise StageFailure("infrastructure", f"cannot inspect {base}: {exc}",
                           "check the Docker engine of the image-builder host") from exc
    if found is None:
        raise StageFailure(
            "infrastructure", f"the {target.platform} base image {base} is not in this engine",
            f"make a {target.platform} image {base} there (bash scripts/setup.sh --platforms "
            f"{target.platform} makes flops-base images) or configure another in "
            "[images.platforms]")
    if found != target.platform:
        raise StageFailure(
            "infrastructure", f"the base image {base}, configured for {target.platform}, is a "
            f"{found} image",
            f"make it for {target.platform} (a classic `docker build --platform "
            f"{target.platform}` FROM scratch with the root file system: `docker import "
            "--platform` records the engine's own platform)")
    try:
        engine.runs(base, target.platform)
    except EngineUnreachable:
        raise
    except EngineError as exc:
        raise StageFailure(
            "infrastructure", f"this engine cannot run {target.platform} programs ({exc})",
            EMULATION_HINT.format(platform=target.platform)) from exc
    return f"{target.platform}: emulated from {base} (a {found} shell runs here)"
