"""Benchmark: shipping a trained model to a swarm builder as a carrier image, against the
engine doing the same.

A model directory of ``--mib`` MiB (an MLmodel file and random weights, as incompressible as
real ones) goes to a fresh registry (docker-registry on loopback) as a one-layer image:

- ours: ``push_model_carrier`` (the registry's HTTP API: tar, gzip, two blobs, a manifest);
- baseline: ``DOCKER_BUILDKIT=0 docker build`` of ``FROM scratch`` + ``COPY model /model``,
  then ``docker push``: what an engine-made carrier would cost;
- then the builder's side, the same for both: ``fetch_model`` (pull, archive of /model,
  unpack) into a fresh directory.

Each is run ``--runs`` times (pushes under a new tag each time, the registry emptied between
runs so every blob is uploaded); medians and the ratio ours / baseline are printed. A second
push of the same model (the blobs are there) is printed too. Everything made here is removed.

    flock /tmp/flops-integration.lock .venv/bin/python bench/model_carrier.py [--mib 64] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from support import RegistryServer  # noqa: E402

from reconciler.builder.engine import Engine  # noqa: E402
from reconciler.builder.model_carrier import fetch_model  # noqa: E402
from reconciler.edges.model_carrier import push_model_carrier  # noqa: E402


def make_model(root: Path, mib: int) -> Path:
    model = root / "model"
    (model / "data").mkdir(parents=True)
    (model / "MLmodel").write_text("flavors:\n  python_function: {}\n")
    with open(model / "data" / "weights.bin", "wb") as out:
        for _ in range(mib):
            out.write(os.urandom(1024 * 1024))
    return model


def docker(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(["docker", *args], check=True, capture_output=True, cwd=cwd,
                   env={**os.environ, "DOCKER_BUILDKIT": "0"})


def baseline(model: Path, ref: str, work: Path) -> float:
    context = work / "context"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir()
    shutil.copytree(model, context / "model", symlinks=True)
    (context / "Dockerfile").write_text("FROM scratch\nCOPY model /model\n")
    start = time.perf_counter()
    docker("build", "--quiet", "--tag", ref, ".", cwd=context)
    docker("push", "--quiet", ref)
    elapsed = time.perf_counter() - start
    docker("image", "rm", ref)
    return elapsed


def ours(model: Path, registry: RegistryServer, ref: str) -> float:
    start = time.perf_counter()
    push_model_carrier(registry.url, ref, model, "linux/amd64", timeout=60)
    return time.perf_counter() - start


def fetch(ref: str, work: Path) -> float:
    target = work / "fetched"
    shutil.rmtree(target, ignore_errors=True)
    start = time.perf_counter()
    fetch_model(Engine.from_env(), ref, target)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    figures: dict[str, list[float]] = {"baseline": [], "ours": [], "ours again": [],
                                       "fetch": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = make_model(work, args.mib)
        for run in range(args.runs):
            registry = RegistryServer.start(work / f"registry-{run}")
            try:
                prefix = f"{registry.host}/bench/carrier"
                order = [("baseline", f"{prefix}/engine:{run}"), ("ours", f"{prefix}/api:{run}")]
                for what, ref in order if run % 2 == 0 else reversed(order):
                    figures[what].append(baseline(model, ref, work) if what == "baseline"
                                         else ours(model, registry, ref))
                figures["ours again"].append(ours(model, registry, f"{prefix}/api:again{run}"))
                figures["fetch"].append(fetch(f"{prefix}/api:{run}", work))
            finally:
                registry.stop()
    medians = {what: statistics.median(samples) for what, samples in figures.items()}
    print(f"model of {args.mib} MiB, {args.runs} runs, medians:")
    for what, seconds in medians.items():
        print(f"  {what:<11} {seconds:7.3f} s  ({seconds / medians['baseline']:.2f}x baseline)")
    print("baseline: docker build FROM scratch + COPY, docker push; ours: registry API push; "
          "ours again: the same model under another tag; fetch: the builder's pull + unpack")


if __name__ == "__main__":
    main()
