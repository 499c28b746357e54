"""Real federations of real processes on localhost: one aggregator, learners, 3 rounds.

Each actor is ``python -m flops_actor.<role>`` with PYTHONPATH=actors:<repository>, as in the
images. Tests know where the processes are from their stdout events, never from sleeping.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from actors_support import SKLEARN_REPO, TOY_REPO, Actor, free_port, write_mnist_parquet

Spawn = Callable[..., Actor]

FAILING_REPO = '''
import os


class ModelManager:
    """Trains a counter; fit_model raises in the round FAIL_IN_ROUND says."""

    def __init__(self):
        self.weight = 0.0
        self.fits = 0

    def set_model_data(self):
        pass

    def get_model(self):
        return self

    def get_model_parameters(self):
        return [self.weight]

    def set_model_parameters(self, parameters):
        self.weight = parameters[0]

    def fit_model(self):
        self.fits += 1
        if os.environ.get("FAIL_IN_ROUND") == str(self.fits):
            raise RuntimeError("disk on fire")
        self.weight += 1.0
        return 10

    def evaluate_model(self):
        return 1.0 / (1.0 + self.weight), self.weight / (1.0 + self.weight), 5
'''


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    actors: list[Actor] = []

    def start(role: str, repo: Path, **env: str) -> Actor:
        actor = Actor(role, repo, env, tmp_path)
        actors.append(actor)
        return actor

    try:
        yield start
    finally:
        for actor in actors:
            actor.kill()


def aggregator_env(port: int, output: Path, **extra: str) -> dict[str, str]:
    return {
        "FLOPS_PORT": str(port),
        "FLOPS_BIND": "127.0.0.1",
        "FLOPS_OUTPUT_DIR": str(output),
        "FLOPS_MODEL_FLAVOR": "sklearn",
        "FLOPS_ROUNDS": "3",
        "FLOPS_MIN_AVAILABLE_CLIENTS": "2",
        "FLOPS_MIN_FIT_CLIENTS": "2",
        "FLOPS_MIN_EVALUATE_CLIENTS": "2",
        "FLOPS_WAIT_TIMEOUT": "120",
        **extra,
    }


def learner_env(port: int, name: str, data: Path | None = None, **extra: str) -> dict[str, str]:
    env = {
        "FLOPS_AGGREGATOR": f"127.0.0.1:{port}",
        "FLOPS_DATA_TAGS": "mnist",
        "FLOPS_LEARNER_NAME": name,
        "FLOPS_CONNECT_TIMEOUT": "120",
        **extra,
    }
    if data is not None:
        env["FLOPS_DATA_DIR"] = str(data)
    return env


def run_three_rounds(
    spawn: Spawn, repo: Path, tmp_path: Path, data: Sequence[Path | None]
) -> tuple[Actor, list[Actor], Path]:
    port, output = free_port(), tmp_path / "output"
    aggregator = spawn("aggregator", repo, **aggregator_env(port, output))
    learners = [
        spawn("learner", repo, **learner_env(port, f"learner-{i}", d)) for i, d in enumerate(data)
    ]
    assert aggregator.finish() == 0, aggregator.tail()
    for learner in learners:
        assert learner.finish() == 0, learner.tail()
    return aggregator, learners, output


def check_rounds(aggregator: Actor, learners: list[Actor], output: Path) -> dict[str, Any]:
    rounds = aggregator.of_type("round")
    assert [r["round"] for r in rounds] == [1, 2, 3]
    for event in rounds:
        assert event["learners"] == 2
        assert isinstance(event["loss"], float)
        assert 0.0 <= event["accuracy"] <= 1.0
        assert event["seconds"] > 0
    # The aggregator's accuracy is the learners' accuracies weighted by their examples.
    for event in rounds:
        evaluations = [
            e
            for learner in learners
            for e in learner.of_type("evaluate")
            if e["round"] == event["round"]
        ]
        examples = sum(e["examples"] for e in evaluations)
        expected = sum(e["accuracy"] * e["examples"] for e in evaluations) / examples
        assert event["accuracy"] == pytest.approx(expected)
    for learner in learners:
        assert [e["round"] for e in learner.of_type("fit")] == [1, 2, 3]
        assert learner.of_type("finished")[0]["rounds"] == 3
    result: dict[str, Any] = json.loads((output / "result.json").read_text())
    assert result["rounds"] == [
        {k: v for k, v in e.items() if k not in ("type", "_at")} for e in rounds
    ]
    finished = aggregator.of_type("finished")[0]
    assert result["best_round"] == finished["best_round"]
    assert result["flavor"] == "sklearn" and result["model"] == "model"
    best = max(rounds, key=lambda r: (r["accuracy"], -r["loss"]))
    assert result["best_round"] == best["round"]
    return result


def test_sklearn_repository_in_flops_layout_federates_and_saves_an_sklearn_model(
    spawn: Spawn, tmp_path: Path
) -> None:
    data = []
    for i in range(2):
        data.append(tmp_path / f"data-{i}")
        write_mnist_parquet(data[-1] / "mnist" / "part-0.parquet", 100, seed=i)
    aggregator, learners, output = run_three_rounds(spawn, SKLEARN_REPO, tmp_path, data)
    check_rounds(aggregator, learners, output)
    assert aggregator.of_type("saved")[0]["mlflow_flavor"] == "sklearn"

    import mlflow.sklearn
    import numpy as np

    model = mlflow.sklearn.load_model(str(output / "model"))
    images = np.zeros((2, 784))
    assert model.predict(images).shape == (2,)
    _report_timings(aggregator, learners)


def test_toy_example_federates_and_is_saved_as_a_pyfunc_model(spawn: Spawn, tmp_path: Path) -> None:
    aggregator, learners, output = run_three_rounds(spawn, TOY_REPO, tmp_path, [None, None])
    result = check_rounds(aggregator, learners, output)
    # Its model is a plain object and its image has no scikit-learn: a pyfunc around it.
    assert aggregator.of_type("saved")[0]["mlflow_flavor"] == "python_function"

    import mlflow.pyfunc

    loaded = mlflow.pyfunc.load_model(str(output / "model"))
    manager = loaded.unwrap_python_model().model
    weight, bias = manager.get_model_parameters()
    assert isinstance(weight, float) and weight == pytest.approx(2.0, abs=0.1)
    assert bias == pytest.approx(1.0, abs=0.1)
    assert result["best_round"] in (1, 2, 3)
    # The example's ModelManager predicts y = weight * x + bias for each row [x].
    [prediction] = loaded.predict([[1.0]])
    assert prediction == pytest.approx(weight + bias)


def test_learner_started_first_waits_and_connects_once_the_aggregator_is_up(
    spawn: Spawn, tmp_path: Path
) -> None:
    port = free_port()
    learner = spawn("learner", TOY_REPO, **learner_env(port, "early"))
    waiting = learner.wait_type("waiting")
    assert waiting["aggregator"] == f"127.0.0.1:{port}" and waiting["reason"]
    aggregator = spawn(
        "aggregator",
        TOY_REPO,
        **aggregator_env(
            port,
            tmp_path / "out",
            FLOPS_MIN_AVAILABLE_CLIENTS="1",
            FLOPS_MIN_FIT_CLIENTS="1",
            FLOPS_MIN_EVALUATE_CLIENTS="1",
        ),
    )
    learner.wait_type("connected")
    assert aggregator.finish() == 0, aggregator.tail()
    assert learner.finish() == 0, learner.tail()
    assert [r["learners"] for r in aggregator.of_type("round")] == [1, 1, 1]


def test_learner_gives_up_when_the_aggregator_stays_unreachable(spawn: Spawn) -> None:
    port = free_port()
    learner = spawn("learner", TOY_REPO, **learner_env(port, "alone", FLOPS_CONNECT_TIMEOUT="2"))
    assert learner.finish() == 1
    assert learner.of_type("waiting")
    errors = learner.of_type("error")
    assert len(errors) == 1
    assert f"aggregator 127.0.0.1:{port} unreachable after" in errors[0]["message"]
    assert "FLOPS_CONNECT_TIMEOUT=2" in errors[0]["message"]


def test_missing_data_tag_fails_the_learner_naming_tag_and_directory(
    spawn: Spawn, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    write_mnist_parquet(data / "mnist" / "part-0.parquet", 20, seed=0)
    learner = spawn(
        "learner", SKLEARN_REPO, **learner_env(free_port(), "l", data, FLOPS_DATA_TAGS="cifar")
    )
    assert learner.finish() == 1
    (error,) = learner.of_type("error")
    assert error["message"].startswith("data tag 'cifar': no folder")
    assert str(data / "cifar") in error["message"]
    assert not learner.of_type("connected")


def test_empty_data_folder_fails_the_learner(spawn: Spawn, tmp_path: Path) -> None:
    (tmp_path / "data" / "mnist").mkdir(parents=True)
    learner = spawn("learner", SKLEARN_REPO, **learner_env(free_port(), "l", tmp_path / "data"))
    assert learner.finish() == 1
    (error,) = learner.of_type("error")
    assert "data tag 'mnist': no *.parquet files in" in error["message"]


def test_too_few_learners_within_the_wait_timeout_fails_the_aggregator(
    spawn: Spawn, tmp_path: Path
) -> None:
    aggregator = spawn(
        "aggregator",
        TOY_REPO,
        **aggregator_env(free_port(), tmp_path / "out", FLOPS_WAIT_TIMEOUT="1"),
    )
    assert aggregator.finish() == 1
    assert aggregator.of_type("waiting")[0]["needed"] == 2
    (error,) = aggregator.of_type("error")
    assert error["message"].startswith("too few learners: 0 connected, 2 needed")
    assert not (tmp_path / "out" / "result.json").exists()


def test_aggregator_whose_port_is_taken_fails_with_one_line(spawn: Spawn, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        aggregator = spawn("aggregator", TOY_REPO, **aggregator_env(port, tmp_path / "out"))
        assert aggregator.finish() == 1
    (error,) = aggregator.of_type("error")
    assert error["message"].startswith(f"cannot listen on 127.0.0.1:{port}: ")


def test_a_learner_whose_fit_model_raises_fails_the_federation_naming_it_and_the_round(
    spawn: Spawn, tmp_path: Path
) -> None:
    repo = tmp_path / "failing-repo"
    repo.mkdir()
    (repo / "model_manager.py").write_text(FAILING_REPO)
    port = free_port()
    aggregator = spawn("aggregator", repo, **aggregator_env(port, tmp_path / "out"))
    healthy = spawn("learner", repo, **learner_env(port, "healthy"))
    broken = spawn("learner", repo, **learner_env(port, "broken", FAIL_IN_ROUND="2"))
    assert aggregator.finish() == 1, aggregator.tail()
    (error,) = aggregator.of_type("error")
    assert error["message"] == (
        "learner broken failed in round 2: fit_model raised RuntimeError: disk on fire"
    )
    assert [r["round"] for r in aggregator.of_type("round")] == [1]
    assert broken.finish() == 1
    assert broken.of_type("error")[0]["message"] == (
        "fit_model raised RuntimeError: disk on fire (round 2)"
    )
    assert healthy.finish() == 1
    assert healthy.of_type("error")[0]["message"] == (
        "the aggregator ended the federation with an error: " + error["message"]
    )


def test_metrics_and_model_are_logged_to_the_mlflow_tracking_uri(
    spawn: Spawn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps files opt-in
    port, tracking = free_port(), (tmp_path / "mlruns").as_uri()
    aggregator = spawn(
        "aggregator",
        TOY_REPO,
        **aggregator_env(
            port,
            tmp_path / "out",
            FLOPS_ROUNDS="2",
            FLOPS_MIN_AVAILABLE_CLIENTS="1",
            FLOPS_MIN_FIT_CLIENTS="1",
            FLOPS_MIN_EVALUATE_CLIENTS="1",
            MLFLOW_TRACKING_URI=tracking,
            MLFLOW_ALLOW_FILE_STORE="true",
            MLFLOW_EXPERIMENT_NAME="toy",
        ),
    )
    learner = spawn("learner", TOY_REPO, **learner_env(port, "solo"))
    assert aggregator.finish() == 0, aggregator.tail()
    assert learner.finish() == 0, learner.tail()

    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking)
    experiment = client.get_experiment_by_name("toy")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    history = client.get_metric_history(run.info.run_id, "accuracy")
    assert sorted(m.step for m in history) == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model", "result.json"} <= artifacts
    mlflow.set_tracking_uri(tracking)
    assert mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model") is not None


def _report_timings(aggregator: Actor, learners: list[Actor]) -> None:
    """Print where a round's time goes (visible with -s): training vs overhead."""
    for event in aggregator.of_type("round"):
        work = max(
            sum(
                e["seconds"]
                for e in learner.events
                if e["type"] in ("fit", "evaluate") and e.get("round") == event["round"]
            )
            for learner in learners
        )
        print(
            f"round {event['round']}: {event['seconds']:.3f} s, "
            f"fit+evaluate {work:.3f} s, overhead {event['seconds'] - work:.3f} s"
        )
    print(f"aggregator exited after {aggregator.events[-1]['_at']:.1f} s")
