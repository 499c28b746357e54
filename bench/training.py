"""Benchmark: the orchestration overhead of a training run driven by the reconciler, against
the same federation started by hand (README "Train with the built images"), in one run.

Both sides run the same images (the sklearn test repository's, built once by `reconciler
apply --wait`, registry "local"), the same two data directories (synthetic MNIST-shaped
Parquet under the tag `mnist`, --rows rows each), 1 aggregator and 2 learners on the local
engine, --rounds rounds. Alternating, --runs times each:

- by hand: `docker compose up` of examples/federation/compose.yaml until every actor exited,
  then `docker compose down` (what a user types; the output is a bind mount);
- reconciler: `reconciler apply --wait` of the project (its images ready) until it is
  `trained`: ls-remote, the registry lookup, the data-tag probe of each learner host, the
  rendered compose project up, following the rounds, copying the model out, removing the run;
  the next run is asked for with `reconciler retrain`.

Prints the medians, their ratio (reconciler / by hand) and difference. Removes every image,
container and directory it made. On a shared engine, hold the lock:

    flock /tmp/flops-integration.lock .venv/bin/python bench/training.py [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from actor_images import BASE_IMAGE, BUILDER_IMAGE
from federation import Federation, Images, build_images, docker, federation_env

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from actors_support import write_mnist_parquet  # noqa: E402
from integration.harness import Result, Workspace, sla_text  # noqa: E402

PROJECT = "mnist"


def by_hand(tmp: Path, images: Images, data: list[Path], rounds: int) -> float:
    output = tmp / f"output-{uuid.uuid4().hex[:8]}"
    output.mkdir()
    fed = Federation(f"flops-bench-hand-{uuid.uuid4().hex[:8]}",
                     federation_env(images, data, output, rounds))
    start = time.perf_counter()
    try:
        fed.compose("up", "--no-color")
        codes = {s: c["State"]["ExitCode"] for s, c in fed.containers().items()}
    finally:
        fed.down()
    seconds = time.perf_counter() - start
    if set(codes.values()) != {0} or not (output / "result.json").is_file():
        raise RuntimeError(f"the hand-run federation failed: exit codes {codes}")
    return seconds


class Reconciled:
    """One workspace whose project trains on two learner hosts (both the local engine)."""

    def __init__(self, tmp: Path, repo_url: str, data: list[Path], rounds: int) -> None:
        hosts = [{"name": f"site-{index}", "data_dir": str(directory),
                  "addons": ["image-builder", "FLOps-learner"] if index == 1
                  else ["FLOps-learner"]} for index, directory in enumerate(data, 1)]
        self.ws = Workspace(tmp / "reconciled", "local", BASE_IMAGE, hosts=hosts,
                            extra={"build_timeout": "60m"},
                            env={"RECONCILER_BUILDER_IMAGE": BUILDER_IMAGE})
        self.ws.sla(f"{PROJECT}.yaml", sla_text(repo_url, extra=(
            f"training_configuration:\n  data_tags: [mnist]\n  training_rounds: {rounds}\n"
            "  min_available_clients: 2\n  min_fit_clients: 2\n  min_evaluate_clients: 2\n")))
        self.runs = 0

    def train(self) -> float:
        if self.runs:
            self._ok(self.ws.run("retrain", PROJECT), "retrain")
        start = time.perf_counter()
        self._ok(self.ws.run("apply", "--wait", timeout=1800), "apply --wait")
        seconds = time.perf_counter() - start
        self.runs += 1
        row = self.ws.status()[PROJECT]
        if row["phase"] != "trained":
            raise RuntimeError(f"run {self.runs}: phase {row['phase']}\n"
                               f"{self.ws.log(PROJECT)[-4000:]}")
        return seconds

    def _ok(self, result: Result, what: str) -> None:
        if result.code != 0:
            raise RuntimeError(f"reconciler {what} failed ({result.code}): {result.stdout}"
                               f"{result.stderr}\n{self.ws.log(PROJECT)[-4000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rows", type=int, default=1000, help="data rows per learner")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="flops-bench-training-"))
    images: Images | None = None
    try:
        images = build_images(tmp / "build")
        repo_url = str(tmp / "build" / "remotes" / "bench-owner"
                       / "sklearn-mnist-federation.git")
        data = [tmp / "data-1", tmp / "data-2"]
        for seed, directory in enumerate(data, 1):
            write_mnist_parquet(directory / "mnist" / "part-0.parquet", rows=args.rows,
                                seed=seed)
        reconciled = Reconciled(tmp, repo_url, data, args.rounds)
        reconciled.train()  # a first run, not counted: the images' first use on this engine
        hand: list[float] = []
        ours: list[float] = []
        for index in range(args.runs):
            if index % 2:
                ours.append(reconciled.train())
                hand.append(by_hand(tmp, images, data, args.rounds))
            else:
                hand.append(by_hand(tmp, images, data, args.rounds))
                ours.append(reconciled.train())
    finally:
        subprocess.run(["docker", "rm", "--force", *docker(
            "ps", "-aq", "--filter", "label=flops.project=mnist").split()],
            capture_output=True, check=False)
        if images is not None and images.built:
            subprocess.run(["docker", "image", "rm", "--force", *images.built],
                           capture_output=True, check=False)
            docker("image", "prune", "--force")
        shutil.rmtree(tmp, ignore_errors=True)
    by_hand_s, ours_s = statistics.median(hand), statistics.median(ours)
    print(f"training run: 1 aggregator + 2 learners, {args.rounds} rounds, {args.rows} rows per "
          f"learner, local engine; {args.runs} runs each, alternating, medians")
    print(f"  by hand (compose up .. down)            {by_hand_s:7.2f} s   "
          + ", ".join(f"{s:.2f}" for s in hand))
    print(f"  reconciler (apply --wait .. trained)    {ours_s:7.2f} s   "
          + ", ".join(f"{s:.2f}" for s in ours))
    print(f"  overhead: {ours_s - by_hand_s:+.2f} s, ratio {ours_s / by_hand_s:.2f}x")


if __name__ == "__main__":
    main()
