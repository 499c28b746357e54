"""Benchmark: what a builder costs in each backend, deploy -> its output line read -> removed.

The same one-shot service (the base image printing one line, labelled like a builder) is run
through the reconciler's own backends: compose on the local engine, and a stack on a
single-node swarm of the local engine (made here, left at the end). One sample is the time
from the deploy call until the backend has yielded the line and reported the exit status,
then the removal. The baseline is `docker run --rm` of the same image and command. Prints
p50 and p95 of each and the ratio to the baseline. Needs the engine and the base image, and
an engine that is not in a swarm already (`bash scripts/setup.sh`).

    python bench/backends.py [--runs 10] [--base-image flops-base:bookworm]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from reconciler.core.config import Config
from reconciler.edges.backend import PLACED, Backend
from reconciler.edges.compose_backend import ComposeBackend
from reconciler.edges.swarm_backend import SwarmBackend

SPEC = """\
{name}services:
  image-builder:
    image: "{image}"
    command: ["echo", "built"]
    labels:
      flops.role: "image-builder"
{network}    deploy:
      restart_policy:
        condition: "none"
      placement:
        constraints:
          - "node.labels.image-builder == true"
{networks}"""


def spec(image: str, name: str, *, stack: bool) -> str:
    if stack:
        return SPEC.format(name="", image=image, network="    networks: [\"builder\"]\n",
                           networks="networks:\n  builder:\n    external: true\n"
                                    "    name: \"host\"\n")
    return SPEC.format(name=f'name: "{name}"\n', image=image,
                       network='    network_mode: "host"\n', networks="")


def one_build(backend: Backend, config: Config, image: str, name: str, *, stack: bool) -> float:
    host = backend.pick_host(print)
    start = time.perf_counter()
    builder = backend.deploy(host, name, spec(image, name, stack=stack), "{}")
    lines = [o.line for o in backend.output(builder, follow=True) if o.stream != PLACED]
    code = backend.wait(builder)
    elapsed = time.perf_counter() - start
    backend.remove(host, name, stop_timeout=0)
    if lines != ["built"] or code != 0:
        raise RuntimeError(f"{name}: unexpected output {lines} / exit {code}")
    return elapsed


def docker_run(image: str) -> float:
    start = time.perf_counter()
    subprocess.run(["docker", "run", "--rm", "--network", "host", image, "echo", "built"],
                   check=True, capture_output=True)
    return time.perf_counter() - start


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[max(0, round(0.95 * len(ordered)) - 1)]


def measure(runs: int, work: Callable[[int], float]) -> tuple[float, float]:
    return summary([work(i) for i in range(runs)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--base-image", default="flops-base:bookworm")
    args = parser.parse_args()
    image = args.base_image
    with tempfile.TemporaryDirectory(prefix="flops-bench-") as tmp:
        specs = Path(tmp)
        compose_config = Config()
        swarm_config = Config(backend="swarm", registry="http://127.0.0.1:5000")
        compose = ComposeBackend(compose_config, lambda n: specs / n, [])
        swarm = SwarmBackend(swarm_config, lambda n: specs / n, [])
        baseline = measure(args.runs, lambda i: docker_run(image))
        by_compose = measure(args.runs, lambda i: one_build(
            compose, compose_config, image, f"flops-bench-c{i}", stack=False))
        subprocess.run(["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"],
                       check=True, capture_output=True)
        try:
            node = subprocess.run(["docker", "info", "--format", "{{.Swarm.NodeID}}"],
                                  check=True, capture_output=True, text=True).stdout.strip()
            subprocess.run(["docker", "node", "update", "--label-add", "image-builder=true",
                            node], check=True, capture_output=True)
            by_swarm = measure(args.runs, lambda i: one_build(
                swarm, swarm_config, image, f"flops-bench-s{i}", stack=True))
        finally:
            subprocess.run(["docker", "swarm", "leave", "--force"], capture_output=True)
    print(f"one-shot builder, deploy -> output read -> exit status, {args.runs} runs each")
    print(f"  baseline docker run --rm: p50 {baseline[0] * 1000:7.1f} ms  "
          f"p95 {baseline[1] * 1000:7.1f} ms")
    for label, (p50, p95) in (("compose backend", by_compose), ("swarm backend", by_swarm)):
        print(f"  {label:<24}: p50 {p50 * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms  "
              f"({p50 / baseline[0]:.2f}x the baseline at p50)")


if __name__ == "__main__":
    main()
