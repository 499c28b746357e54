"""The FL-actor images are FLOps actors (issue 10, DESIGN §9): images built by the reconciler
from (a) the bundled example and (b) an sklearn repository in the FLOps layout (flops_utils,
mlflow at module level, load_dataset + set_format("numpy") + dataset["image"].reshape) train
for real: one aggregator and two learners, the README's compose file, 3 rounds. And each bad
case ends with one clear error and a non-zero exit."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from actors_support import SKLEARN_REPO, TOY_REPO, write_mnist_parquet
from support import (
    RegistryServer,
    free_port,
    make_ml_repo,
    remove_images_by_prefix,
    wait_until,
)

from integration.federation import Actor, Event, Federation, events_in
from integration.harness import Workspace, docker, sla_text

ROUNDS = 3


@dataclass(frozen=True)
class Images:
    learner: str
    aggregator: str


def source_files(directory: Path, **replace: str) -> dict[str, str]:
    files = {p.relative_to(directory).as_posix(): p.read_text()
             for p in sorted(directory.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}
    return {**files, **replace}


def build_images(root: Path, name: str, files: dict[str, str], registry: RegistryServer,
                 base_image: str) -> Images:
    """The reconciler builds the project's images, as a user's `apply --wait` does."""
    make_ml_repo(root / "work", f"{name}-owner/{name}", files, bare_dir=root / "remotes")
    ws = Workspace(root / "ws", registry.url, base_image)
    ws.sla(f"{name}.yaml", sla_text(str(root / "remotes" / f"{name}-owner/{name}.git")))
    result = ws.run("apply", "--wait", timeout=1500)
    assert result.code == 0, result.stdout + result.stderr + ws.log(name)
    images = ws.status()[name]["images"]
    return Images(images["learner"], images["aggregator"])


BROKEN_FIT = '''
    def fit_model(self, epochs: int = 50, learning_rate: float = 0.01) -> int:
        self.fits = getattr(self, "fits", 0) + 1
        if self.fits == 2:
            raise RuntimeError("disk on fire")
        return len(self.train)
'''


@pytest.fixture(scope="module")
def images(registry: RegistryServer, base_image: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Images]]:
    """The example's, the sklearn repository's and a broken example's images (built once)."""
    root = tmp_path_factory.mktemp("federation-images")
    toy = source_files(TOY_REPO)
    broken = toy["model_manager.py"].replace("    def evaluate_model(", BROKEN_FIT.lstrip("\n")
                                             + "\n    def evaluate_model(", 1)
    try:
        yield {
            "toy": build_images(root / "toy", "toy", toy, registry, base_image),
            "sklearn": build_images(root / "sklearn", "mnist", source_files(SKLEARN_REPO),
                                    registry, base_image),
            "broken": build_images(root / "broken", "broken",
                                   {**toy, "model_manager.py": broken}, registry, base_image),
        }
    finally:
        remove_images_by_prefix(f"{registry.host}/")


def federation(tmp_path: Path, images: Images, data: list[Path], tags: str) -> Federation:
    out = tmp_path / "out"
    out.mkdir()
    return Federation(f"flops-test-{uuid.uuid4().hex[:10]}", {
        "LEARNER_IMAGE": images.learner, "AGGREGATOR_IMAGE": images.aggregator,
        "DATA_1": str(data[0]), "DATA_2": str(data[1]), "DATA_TAGS": tags,
        "OUTPUT": str(out), "ROUNDS": str(ROUNDS)})


def trained(fed: Federation) -> tuple[list[Event], dict[str, Any], Path]:
    """Run the federation to its end; every container exited 0. The aggregator's round
    events, result.json and the model directory."""
    try:
        fed.run()
        codes = fed.exit_codes()
        aggregator = fed.events("aggregator")
        learners = {name: fed.events(name) for name in ("learner-1", "learner-2")}
    finally:
        fed.down()
    assert fed.containers() == [], "compose down removes every container"
    assert codes == {"aggregator": 0, "learner-1": 0, "learner-2": 0}, (codes, aggregator)
    rounds = [e for e in aggregator if e["type"] == "round"]
    assert [e["round"] for e in rounds] == list(range(1, ROUNDS + 1)), aggregator
    for round_ in rounds:
        assert round_["learners"] == 2
        assert 0.0 <= round_["accuracy"] <= 1.0
        # Weighted by examples: the learners' own evaluations of that round.
        evaluated = [e for events in learners.values() for e in events
                     if e["type"] == "evaluate" and e["round"] == round_["round"]]
        assert len(evaluated) == 2
        weighted = sum(e["accuracy"] * e["examples"] for e in evaluated) / sum(
            e["examples"] for e in evaluated)
        assert round_["accuracy"] == pytest.approx(weighted)
    out = Path(fed.env["OUTPUT"])
    result = json.loads((out / "result.json").read_text())
    assert result["rounds"] == [{k: v for k, v in e.items() if k != "type"} for e in rounds]
    best = max(rounds, key=lambda e: (e["accuracy"], -e["loss"]))
    assert result["best_round"] == best["round"]
    [finished] = [e for e in aggregator if e["type"] == "finished"]
    assert finished["best_round"] == best["round"]
    return rounds, result, out / "model"


def test_the_example_trains_with_its_built_images(tmp_path: Path,
                                                  images: dict[str, Images]) -> None:
    data = [tmp_path / "data-1", tmp_path / "data-2"]
    for directory in data:
        (directory / "dev").mkdir(parents=True)  # the example makes its own data
    _rounds, result, model = trained(federation(tmp_path, images["toy"], data, "dev"))
    assert result["flavor"] == "sklearn"
    import mlflow.pyfunc  # the example's model is a plain object: a pyfunc model

    loaded = mlflow.pyfunc.load_model(str(model))
    [y] = loaded.predict([[2.0]])
    assert y == pytest.approx(5.0, abs=0.5)  # y = 2x + 1


def test_an_sklearn_flops_repository_trains_on_each_learners_parquet_data(
    tmp_path: Path, images: dict[str, Images]
) -> None:
    data = [tmp_path / "data-1", tmp_path / "data-2"]
    for seed, directory in enumerate(data):
        write_mnist_parquet(directory / "mnist" / "part-0.parquet", rows=200, seed=seed)
    rounds, _result, model = trained(federation(tmp_path, images["sklearn"], data, "mnist"))
    assert rounds[-1]["accuracy"] > 0.5, rounds  # it learns: 10 easy classes
    import mlflow.sklearn
    import numpy as np

    classifier = mlflow.sklearn.load_model(str(model))
    samples = np.zeros((3, 28 * 28))
    assert classifier.predict(samples).shape == (3,)


def error_of(output: str) -> str:
    errors = [e["message"] for e in events_in(output) if e["type"] == "error"]
    assert len(errors) == 1, output
    return str(errors[0])


def run_alone(image: str, env: dict[str, str], mounts: list[str] | None = None) -> tuple[int,
                                                                                         str]:
    actor = Actor(image, env, mounts or []).start()
    try:
        return actor.wait(), actor.output()
    finally:
        actor.remove()


def test_a_learner_missing_its_data_tag_or_data_fails_naming_tag_and_directory(
    tmp_path: Path, images: dict[str, Images]
) -> None:
    (tmp_path / "data" / "empty").mkdir(parents=True)
    write_mnist_parquet(tmp_path / "data" / "mnist" / "part-0.parquet", rows=20, seed=1)
    mount = [f"{tmp_path / 'data'}:/flops/data:ro"]
    for tag in ("absent", "empty"):
        code, output = run_alone(images["sklearn"].learner, {
            "FLOPS_AGGREGATOR": "127.0.0.1:9", "FLOPS_DATA_TAGS": tag}, mount)
        assert code != 0
        message = error_of(output)
        assert tag in message and "/flops/data" in message, message


def test_an_unreachable_aggregator_and_too_few_learners_end_in_one_clear_error(
    images: dict[str, Images]
) -> None:
    code, output = run_alone(images["toy"].learner, {
        "FLOPS_AGGREGATOR": "127.0.0.1:9", "FLOPS_DATA_TAGS": "dev",
        "FLOPS_CONNECT_TIMEOUT": "2"})
    assert code != 0 and "127.0.0.1:9" in error_of(output), output
    code, output = run_alone(images["toy"].aggregator, {
        "FLOPS_MIN_AVAILABLE_CLIENTS": "2", "FLOPS_WAIT_TIMEOUT": "2",
        "FLOPS_PORT": str(free_port())})
    assert code != 0, output
    message = error_of(output)
    assert "2" in message and "learner" in message, message


def test_a_learner_whose_fit_raises_fails_the_run_naming_it_and_the_round(
    tmp_path: Path, images: dict[str, Images]
) -> None:
    data = [tmp_path / "data-1", tmp_path / "data-2"]
    for directory in data:
        (directory / "dev").mkdir(parents=True)
    fed = federation(tmp_path, images["broken"], data, "dev")
    try:
        fed.run()
        codes = fed.exit_codes()
        aggregator = fed.events("aggregator")
    finally:
        fed.down()
    assert codes["aggregator"] != 0, codes
    [error] = [e["message"] for e in aggregator if e["type"] == "error"]
    assert "failed in round 2" in error and "disk on fire" in error, error
    assert "learner-1" in error or "learner-2" in error, error
    assert all(code != 0 for code in codes.values()), codes


def test_a_learner_started_before_its_aggregator_connects_once_it_is_up(
    images: dict[str, Images]
) -> None:
    network = f"flops-test-{uuid.uuid4().hex[:10]}"
    name = f"aggregator-{uuid.uuid4().hex[:8]}"
    docker("network", "create", "--label", "flops.test=federation", network)
    learner = Actor(images["toy"].learner, {
        "FLOPS_AGGREGATOR": f"{name}:8080", "FLOPS_DATA_TAGS": "dev",
        "FLOPS_CONNECT_TIMEOUT": "120"}, network=network)
    aggregator = Actor(images["toy"].aggregator, {"FLOPS_ROUNDS": "1"}, network=network,
                       name=name)
    try:
        learner.start()
        # The learner is certain to be waiting for an aggregator that does not exist yet.
        wait_until(lambda: any(e["type"] == "waiting" for e in events_in(learner.output())),
                   120, 0.1, "the learner never said it was waiting")
        aggregator.start()
        assert aggregator.wait() == 0, aggregator.output()
        assert learner.wait() == 0, learner.output()
        events = events_in(learner.output())
        assert [e["type"] for e in events].count("connected") == 1
        assert events[-1]["type"] == "finished"
    finally:
        learner.remove()
        aggregator.remove()
        docker("network", "rm", network)
