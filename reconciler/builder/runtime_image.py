"""The FL runtime image: the base image plus the runtime packages every FL-actor image needs,
built once per engine, base image and runtime, and then the start of every FL-actor build.

Decision: the image is named by what makes it (``flops-runtime:<key>``, the key a digest of
the base image's id in this engine, the rendered runtime Dockerfile and the pinned runtime
requirements), so "is it there?" is one image lookup, a second project or a new commit finds
it, and a new base or a new pin makes a new one. The site's index, proxies and CA bundle
decide only how the packages are fetched, not what they are, so they are not in the key: an
image made once (e.g. by the test bed with the host's CA bundle) serves every build after it.
It is built from a context of its own (the requirements and the CA bundle, never the ML
repository), so nothing a repository holds can reach it. Without a site index or proxy the
stage that installs in place is built; with them, the last stage, which copies what a side
stage installed (so no setting reaches the image's history): one Dockerfile, one key.
"""

from __future__ import annotations

import hashlib
import io
import tarfile

from .engine import Engine
from .runtime import RUNTIME_LABEL, Runtime

RUNTIME_REPOSITORY = "flops-runtime"
KEY_LABEL = "flops.runtime-key"
DOCKERFILE = ".flops/Dockerfile.runtime"
IMAGE_REQUIREMENTS = ".flops/requirements-runtime-image.txt"  # both pin files, one a line
IN_PLACE_STAGE = "runtime-in-place"  # templates/Dockerfile.runtime.j2: the stage without
IN_PLACE_ARG = "FLOPS_RUNTIME_IN_PLACE"  # site settings, and the argument that turns it on


def runtime_image_ref(base_id: str, dockerfile: str, runtime: Runtime,
                      platform: str | None = None) -> str:
    """``platform``: only for a platform other than the engine's own (so the keys of native
    runtime images stay what they were before platforms)."""
    digest = hashlib.sha256()
    for part in (base_id, dockerfile, *runtime.image_requirements, *filter(None, [platform])):
        digest.update(part.encode() + b"\0")
    return f"{RUNTIME_REPOSITORY}:{digest.hexdigest()[:16]}"


def ensure_runtime_image(
    engine: Engine, base: str, dockerfile: str, runtime: Runtime, *, ca_bundle: str = "",
    build_args: dict[str, str] | None = None, network: str | None = None,
    platform: str | None = None,
) -> tuple[str, bool]:
    """The runtime image's reference on ``engine`` for the base image ``base`` (whose name
    ``dockerfile`` already carries), and whether it had to be built. ``base`` must exist
    there; EngineError otherwise, as for any failed build. ``platform``: build it for that
    platform (one other than the engine's own, under emulation)."""
    base_id = engine.image_id(base)
    if base_id is None:
        base_id = base  # the build below fails at FROM and says so
    ref = runtime_image_ref(base_id, dockerfile, runtime, platform)
    if engine.image_id(ref) is not None:
        return ref, False
    labels = {KEY_LABEL: ref.split(":", 1)[1], RUNTIME_LABEL: runtime.label}
    # No site index or proxy to keep out of the image's history: install in place (the
    # side stage's copy of a ~600 MB tree costs the classic builder about a fifth more).
    in_place = not build_args
    engine.build(_context(dockerfile, runtime, ca_bundle), ref, DOCKERFILE, labels,
                 build_args={**(build_args or {}), IN_PLACE_ARG: "1" if in_place else "0"},
                 network=network, target=IN_PLACE_STAGE if in_place else None,
                 platform=platform)
    return ref, True


def _context(dockerfile: str, runtime: Runtime, ca_bundle: str) -> bytes:
    requirements = "".join(line + "\n" for line in runtime.image_requirements)
    files = {
        DOCKERFILE: dockerfile.encode(),
        IMAGE_REQUIREMENTS: requirements.encode(),
        ".flops/ca-bundle.pem": ca_bundle.encode(),
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return out.getvalue()
