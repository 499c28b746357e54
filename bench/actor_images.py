"""Benchmark: cold build + push of a project's two FL-actor images against a plain
`docker build` + `docker push` of ONE image with the same dependencies, in one run.

Repository: the sklearn test repository in the FLOps layout (model_manager.py and
data_manager.py of tests/fixtures/ml-repos/sklearn-mnist; conda.yaml with numpy, scikit-learn,
mlflow-skinny), base image flops-base:bookworm, every package from PyPI through the host's CA
bundle (`[build] ca_bundle`; PIP_CERT in the baseline). Measured, in this order:

- baseline: caches cleared, then `DOCKER_BUILDKIT=0 docker build` of one image FROM the base
  image whose one RUN step pip-installs the union of the dependencies (the runtime pins of
  actors/requirements-runtime.txt and actors/requirements-aggregator.txt plus the
  repository's), the CA bundle a file of the build context given to pip as PIP_CERT; then
  `docker push` to a fresh registry (docker-registry on loopback);
- ours, cold: caches cleared and no runtime image, a fresh registry; `reconciler apply --wait`
  of one project until it is ready: the command's wall time and the builder's per-stage
  timings (`reconciler status --json`); the wall time also holds what is outside the stages
  (stage 2: ls-remote and manifest HEADs, the builder container's start and removal, polling);
- ours, second project: another repository (the same files plus a MARKER file) under another
  project, same registry: the runtime image is found;
- ours, code-only commit: a comment of the first repository's model_manager.py changed and
  pushed, `apply --wait` again: the dependency layers are reused.

"Caches cleared" is `docker builder prune -af` plus what the classic builder caches with:
`docker image prune -f` (its dangling stage images), every `flops-runtime:*` image and every
image this script built. A cold figure is checked: a layer of its images (above the base)
made before it began is counted and printed. Also printed: the slow build steps (from the
layers' creation times) and the runtime image's packages that a later layer of the learner
image replaced (so that the image holds both versions). The builder image (`reconciler
build-builder`, named flops-bench-builder:latest here) is built once before all this: a
one-time platform cost, printed, in no figure. `--repeats N` alternates the order of
baseline and ours and prints medians; `--full-mlflow` also runs a repository that depends on
full mlflow (mlflow==2.12.1, as the public FLOps sklearn repository) cold, against its own
baseline. At the end every image, container and registry made here is removed; a runtime
image of the current key that existed before is left built (removed otherwise). Needs the
engine, docker-registry, the base image and PyPI. On a shared engine, hold the lock for the
whole run:

    flock /tmp/flops-integration.lock .venv/bin/python bench/actor_images.py \
        [--repeats 1] [--full-mlflow] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from integration.harness import Workspace, sla_text  # noqa: E402
from support import RegistryServer, commit_all, git, make_ml_repo  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "ml-repos" / "sklearn-mnist"
BASE_IMAGE = "flops-base:bookworm"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BUILDER_IMAGE = "flops-bench-builder:latest"
RUNTIME_REPOSITORY = "flops-runtime"
STAGES = ("clone", "check", "dependencies", "runtime", "build:learner", "build:aggregator",
          "push:learner", "push:aggregator")

CONDA = """\
name: sklearn-mnist
channels:
  - conda-forge
dependencies:
  - python=3.11
  - pip
  - pip:
{pip}"""
TEST_REPO_DEPS = ("numpy", "scikit-learn", "mlflow-skinny")
FULL_MLFLOW_DEPS = ("mlflow==2.12.1", "scikit-learn", "numpy")

BASELINE_DOCKERFILE = """\
FROM {base}
ENV PIP_BREAK_SYSTEM_PACKAGES=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    PYTHONUNBUFFERED=1
COPY requirements*.txt ca-bundle.pem /tmp/bench/
RUN set -e; export PIP_CERT=/tmp/bench/ca-bundle.pem; \\
    {installs}; \\
    rm -rf /tmp/bench
"""


# --------------------------------------------------------------------------------------------
# Docker
# --------------------------------------------------------------------------------------------


def docker(*args: str, timeout: float = 3600, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({done.returncode}):\n"
                           f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def image_refs(prefix: str) -> list[str]:
    out = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}")
    return sorted({ref for ref in out.split() if ref.startswith(prefix)
                   and not ref.endswith(":<none>")})


def remove_images(refs: list[str]) -> None:
    if refs:
        subprocess.run(["docker", "image", "rm", "--force", *refs], capture_output=True,
                       check=False, timeout=600)


def clear_caches(prefixes: list[str]) -> None:
    """No build cache and no image a build could start from, but the base (and the builder
    image): the images of ``prefixes``, every runtime image of the engine's own platform (an
    emulated platform's, which no figure here uses, costs minutes to make again), the classic
    builder's dangling stage images, BuildKit's cache."""
    remove_images([ref for prefix in prefixes for ref in image_refs(prefix)])
    own = docker("version", "--format", "{{.Server.Arch}}").strip()
    remove_images([ref for ref in image_refs(f"{RUNTIME_REPOSITORY}:")
                   if docker("image", "inspect", "--format", "{{.Architecture}}",
                             ref).strip() == own])
    docker("image", "prune", "--force")
    docker("builder", "prune", "--all", "--force")


def base_layers() -> set[str]:
    return set(docker("history", "--quiet", "--no-trunc", BASE_IMAGE).split())


@dataclass(frozen=True)
class Layer:
    """One step of an image's history (`docker history`): its image id, when it was made
    (1 s resolution), its size and its instruction."""

    id: str
    created: float
    size: int
    created_by: str


def history(ref: str) -> list[Layer]:
    """The layers of ``ref``, oldest first."""
    layers = []
    for line in docker("history", "--no-trunc", "--human=false", "--format",
                       "{{.ID}}\t{{.CreatedAt}}\t{{.Size}}\t{{.CreatedBy}}",
                       ref).splitlines():
        layer, created, size, created_by = line.split("\t", 3)
        layers.append(Layer(layer, datetime.datetime.fromisoformat(created).timestamp(),
                            int(size), created_by))
    return layers[::-1]


def made_before(layers: list[Layer], since: float, base: set[str]) -> list[Layer]:
    """Layers above the base image made before ``since`` (epoch s): reused from a cache."""
    return [layer for layer in layers if layer.id not in base and layer.id != "<missing>"
            and layer.created < since - 1]


def slow_steps(images: list[str], since: float, least: float = 1.5) -> list[str]:
    """The build steps made since ``since`` that took ``least`` seconds or more. The classic
    builder runs one step after another, so every layer made since then (those of
    ``images`` and of the side stages, the dangling images) is put in the order it was made;
    a step's time is its layer's creation time minus the one made before it (or ``since``)."""
    dangling = docker("images", "--filter", "dangling=true", "--no-trunc", "--quiet").split()
    layers: dict[str, Layer] = {}
    for ref in [*images, *sorted(set(dangling))]:
        for layer in history(ref):
            if layer.created >= since - 1 and layer.id != "<missing>":
                layers[layer.id] = layer
    steps = []
    previous = since
    for layer in sorted(layers.values(), key=lambda layer: layer.created):
        seconds = layer.created - previous
        previous = max(previous, layer.created)
        if seconds >= least:
            steps.append(f"{seconds:5.0f} s {layer.size / 1e6:6.0f} MB  "
                         f"{describe(layer.created_by)}")
    return steps


def describe(created_by: str) -> str:
    text = re.sub(r"^/bin/sh -c (#\(nop\) )?", "", created_by).strip()
    text = re.sub(r"(COPY (file|dir)):[0-9a-f]{12}[0-9a-f]*", r"\1", text)
    text = re.sub(r"\s+", " ", text)
    if match := re.fullmatch(r"COPY file in /tmp/flops/replaced-(\S+)\.txt", text):
        return f"COPY --from={match[1]}-install replaced.txt (stage {match[1]})"
    if text == "COPY dir in /":
        return "COPY --from=<stage>-install /tmp/flops/root/ / (the installed tree)"
    if "pip install" in text and "--root" in text:
        named = re.search(r"requirements-([\w-]+)\.txt", text)
        stage = named[1] if named else "?"
        return f"RUN pip install --root /tmp/flops/root (side stage {stage}-install)"
    if "pip install" in text and "requirements" in text:
        named = re.search(r"requirements[-\w]*\.txt", text)
        return f"RUN pip install -r {named[0] if named else 'requirements'} (in place)"
    return text[:90]


VERSIONS = ("import importlib.metadata as m, json; "
            "print(json.dumps({str(d.metadata['Name']).lower(): d.version "
            "for d in m.distributions()}))")


def distributions(ref: str) -> dict[str, str]:
    """Name -> version of every Python distribution installed in the image ``ref``."""
    out = docker("run", "--rm", "--network", "none", "--entrypoint", "python3", ref, "-c",
                 VERSIONS)
    found: dict[str, str] = json.loads(out)
    return found


def replaced(runtime: str, learner: str) -> list[str]:
    """The runtime image's distributions that the learner image holds in another version
    (or not at all): a later layer replaced them, and the runtime layer still carries them."""
    before, after = distributions(runtime), distributions(learner)
    return [f"{name} {version} -> {after.get(name, 'removed')}"
            for name, version in sorted(before.items()) if after.get(name) != version]


def image_size(ref: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", ref).strip())


def stored_bytes(registry: RegistryServer) -> int:
    return sum(p.stat().st_size for p in (registry.root / "storage").rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------------
# What is measured
# --------------------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measurement: its wall time and what it is made of."""

    seconds: float
    parts: dict[str, float] = field(default_factory=dict)  # stage or step -> seconds
    reused: list[Layer] = field(default_factory=list)  # made before it began (cold: none)
    steps: list[str] = field(default_factory=list)  # its slow build steps
    runtime: str = ""  # ours: "built" or "found"
    replaced: list[str] = field(default_factory=list)  # ours: runtime packages replaced
    images: dict[str, int] = field(default_factory=dict)  # image -> bytes
    registry_bytes: int = 0  # what the registry stores afterwards


def requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def runtime_requirements(*, full_mlflow: bool) -> list[str]:
    pins = [*requirement_lines(ROOT / "actors" / "requirements-runtime.txt"),
            *requirement_lines(ROOT / "actors" / "requirements-aggregator.txt")]
    # A repository's own mlflow replaces the runtime's mlflow-skinny (as the builder does).
    return [p for p in pins if not (full_mlflow and p.startswith("mlflow-skinny"))]


def baseline(tmp: Path, name: str, deps: tuple[str, ...], *, full_mlflow: bool,
             base: set[str]) -> Figure:
    """One image with every dependency, `docker build` (classic) + `docker push` to a fresh
    registry. The union goes to one `pip install`; with full mlflow it cannot (its pins, e.g.
    pyarrow<16, contradict the runtime's), so then the runtime's pins and the repository's go
    to two `pip install`s of the same RUN step, which is what our images hold."""
    context = tmp / f"baseline-{name}"
    context.mkdir()
    runtime = runtime_requirements(full_mlflow=full_mlflow)
    shutil.copyfile(CA_BUNDLE, context / "ca-bundle.pem")
    pip = "python3 -m pip install --no-warn-script-location -r /tmp/bench/{}"
    if full_mlflow:
        (context / "requirements-1.txt").write_text("\n".join(runtime) + "\n")
        (context / "requirements-2.txt").write_text("\n".join(deps) + "\n")
        installs = f"{pip.format('requirements-1.txt')}; {pip.format('requirements-2.txt')}"
    else:
        (context / "requirements.txt").write_text("\n".join([*runtime, *deps]) + "\n")
        installs = pip.format("requirements.txt")
    (context / "Dockerfile").write_text(BASELINE_DOCKERFILE.format(base=BASE_IMAGE,
                                                                   installs=installs))
    with registry_server(tmp / f"registry-baseline-{name}") as registry:
        ref = f"{registry.host}/bench/baseline-{name}:1"
        started_at = time.time()
        start = time.perf_counter()
        out = docker("build", "--network", "host", "-t", ref, str(context),
                     env={**os.environ, "DOCKER_BUILDKIT": "0"})
        built = time.perf_counter()
        docker("push", ref)
        end = time.perf_counter()
        if "Using cache" in out:
            raise RuntimeError(f"the baseline build used the build cache:\n{out[-3000:]}")
        figure = Figure(end - start, {"build": built - start, "push": end - built},
                        reused=made_before(history(ref), started_at, base),
                        steps=slow_steps([ref], started_at),
                        images={"image": image_size(ref)}, registry_bytes=stored_bytes(registry))
        remove_images([ref])
    return figure


@contextlib.contextmanager
def registry_server(root: Path) -> Iterator[RegistryServer]:
    registry = RegistryServer.start(root)
    try:
        yield registry
    finally:
        registry.stop()
        shutil.rmtree(root, ignore_errors=True)


def repository_files(deps: tuple[str, ...], **extra: str) -> dict[str, str]:
    files = {name: (FIXTURE / name).read_text() for name in ("model_manager.py",
                                                             "data_manager.py")}
    files["conda.yaml"] = CONDA.format(pip="".join(f"      - {d}\n" for d in deps))
    return {**files, **extra}


class Ours:
    """One workspace of the real `reconciler` command against one fresh registry."""

    def __init__(self, root: Path, registry: RegistryServer, keep: Path | None,
                 options: list[str]) -> None:
        self.root = root
        self.registry = registry
        self.keep = keep
        self.ws = Workspace(root / "ws", registry.url, BASE_IMAGE, options=options,
                            extra={"build_timeout": "60m"},
                            env={"RECONCILER_BUILDER_IMAGE": BUILDER_IMAGE},
                            build={"ca_bundle": str(CA_BUNDLE)})

    def add_project(self, project: str, repo: str, files: dict[str, str]) -> Path:
        work = make_ml_repo(self.root / "work", repo, files, bare_dir=self.root / "remotes")
        self.ws.sla(f"{project}.yaml", sla_text(str(self.root / "remotes" / f"{repo}.git")))
        return work

    def apply(self, project: str, base: set[str]) -> Figure:
        builder_before = docker("image", "inspect", "--format", "{{.Id}}", BUILDER_IMAGE)
        started_at = time.time()
        start = time.perf_counter()
        result = self.ws.run("apply", "--wait", timeout=3600)
        seconds = time.perf_counter() - start
        row = self.ws.status().get(project) or {}
        if result.code != 0 or row.get("phase") != "ready":
            log = self.ws.log(project) if (self.ws.state / "observers").exists() else ""
            raise RuntimeError(f"apply --wait of {project} failed ({result.code}):\n"
                               f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}\n{log[-6000:]}")
        if docker("image", "inspect", "--format", "{{.Id}}", BUILDER_IMAGE) != builder_before:
            raise RuntimeError("the builder image was rebuilt during the apply (its sources "
                               "changed while the benchmark ran): the figure is void")
        log = self.ws.log(project)
        found = re.findall(r"FL runtime image (\S+) (built|found)", log)
        if self.keep is not None:
            self.keep.mkdir(parents=True, exist_ok=True)
            (self.keep / f"{self.root.name}-{project}-{len(found)}.log").write_text(log)
        images: dict[str, str] = row["images"]
        reused = {layer.id: layer for ref in images.values()
                  for layer in made_before(history(ref), started_at, base)}
        return Figure(
            seconds, {stage: float(s) for stage, s in row["timings"].items()},
            reused=list(reused.values()),
            steps=slow_steps([images["learner"], images["aggregator"]], started_at),
            runtime=found[-1][1] if found else "?",
            replaced=replaced(found[-1][0], images["learner"]) if found else [],
            images={role: image_size(ref) for role, ref in images.items()},
            registry_bytes=stored_bytes(self.registry))


def code_only_commit(work: Path, index: int) -> None:
    path = work / "model_manager.py"
    path.write_text(path.read_text() + f"# bench: a code-only commit ({index})\n")
    commit_all(work, f"code-only commit {index}")
    git(["push", "-q", "origin", "HEAD:refs/heads/main"], cwd=work)


@dataclass
class Round:
    baseline: Figure
    cold: Figure
    second: Figure | None = None
    code_only: Figure | None = None


def measure_ours(tmp: Path, name: str, deps: tuple[str, ...], base: set[str], *,
                 follow_ups: bool, prefixes: list[str], keep: Path | None,
                 options: list[str]) -> tuple[Figure, Figure | None, Figure | None]:
    with registry_server(tmp / f"registry-{name}") as registry:
        prefixes.append(f"{registry.host}/")
        ours = Ours(tmp / f"ours-{name}", registry, keep, options)
        work = ours.add_project("first", "bench-owner/sklearn-mnist", repository_files(deps))
        cold = ours.apply("first", base)
        if not follow_ups:
            return cold, None, None
        ours.add_project("second", "bench-owner/sklearn-mnist-second",
                         repository_files(deps, MARKER=f"second project {name}\n"))
        second = ours.apply("second", base)
        code_only_commit(work, len(prefixes))
        code_only = ours.apply("first", base)
        return cold, second, code_only


def one_round(tmp: Path, name: str, deps: tuple[str, ...], base: set[str], *,
              ours_first: bool, full_mlflow: bool, follow_ups: bool,
              prefixes: list[str], keep: Path | None, options: list[str] | None = None
              ) -> Round:
    def run_baseline() -> Figure:
        clear_caches(prefixes)
        return baseline(tmp, name, deps, full_mlflow=full_mlflow, base=base)

    def run_ours() -> tuple[Figure, Figure | None, Figure | None]:
        clear_caches(prefixes)
        return measure_ours(tmp, name, deps, base, follow_ups=follow_ups, prefixes=prefixes,
                            keep=keep, options=options or [])

    if ours_first:
        cold, second, code_only = run_ours()
        base_figure = run_baseline()
    else:
        base_figure = run_baseline()
        cold, second, code_only = run_ours()
    return Round(base_figure, cold, second, code_only)


# --------------------------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------------------------


def median_figure(figures: list[Figure]) -> Figure:
    """The run of median wall time (its parts as measured in that run)."""
    ordered = sorted(figures, key=lambda f: f.seconds)
    middle = ordered[(len(ordered) - 1) // 2]
    return Figure(statistics.median(f.seconds for f in figures), middle.parts, middle.reused,
                  middle.steps, middle.runtime, middle.replaced, middle.images,
                  middle.registry_bytes)


def mb(count: int) -> str:
    return f"{count / 1e6:,.0f} MB"


def stages_text(figure: Figure) -> str:
    parts = [f"{stage} {figure.parts[stage]:.1f}" for stage in STAGES if stage in figure.parts]
    outside = figure.seconds - sum(figure.parts.values())
    return ", ".join(parts) + f"; outside the builder's stages {outside:.1f}"


def cold_note(figure: Figure) -> str:
    if not figure.reused:
        return "cold: no layer older than the run"
    size = sum(layer.size for layer in figure.reused)
    steps = "; ".join(describe(layer.created_by)[:40] for layer in figure.reused)
    what = "cold but for metadata" if size == 0 else "NOT COLD"
    return (f"{what}: {len(figure.reused)} layer(s) older than the run reused, "
            f"{size / 1e6:.0f} MB ({steps})")


def print_steps(figure: Figure) -> None:
    if figure.steps:
        print("      steps of 1.5 s or more (from the layers' creation times, 1 s resolution):")
    for step in figure.steps:
        print(f"        {step}")


def report(title: str, rounds: list[Round], builder: str) -> None:
    base = median_figure([r.baseline for r in rounds])
    cold = median_figure([r.cold for r in rounds])
    print(title)
    print(f"  {len(rounds)} run(s) of each, median wall seconds; one-time platform cost, in "
          f"no figure: {builder}")
    print(f"  {'':<44}{'seconds':>8}  ratio")
    print(f"  {'baseline: docker build + push, one image':<44}{base.seconds:8.1f}  1.00")
    print(f"      build {base.parts['build']:.1f} + push {base.parts['push']:.1f}; image "
          f"{mb(base.images['image'])}, registry holds {mb(base.registry_bytes)}; "
          f"{cold_note(base)}")
    print_steps(base)
    goal = cold.seconds / base.seconds
    paired = statistics.median(r.cold.seconds / r.baseline.seconds for r in rounds)
    print(f"  {'ours, cold: apply --wait, both images':<44}{cold.seconds:8.1f}  {goal:.2f}x "
          f"baseline (goal <= 1.15: {'met' if goal <= 1.15 else 'NOT met'})")
    if len(rounds) > 1:
        print(f"      median of the per-run ratios (each pair run back to back): {paired:.2f}x")
    print(f"      stages: {stages_text(cold)}")
    print(f"      runtime image {cold.runtime}; learner {mb(cold.images['learner'])}, "
          f"aggregator {mb(cold.images['aggregator'])}, registry holds "
          f"{mb(cold.registry_bytes)}; {cold_note(cold)}")
    print("      runtime packages a later layer replaced (the runtime layer still holds them): "
          + (", ".join(cold.replaced) or "none"))
    print_steps(cold)
    for label, figures in (("ours, second project, same base",
                            [r.second for r in rounds if r.second]),
                           ("ours, code-only commit", [r.code_only for r in rounds
                                                       if r.code_only])):
        if not figures:
            continue
        figure = median_figure(figures)
        print(f"  {label:<44}{figure.seconds:8.1f}  {figure.seconds / cold.seconds:.2f}x cold")
        print(f"      stages: {stages_text(figure)}")
        print(f"      runtime image {figure.runtime}; {len(figure.reused)} layers reused from "
              f"earlier builds; registry holds {mb(figure.registry_bytes)} after it")
    for index, one in enumerate(rounds, 1):
        if len(rounds) > 1:
            print(f"  run {index}: baseline {one.baseline.seconds:.1f} "
                  f"({cold_note(one.baseline)}), ours cold {one.cold.seconds:.1f} "
                  f"({one.cold.seconds / one.baseline.seconds:.2f}x; {cold_note(one.cold)})")


def in_place_templates(tmp: Path) -> Path:
    """A --templates directory whose Dockerfile.runtime.j2 installs the runtime in place (the
    install macro's other branch, as the actor images use without site secrets)."""
    directory = tmp / "templates-in-place"
    directory.mkdir(exist_ok=True)
    shipped = (ROOT / "templates" / "Dockerfile.runtime.j2").read_text()
    changed = re.sub(r"(requirements-runtime-image\.txt\", )isolate\)", r"\1false)", shipped)
    if changed == shipped:
        raise RuntimeError("templates/Dockerfile.runtime.j2 changed: cannot make the variant")
    (directory / "Dockerfile.runtime.j2").write_text(changed)
    return directory


# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1,
                        help="cold pairs (baseline, ours); the order alternates")
    parser.add_argument("--full-mlflow", action="store_true",
                        help="also a repository with mlflow==2.12.1, cold, vs its baseline")
    parser.add_argument("--runtime-in-place", action="store_true",
                        help="an experiment first: --repeats cold pairs with the runtime image "
                        "installed in place (a --templates override), not in a side stage")
    parser.add_argument("--keep", type=Path, help="copy the observer logs into this directory")
    args = parser.parse_args()
    if not CA_BUNDLE.is_file():
        sys.exit(f"{CA_BUNDLE} is missing: PyPI is reached only with the host's CA bundle")
    runtime_before = set(image_refs(f"{RUNTIME_REPOSITORY}:"))
    builder_existed = bool(image_refs(BUILDER_IMAGE))
    prefixes: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="flops-bench-images-"))
    runtime_made: set[str] = set()
    rounds: list[Round] = []
    builder = ""
    full: Round | None = None
    in_place: list[Round] = []
    try:
        base = base_layers()
        setup = Workspace(tmp / "setup", "local", BASE_IMAGE,
                          env={"RECONCILER_BUILDER_IMAGE": BUILDER_IMAGE})
        start = time.perf_counter()
        built = setup.run("build-builder", timeout=1800)
        builder_seconds = time.perf_counter() - start
        if built.code != 0:
            raise RuntimeError(f"build-builder failed:\n{built.stdout}\n{built.stderr}")
        cached = made_before(history(BUILDER_IMAGE), time.time() - builder_seconds, base)
        builder = f"reconciler build-builder {builder_seconds:.1f} s" + (
            f" ({len(cached)} of its steps from the classic build cache of a builder image "
            "already on the engine)" if cached else "")
        for index in range(args.repeats if args.runtime_in_place else 0):
            in_place.append(one_round(tmp, f"p{index}", TEST_REPO_DEPS, base,
                                      ours_first=index % 2 == 1, full_mlflow=False,
                                      follow_ups=False, prefixes=prefixes, keep=args.keep,
                                      options=["--templates", str(in_place_templates(tmp))]))
            runtime_made |= set(image_refs(f"{RUNTIME_REPOSITORY}:"))
        for index in range(args.repeats):
            rounds.append(one_round(tmp, f"r{index}", TEST_REPO_DEPS, base,
                                    ours_first=index % 2 == 1, full_mlflow=False,
                                    follow_ups=True, prefixes=prefixes, keep=args.keep))
            runtime_made |= set(image_refs(f"{RUNTIME_REPOSITORY}:"))
        if args.full_mlflow:
            full = one_round(tmp, "full", FULL_MLFLOW_DEPS, base, ours_first=False,
                             full_mlflow=True, follow_ups=False, prefixes=prefixes,
                             keep=args.keep)
            runtime_made |= set(image_refs(f"{RUNTIME_REPOSITORY}:"))
    finally:
        remove_images([ref for prefix in prefixes for ref in image_refs(prefix)])
        # A runtime image of the current key that was there before stays (built again here).
        remove_images(sorted(runtime_made - runtime_before))
        if not builder_existed:
            remove_images([BUILDER_IMAGE])
        docker("image", "prune", "--force")
        shutil.rmtree(tmp, ignore_errors=True)
    report("FL-actor images of the sklearn test repository (numpy, scikit-learn, "
           f"mlflow-skinny), base {BASE_IMAGE}, packages from PyPI", rounds, builder)
    if full is not None:
        print()
        report("the same with full mlflow (conda.yaml: mlflow==2.12.1, scikit-learn, numpy; "
               "model_manager.py imports mlflow), cold only", [full], builder)
    if in_place:
        print()
        report("EXPERIMENT, not the shipped templates: the runtime image installed in place "
               "(Dockerfile.runtime.j2 rendered with isolate false through --templates), the "
               "sklearn test repository", in_place, builder)
    gone = sorted(runtime_before - runtime_made)
    if gone:
        print(f"\nruntime images removed for the cold runs and not made again: {', '.join(gone)}")


if __name__ == "__main__":
    main()
