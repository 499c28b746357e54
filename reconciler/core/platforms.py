"""Which platforms a site can build and what each builds from: pure answers from the
configuration and the image-builder host's own platform.

Decision: the host's own ("native") platform builds from ``[images]`` as it always did; every
other platform must be named in ``[images.platforms]`` (its base image, and optionally its
python map and conda base) and is built under QEMU emulation on that host. A platform that is
neither fails before any builder starts, naming the platform and the fix. More than one
platform needs a registry URL: a multi-platform image is an index in a registry, and one
engine's image store holds one platform per image name.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.core.config import Config
from reconciler.protocol.request import PlatformImages

# Architecture names as engines and kernels report them -> Docker's platform names.
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "armv7l": "arm/v7", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def platform_of(os_name: str, arch: str) -> str:
    """`("linux", "x86_64")` -> `linux/amd64`: an engine's platform as SLAs name platforms."""
    return f"{(os_name or 'linux').lower()}/{_ARCH.get(arch.lower(), arch.lower())}"


def platform_images(config: Config) -> dict[str, PlatformImages]:
    """``[images.platforms]`` as the build request carries it."""
    return {
        platform: PlatformImages(base_image=entry.base_image, python_images=dict(entry.python),
                                 conda_base_image=entry.conda_base_image)
        for platform, entry in sorted(config.images.platforms.items())
    }


def unbuildable(config: Config, platforms: Sequence[str], native: str, host: str) -> str | None:
    """Why ``platforms`` cannot be built on the image-builder host ``host`` (whose own
    platform is ``native``) with this configuration; None when they can."""
    if len(platforms) > 1 and config.local_registry:
        return (f"supported_platforms lists {len(platforms)} platforms ({', '.join(platforms)}), "
                'but registry = "local" keeps images in one engine, which holds one platform '
                "per image name; set registry to a URL (a multi-platform image is an index in a "
                "registry) or ask for one platform")
    missing = [p for p in platforms if p != native and p not in config.images.platforms]
    if not missing:
        return None
    listed = ", ".join(missing)
    example = missing[0]
    return (f"cannot build {listed} on image-builder host {host} (its own platform is "
            f"{native}): no base image is configured for {listed}; add [images.platforms] "
            f'"{example}" = "<a {example} base image>" to the configuration and register QEMU '
            f"for it on that host (binfmt_misc, qemu-user-static; `reconciler doctor` shows "
            f"what the host can build), or remove {listed} from supported_platforms")
