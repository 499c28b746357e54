"""The builder's stage runner: clone, check, dependencies, build, push, told as protocol events
(for a trained model's image: model, build, push).

Decision: the runner is the only writer to stdout and every path ends in exactly one result
event: stage code raises `StageFailure` or a tool module's own error, and the mapping from
those errors to a category and a hint for the user lives here, in one place. What it writes is
bounded whatever the repository holds: every event is clipped by `protocol.emit`, and log
events stop after `MAX_LOG_BYTES` (one last WARN counts the ones not sent), so one build's
output stays under the bound documented in protocol.py.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from reconciler.protocol import request as protocol_request
from reconciler.protocol.events import TRAINED_MODEL, TRAINED_MODEL_ROLE
from reconciler.protocol.request import BuildRequest, RequestError

from . import protocol
from .baseimage import ImageOptions
from .checks import check_structure
from .clone import CloneError, clone
from .context import dockerfile_path, write_flops_dir, write_tar
from .deps import DependencyPlan, plan_dependencies
from .dockerfile import base_image, has_stage, with_base_image, with_conda_hook
from .engine import Engine, EngineError, EngineUnreachable, split_reference
from .index import PublishError, publish_index
from .limits import MAX_LOG_BYTES, size_text
from .model_carrier import fetch_model
from .model_context import DOCKERFILE as MODEL_DOCKERFILE
from .model_context import check_model, write_model_context
from .platforms import Target, check_emulated
from .platforms import targets as platform_targets
from .problems import StageFailure, failure_from_problems
from .repairs import REPAIRS_LABEL
from .runtime import RUNTIME_LABEL, Runtime, load_runtime
from .runtime_image import ensure_runtime_image

EngineFactory = Callable[[], Engine]


def parse_request(raw: str | None) -> BuildRequest:
    """The request (``reconciler/protocol/request.py`` parses it); StageFailure
    (infrastructure) naming the first bad field."""
    try:
        return protocol_request.parse_request(raw)
    except RequestError as error:
        raise StageFailure(
            "infrastructure", f"malformed build request: {error}",
            f"the reconciler must mount a JSON request at {protocol.REQUEST_FILE} "
            "(see reconciler/protocol/)",
        ) from error


class Reporter:
    """Writes stage, log and result events and keeps the per-stage timings."""

    def __init__(self, out: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self.out = out
        self.clock = clock
        self.timings: dict[str, float] = {}
        self.current = "clone"
        self.log_bytes = 0  # log events sent so far, against MAX_LOG_BYTES
        self.unsent = 0  # log events not sent once the budget was spent

    @contextlib.contextmanager
    def stage(self, name: str, platform: str | None = None) -> Iterator[None]:
        """A stage; ``platform``: the platform it is for, in a multi-platform build (its
        events say it, its timing is ``<stage> <platform>``)."""
        self.current = name
        which = {"platform": platform} if platform else {}
        protocol.emit({"type": "stage", "stage": name, **which, "state": "start"}, self.out)
        started = self.clock()
        try:
            yield
        finally:
            seconds = round(self.clock() - started, 3)
            self.timings[f"{name} {platform}" if platform else name] = seconds
            protocol.emit({"type": "stage", "stage": name, **which, "state": "end",
                           "seconds": seconds}, self.out)

    def log(self, level: str, message: str, details: list[str] | None = None) -> None:
        event: dict[str, Any] = {
            "type": "log", "level": level, "stage": self.current, "message": message,
        }
        if details:
            event["details"] = details
        if self.log_bytes >= MAX_LOG_BYTES:
            self.unsent += 1
            return
        self.log_bytes += protocol.emit(event, self.out)

    def _count_unsent(self) -> None:
        """Before the result: one WARN saying how many log events were not sent."""
        if self.unsent:
            protocol.emit({
                "type": "log", "level": "WARN", "stage": self.current,
                "message": f"{self.unsent} more log events were not sent: a build sends at "
                f"most {size_text(MAX_LOG_BYTES)} of log events",
            }, self.out)
            self.unsent = 0

    def succeeded(
        self, images: dict[str, str], digests: dict[str, str], plan: DependencyPlan | None,
        platform_digests: dict[str, dict[str, str]] | None = None,
    ) -> int:
        """The ok result; ``plan`` None for a trained model (no dependencies, no repairs);
        ``platform_digests``: role -> platform -> the digest of that platform's image."""
        self._count_unsent()
        protocol.emit(
            {"type": "result", "ok": True, "images": images, "digests": digests,
             "platform_digests": platform_digests or {},
             "timings": self.timings, "repairs": plan.repairs if plan else [],
             "repair_diffs": [r.as_json() for r in plan.repair_diffs] if plan else [],
             "base_image": plan.base_image if plan else None},
            self.out,
        )
        return 0

    def failed(self, failure: StageFailure) -> int:
        self._count_unsent()
        error = {"category": failure.category, "stage": self.current,
                 "message": failure.message, "hint": failure.hint, "details": failure.details}
        protocol.emit(
            {"type": "result", "ok": False, "error": error, "timings": self.timings}, self.out
        )
        return 1


def run(
    raw_request: str | None,
    out: TextIO,
    *,
    engine_factory: EngineFactory = Engine.from_env,
    workdir: Path | None = None,
) -> int:
    """Run every stage for one request; 0 after an ok result, 1 after a failed one."""
    reporter = Reporter(out)
    try:
        request = parse_request(raw_request)
        with tempfile.TemporaryDirectory(prefix="flops-build-", dir=workdir) as tmp:
            return _stages(request, Path(tmp) / "repo", reporter, engine_factory)
    except StageFailure as failure:
        return reporter.failed(failure)
    except Exception as exc:  # the builder must always answer with a result
        return reporter.failed(StageFailure(
            "infrastructure", f"builder crashed: {type(exc).__name__}: {exc}",
            "an unexpected error inside the image builder; the details show where",
            traceback.format_exc().splitlines()[-20:],
        ))


def _stages(
    request: BuildRequest, repo_dir: Path, reporter: Reporter, engine_factory: EngineFactory
) -> int:
    if request.kind == TRAINED_MODEL:
        return _trained_model(request, reporter, engine_factory)
    with reporter.stage("clone"):
        try:
            notes = clone(request.repo_url, request.commit, repo_dir, request.ref)
        except CloneError as exc:
            raise StageFailure(
                "repo", f"cannot check out {request.source_url} at {request.commit}: {exc}",
                f"check that {request.source_url} is reachable from the image-builder host "
                "and still contains that commit (was it force-pushed away?)",
                exc.details,
            ) from exc
        reporter.log("INFO", f"checked out {request.source_url} at {request.commit}", notes)
    with reporter.stage("check"):
        problems = check_structure(repo_dir)
        if problems:
            raise failure_from_problems(problems)
        reporter.log("INFO", "repository follows the FLOps structure (model_manager.py "
                     "defines ModelManager with every required method, what it imports from "
                     "data_manager.py is defined there, the dependency files parse)")
    with reporter.stage("dependencies"):
        plan = plan_dependencies(repo_dir, ImageOptions(request.python_images,
                                                        request.conda_base_image))
        if plan.problems:
            raise failure_from_problems(plan.problems)
        for note in plan.notes:
            reporter.log(note.level, note.message, list(note.details))
    engine = engine_factory()
    runtime = load_runtime()
    targets = _targets(request, repo_dir, plan, reporter, engine)
    multi = len(targets) > 1
    dockerfiles: dict[str, str] = {}
    for target, target_plan in targets:
        with reporter.stage("runtime", target.platform if multi else None):
            runtime_image = _runtime_image(request, target, target_plan, runtime, reporter,
                                           engine)
        for role, text in _dockerfiles(request, target_plan, runtime_image).items():
            dockerfiles[target.dockerfile_key(role)] = text
    ids = _build(request, repo_dir, plan, [t for t, _ in targets], dockerfiles, runtime,
                 reporter, engine)
    if not request.push:
        return reporter.succeeded(dict(request.images), ids[targets[0][0].platform], plan,
                                  _by_role(ids))
    pushed = {t.platform: _push(request, reporter, engine, protocol.ROLES, t if multi else None)
              for t, _ in targets}
    digests = _publish(request, reporter, pushed) if multi else pushed[targets[0][0].platform]
    return reporter.succeeded(dict(request.images), digests, plan, _by_role(pushed))


def _by_role(per_platform: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """platform -> role -> digest, as role -> platform -> digest."""
    roles: dict[str, dict[str, str]] = {}
    for platform, digests in per_platform.items():
        for role, digest in digests.items():
            roles.setdefault(role, {})[platform] = digest
    return roles


def _targets(request: BuildRequest, repo_dir: Path, plan: DependencyPlan, reporter: Reporter,
             engine: Engine) -> list[tuple[Target, DependencyPlan]]:
    """The build's platforms, each with its dependency plan (the same but for the base image
    its own python map or conda base chooses); emulated ones checked in stage ``platforms``
    before anything is built."""
    try:
        native = engine.platform()
    except EngineError as exc:
        raise _unreachable(exc) from exc
    default_base = base_image(request.runtime_dockerfile) or ""
    if (request.platforms or [native]) == [native]:
        return [(t, plan) for t in platform_targets(request, native, default_base)]
    result = []
    with reporter.stage("platforms"):
        for target in platform_targets(request, native, default_base):
            target_plan = plan
            if not target.native:
                target_plan = plan_dependencies(repo_dir, target.options)
                if target_plan.problems:
                    raise failure_from_problems(target_plan.problems)
                try:
                    line = check_emulated(engine, target,
                                          target_plan.base_image or target.base_image)
                except EngineUnreachable as exc:
                    raise _unreachable(exc) from exc
                reporter.log("INFO", line)
            else:
                reporter.log("INFO", f"{target.platform}: this engine's own platform")
            result.append((target, target_plan))
    return result


def _trained_model(request: BuildRequest, reporter: Reporter, engine_factory: EngineFactory) -> int:
    """The trained-model image: the learner image (``model_from``) plus the checked model
    directory and the FL runtime (the model server), built and pushed."""
    model_dir = Path(request.model_dir)
    with reporter.stage("model"):
        if request.model_carrier:
            entries = fetch_model(engine_factory(), request.model_carrier, model_dir)
            reporter.log("INFO", f"model unpacked from {request.model_carrier} "
                         f"({entries} entries)")
        summary = check_model(model_dir)
        reporter.log("INFO", f"model {model_dir}: {summary.describe()}")
    try:
        dockerfile = with_base_image(request.model_dockerfile, request.model_from)
    except ValueError as exc:
        raise StageFailure(
            "infrastructure", f"cannot start the trained-model image from "
            f"{request.model_from}: {exc}",
            "the reconciler's trained-model Dockerfile template needs a FROM line",
        ) from exc
    engine = engine_factory()
    runtime = load_runtime()
    role, ref = TRAINED_MODEL_ROLE, request.images[TRAINED_MODEL_ROLE]
    ids: dict[str, str] = {}
    with reporter.stage(f"build:{role}"), tempfile.TemporaryFile() as tar:
        write_model_context(model_dir, dockerfile, runtime, tar)
        labels = {**request.labels, "flops.role": role, RUNTIME_LABEL: runtime.label}
        try:
            ids[role], _lines = engine.build(tar, ref, MODEL_DOCKERFILE, labels)
        except EngineError as exc:
            raise _model_build_failure(exc, request.model_from) from exc
        reporter.log("INFO", f"built {role} image {ref} ({ids[role]}) from {request.model_from}")
    digests = _push(request, reporter, engine, (role,)) if request.push else ids
    return reporter.succeeded(dict(request.images), digests, None)


def _model_build_failure(exc: EngineError, learner_image: str) -> StageFailure:
    if isinstance(exc, EngineUnreachable):
        return _unreachable(exc)
    if _base_image_failed(exc, learner_image):
        return StageFailure(
            "infrastructure", f"the learner image {learner_image}, which the trained-model "
            f"image starts from, is not available: {exc}",
            "build the trained model on the engine that holds the project's images (registry "
            "\"local\") or one that can pull them from the registry",
            exc.details,
        )
    return StageFailure(
        "build", f"building the trained-model image failed: {exc}",
        "the last lines show the failing step; when it is the model check (flops_actor.serve "
        "--check), the model does not load in the learner image: its MLflow or the model's "
        "libraries are missing there", exc.details,
    )


def _runtime_image(
    request: BuildRequest, target: Target, plan: DependencyPlan, runtime: Runtime,
    reporter: Reporter, engine: Engine,
) -> str:
    """The FL runtime image for the target's chosen base on this engine: found, or built
    now (for another platform than the engine's, under emulation)."""
    base = plan.base_image or target.base_image
    try:
        dockerfile = with_base_image(request.runtime_dockerfile, base)
        ref, built = ensure_runtime_image(
            engine, base, dockerfile, runtime, ca_bundle=request.ca_bundle,
            build_args=request.build_args, network=request.build_network,
            platform=target.build_platform)
    except ValueError as exc:
        raise StageFailure(
            "infrastructure", f"cannot set the runtime image's base to {base!r}: {exc}",
            "the reconciler's runtime Dockerfile template needs a FROM line",
        ) from exc
    except EngineError as exc:
        raise _build_failure(exc, "runtime", dockerfile) from exc
    what = "built" if built else "found"
    where = "" if target.native else f" for {target.platform}"
    reporter.log("INFO", f"FL runtime image {ref} {what}{where} (base {base}: {runtime.label})")
    return ref


def _dockerfiles(request: BuildRequest, plan: DependencyPlan, runtime_image: str) -> dict[str, str]:
    """The request's Dockerfiles starting from the runtime image, with the conda hook."""
    result: dict[str, str] = {}
    for role, text in request.dockerfiles.items():
        try:
            text = with_base_image(text, runtime_image)
            if plan.conda_packages:
                text = with_conda_hook(text)
        except ValueError as exc:
            raise StageFailure(
                "infrastructure", f"cannot start the {role} image from {runtime_image}: "
                f"{exc}", "the reconciler's FL-actor Dockerfile template needs a FROM line",
            ) from exc
        result[role] = text
    return result


def _build(
    request: BuildRequest, repo_dir: Path, plan: DependencyPlan, targets: list[Target],
    dockerfiles: dict[str, str], runtime: Runtime, reporter: Reporter, engine: Engine,
) -> dict[str, dict[str, str]]:
    """Every role of every platform, one context for all (each platform has its own
    Dockerfiles in it); platform -> role -> image id."""
    replaced = write_flops_dir(repo_dir, dockerfiles, plan.requirements, plan.conda_packages,
                               plan.conda_channels, request.ca_bundle, runtime)
    if replaced is not None:
        reporter.log("WARN", f"the repository's .flops ({replaced}) was removed: the builder "
                     "writes its generated files there")
    multi = len(targets) > 1
    ids: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryFile() as tar:
        write_tar(repo_dir, tar)
        for target in targets:
            built = ids.setdefault(target.platform, {})
            for role in protocol.ROLES:
                with reporter.stage(f"build:{role}", target.platform if multi else None):
                    labels = {**request.labels, "flops.role": role,
                              REPAIRS_LABEL: plan.label(role), RUNTIME_LABEL: runtime.label}
                    ref = target.tag(request.images[role])
                    key = target.dockerfile_key(role)
                    stage = role if has_stage(dockerfiles[key], role) else None
                    try:
                        built[role], _lines = engine.build(
                            tar, ref, dockerfile_path(key), labels,
                            build_args=request.build_args, network=request.build_network,
                            target=stage, platform=target.build_platform)
                    except EngineError as exc:
                        raise _build_failure(exc, role, dockerfiles[key]) from exc
                    how = "" if target.native else f" for {target.platform} (emulated)"
                    reporter.log("INFO", f"built {role} image {ref}{how} ({built[role]})")
    return ids


def _unreachable(exc: EngineError) -> StageFailure:
    return StageFailure(
        "infrastructure", str(exc),
        "mount the Docker socket of the image-builder host at /var/run/docker.sock "
        "(or set DOCKER_HOST=unix://...)", exc.details,
    )


def _base_image_failed(exc: EngineError, base: str) -> bool:
    """Did the build fail at its FROM step, or for want of the base image?"""
    steps = [line for line in exc.details if line.startswith("Step ")]
    if steps and " FROM " in steps[-1].upper():
        return True
    text = str(exc).lower()
    missing = ("pull access denied", "no such image", "not found", "manifest unknown")
    return split_reference(base)[0].lower() in text and any(s in text for s in missing)


def _build_failure(exc: EngineError, role: str, dockerfile: str) -> StageFailure:
    if isinstance(exc, EngineUnreachable):
        return _unreachable(exc)
    base = base_image(dockerfile)
    if base and _base_image_failed(exc, base):
        return StageFailure(
            "infrastructure", f"the {role} image's base image {base} is not available: {exc}",
            f"make {base} available to the engine of the image-builder host (docker load or "
            "docker import there) or configure another base image ([images] base_image, the "
            "python image map or conda_base_image, whichever chose it)",
            exc.details,
        )
    if role == "runtime":  # the same packages for every project: the site's way to them
        return StageFailure(
            "infrastructure", f"building the FL runtime image failed: {exc}",
            "the last lines show the failing step; the runtime's packages (flwr, datasets, "
            "pyarrow, numpy) come from the package index: check that [build] pip_index_url, "
            "the proxies and ca_bundle let pip reach them from the image-builder host",
            exc.details,
        )
    return StageFailure(
        "build", f"building the {role} image failed: {exc}",
        "the last lines show the failing step; usually a dependency in conda.yaml that "
        "cannot be installed: fix it and commit",
        exc.details,
    )


def _publish(request: BuildRequest, reporter: Reporter,
             pushed: dict[str, dict[str, str]]) -> dict[str, str]:
    """The multi-platform image of each role under its normal name: a manifest list of the
    platforms' pushed manifests; role -> the list's digest."""
    if not request.registry_url:
        raise StageFailure("infrastructure", "a multi-platform build needs the registry's URL "
                           "and the request names none", "update the reconciler")
    digests: dict[str, str] = {}
    for role in protocol.ROLES:
        ref = request.images[role]
        with reporter.stage(f"index:{role}"):
            name, tag = split_reference(ref)
            repository = name.split("/", 1)[1]
            members = [(platform, of_platform[role]) for platform, of_platform in pushed.items()]
            try:
                digests[role] = publish_index(request.registry_url, repository, tag, members)
            except PublishError as exc:
                raise StageFailure(
                    "push", f"publishing the multi-platform image {ref} failed: {exc}",
                    f"check that {request.registry_url} takes manifest lists from the "
                    "image-builder host") from exc
            reporter.log("INFO", f"published {ref}@{digests[role]} for "
                         f"{', '.join(platform for platform, _ in members)}")
    return digests


def _push(
    request: BuildRequest, reporter: Reporter, engine: Engine, roles: tuple[str, ...],
    target: Target | None = None,
) -> dict[str, str]:
    """Push each role's image (``target``: that platform's, in a multi-platform build)."""
    digests: dict[str, str] = {}
    for role in roles:
        ref = target.tag(request.images[role]) if target else request.images[role]
        with reporter.stage(f"push:{role}", target.platform if target else None):
            try:
                digests[role] = engine.push(ref)
            except EngineUnreachable as exc:
                raise _unreachable(exc) from exc
            except EngineError as exc:
                raise StageFailure(
                    "push", f"pushing {ref} failed: {exc}",
                    "check that the registry named in the image reference is reachable from "
                    "the image-builder host's engine (a plain-HTTP registry off loopback needs "
                    "--insecure-registry on that engine)",
                    exc.details,
                ) from exc
            reporter.log("INFO", f"pushed {ref}@{digests[role]}")
    return digests
