"""Benchmark: what QEMU emulation costs. The bundled example repository (examples/toy-regression,
SLA desired/toy-regression.yaml) is built through the reconciler once for linux/amd64 (this
engine's own platform) and once for linux/arm64 (emulated), each from a cold project cache
(the FL runtime image of each platform is made first and not counted: it is built once per
engine). Prints the build stages' times (runtime found, build:learner, build:aggregator) per
platform and their ratio, then the learner's ``fit_model`` on the example data inside each
platform's learner image (median of repeated calls in one container) and that ratio.

Needs the engine, the base images and emulation (`bash scripts/setup.sh --platforms
linux/arm64`); on a shared engine run it under the engine's lock. Leaves nothing behind but
the FL runtime images (cached like the test bed's).

    python bench/platforms.py [--fits 20] [--arm-base flops-base:bookworm-arm64]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from reconciler.builder.engine import Engine
from reconciler.builder.runtime import load_runtime
from reconciler.builder.runtime_image import ensure_runtime_image
from reconciler.core.render import make_environment, render_runtime_dockerfile
from reconciler.edges.settings import template_dirs

ROOT = Path(__file__).resolve().parents[1]
NATIVE, EMULATED = "linux/amd64", "linux/arm64"
CA_BUNDLE = Path(os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
                 or "/etc/ssl/certs/ca-certificates.crt")
BUILD_STAGES = ("runtime", "build:learner", "build:aggregator")
FIT = """\
import json, statistics, time
from model_manager import ModelManager
manager = ModelManager()
manager.set_model_data()
samples = []
for _ in range({fits}):
    start = time.perf_counter()
    manager.fit_model()
    samples.append(time.perf_counter() - start)
print(json.dumps(statistics.median(samples)))
"""


def sh(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout


def example_repo(root: Path) -> Path:
    """The example's files as a git repository of their own (what example.sh publishes)."""
    repo = root / "toy-regression"
    shutil.copytree(ROOT / "examples" / "toy-regression", repo)
    sh("git", "init", "-q", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm",
       "example", cwd=repo)
    return repo


def runtime_images(base: str, arm_base: str) -> None:
    """Both platforms' FL runtime images, as a builder makes them (once per engine: not part
    of the builds below; when one had to be built here, its time is printed)."""
    env = make_environment(template_dirs(None))
    ca = CA_BUNDLE.read_text() if CA_BUNDLE.is_file() else ""
    for image, platform in ((base, None), (arm_base, EMULATED)):
        dockerfile = render_runtime_dockerfile(env, base_image=image)
        start = time.perf_counter()
        ref, built = ensure_runtime_image(Engine.from_env(), image, dockerfile, load_runtime(),
                                          ca_bundle=ca, network="host", platform=platform)
        how = f"built in {time.perf_counter() - start:.0f}s" if built else "found"
        print(f"FL runtime image for {platform or NATIVE}: {ref} ({how})")


def build(root: Path, repo: Path, platform: str, base: str, arm_base: str) -> dict[str, object]:
    """The example built for ``platform`` by `reconciler apply --wait`; its status row."""
    work = root / platform.replace("/", "-")
    (work / "desired").mkdir(parents=True)
    (work / "reconciler.toml").write_text(
        'registry = "local"\nallow_file_repos = true\nbuild_timeout = "60m"\n'
        f'[builder]\nbase_image = "{base}"\n'
        f'[images]\nbase_image = "{base}"\n[images.platforms]\n"{EMULATED}" = "{arm_base}"\n'
        f'[build]\nca_bundle = "{CA_BUNDLE}"\n')
    sla = yaml.safe_load((ROOT / "desired" / "toy-regression.yaml").read_text())
    for key in ("training_configuration", "post_training_steps"):  # images only
        sla.pop(key, None)
    sla.update(ml_repo_url=str(repo), supported_platforms=[platform])
    (work / "desired" / "toy-regression.yaml").write_text(yaml.safe_dump(sla))
    command = [sys.executable, "-m", "reconciler", "--desired", str(work / "desired"),
               "--state", str(work / "state"), "--config", str(work / "reconciler.toml")]
    done = subprocess.run([*command, "apply", "--wait"], capture_output=True, text=True)
    log = (work / "state" / "observers" / "toy-regression.log").read_text()
    if done.returncode != 0:
        sys.exit(f"the {platform} build failed:\n{done.stdout}{done.stderr}\n{log[-3000:]}")
    rows = json.loads(sh(*command, "status", "--json"))
    row: dict[str, object] = rows[0]
    return row


def fit_seconds(image: str, platform: str, fits: int) -> float:
    out = sh("docker", "run", "--rm", "--network", "none", "--platform", platform,
             "--entrypoint", "python3", image, "-c", FIT.format(fits=fits))
    return float(out.strip().splitlines()[-1])


def remove(images: dict[str, str]) -> None:
    """The project's images and so their build cache (the runtime image stays)."""
    subprocess.run(["docker", "image", "rm", "-f", *images.values()], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=20, help="fit_model calls per platform")
    parser.add_argument("--base", default="flops-base:bookworm")
    parser.add_argument("--arm-base", default="flops-base:bookworm-arm64")
    args = parser.parse_args()
    runtime_images(args.base, args.arm_base)
    results: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="flops-bench-platforms-") as tmp:
        root = Path(tmp)
        repo = example_repo(root)
        for platform in (NATIVE, EMULATED):
            row = build(root, repo, platform, args.base, args.arm_base)
            images = dict(row["images"])  # type: ignore[call-overload]
            try:
                timings: dict[str, float] = dict(row["timings"])  # type: ignore[call-overload]
                seconds = sum(timings.get(stage, 0.0) for stage in BUILD_STAGES)
                fit = fit_seconds(images["learner"], platform, args.fits)
            finally:
                remove(images)
            results[platform] = (seconds, fit)
            stages = ", ".join(f"{s} {timings.get(s, 0.0):.1f}s" for s in BUILD_STAGES)
            print(f"{platform}: build {seconds:.1f}s ({stages}); fit_model {fit * 1000:.2f} ms")
    (native_build, native_fit), (arm_build, arm_fit) = results[NATIVE], results[EMULATED]
    print(f"build of the example, {EMULATED} emulated vs {NATIVE} native: {arm_build:.1f}s vs "
          f"{native_build:.1f}s = {arm_build / native_build:.1f}x")
    print(f"learner fit_model (median of {args.fits}), emulated vs native: {arm_fit * 1000:.2f} "
          f"ms vs {native_fit * 1000:.2f} ms = {arm_fit / native_fit:.1f}x")


if __name__ == "__main__":
    main()
