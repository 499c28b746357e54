"""The actors' pure parts: settings, parameter shapes, round bookkeeping, events, backoff."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import numpy as np
import pytest
from actors_support import free_port
from flops_actor.connect import AggregatorUnreachable, Backoff, Deadline, wait_until_listening
from flops_actor.events import Events
from flops_actor.parameters import ParametersError, Shape, to_arrays
from flops_actor.rounds import Progress, RoundResult, weighted_mean
from flops_actor.settings import (
    Address,
    SettingsError,
    aggregator_settings,
    learner_settings,
    parse_address,
)


def test_learner_settings_defaults_and_required_values() -> None:
    settings = learner_settings(
        {"FLOPS_AGGREGATOR": "agg:8080", "FLOPS_DATA_TAGS": "mnist"}, hostname="host-1"
    )
    assert settings.aggregator == Address("agg", 8080)
    assert settings.connect_timeout == 300
    assert settings.name == "host-1"
    assert settings.app_dir == Path("/app")
    with pytest.raises(SettingsError, match="FLOPS_AGGREGATOR is not set"):
        learner_settings({"FLOPS_DATA_TAGS": "mnist"}, hostname="h")
    with pytest.raises(SettingsError, match="FLOPS_DATA_TAGS is not set"):
        learner_settings({"FLOPS_AGGREGATOR": "a:1"}, hostname="h")
    with pytest.raises(SettingsError, match="FLOPS_CONNECT_TIMEOUT='soon'"):
        learner_settings(
            {"FLOPS_AGGREGATOR": "a:1", "FLOPS_DATA_TAGS": "x", "FLOPS_CONNECT_TIMEOUT": "soon"},
            hostname="h",
        )


def test_aggregator_settings_defaults() -> None:
    settings = aggregator_settings({"FLOPS_MODEL_FLAVOR": "Keras"})
    assert (settings.rounds, settings.min_fit_clients, settings.wait_timeout) == (3, 1, 600)
    assert str(settings.bind) == "0.0.0.0:8080"
    assert settings.output_dir == Path("/flops/output")
    assert settings.flavor == "keras" and settings.tracking_uri is None
    assert (
        aggregator_settings(
            {"FLOPS_MODEL_FLAVOR": "sklearn", "FLOPS_MIN_FIT_CLIENTS": "3"}
        ).learners_needed
        == 3
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "FLOPS_MODEL_FLAVOR is not set"),
        ({"FLOPS_MODEL_FLAVOR": "xgboost"}, "expected one of sklearn, pytorch"),
        ({"FLOPS_MODEL_FLAVOR": "sklearn", "FLOPS_ROUNDS": "0"}, "must be greater than 0"),
        ({"FLOPS_MODEL_FLAVOR": "sklearn", "FLOPS_PORT": "80a"}, "FLOPS_PORT='80a'"),
    ],
)
def test_bad_aggregator_settings(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        aggregator_settings(env)


def test_addresses() -> None:
    assert str(parse_address("X", "[::1]:9000")) == "[::1]:9000"
    for bad in ("agg", "agg:", ":80", "agg:99999"):
        with pytest.raises(SettingsError, match="expected host:port"):
            parse_address("X", bad)


@pytest.mark.parametrize(
    "parameters",
    [
        [0.5, 1.5],
        (np.ones((2, 3)), np.zeros(2)),
        {"w": np.arange(4.0), "b": 2.0},
        np.eye(2),
        [np.float32(1.0), [1.0, 2.0]],
    ],
)
def test_parameters_come_back_in_the_shape_the_repository_returned(parameters: object) -> None:
    shape = Shape.of(parameters)
    arrays = to_arrays(parameters)
    assert all(isinstance(a, np.ndarray) for a in arrays)
    restored = shape.restore([a * 2 for a in arrays])
    assert type(restored) is type(parameters)
    assert [np.asarray(v).tolist() for v in to_arrays(restored)] == [
        (np.asarray(v) * 2).tolist() for v in to_arrays(parameters)
    ]


def test_plain_numbers_stay_plain_numbers() -> None:
    restored = Shape.of([0.0, 1.0]).restore([np.asarray(2.0), np.asarray(3.0)])
    assert restored == [2.0, 3.0] and all(type(v) is float for v in restored)


def test_parameters_that_are_not_arrays() -> None:
    with pytest.raises(ParametersError, match="not numeric"):
        to_arrays([object()])
    with pytest.raises(ParametersError, match="received 1 parameter arrays, the model has 2"):
        Shape.of([1.0, 2.0]).restore([np.asarray(1.0)])


def test_weighted_mean() -> None:
    assert weighted_mean([(80, 1.0), (20, 0.0)]) == pytest.approx(0.8)
    assert weighted_mean([]) is None
    assert weighted_mean([(0, 0.5)]) is None


def test_best_round_is_highest_accuracy_then_lowest_loss() -> None:
    progress = Progress()
    assert progress.add(RoundResult(1, 0.9, 0.5, 2, 1.0), "p1")
    assert progress.add(RoundResult(2, 0.8, 0.7, 2, 1.0), "p2")
    assert not progress.add(RoundResult(3, 0.1, 0.6, 2, 1.0), "p3")
    assert progress.add(RoundResult(4, 0.7, 0.7, 2, 1.0), "p4")
    assert not progress.add(RoundResult(5, float("nan"), None, 2, 1.0), "p5")
    assert (progress.best and progress.best.round, progress.best_parameters) == (4, "p4")
    document = progress.document("pytorch")
    assert document["best_round"] == 4 and document["model"] == "model"
    assert document["rounds"][4] == {
        "round": 5,
        "loss": None,
        "accuracy": None,
        "learners": 2,
        "seconds": 1.0,
    }
    json.dumps(document, allow_nan=False)


def test_events_are_json_lines_with_numbers_made_plain() -> None:
    stream = io.StringIO()
    events = Events(stream, "learner")
    events.emit("evaluate", loss=np.float64(0.25), accuracy=float("nan"), examples=np.int64(3))
    assert json.loads(stream.getvalue()) == {
        "type": "evaluate",
        "loss": 0.25,
        "accuracy": None,
        "examples": 3,
    }


def test_waiting_for_an_aggregator_that_never_listens() -> None:
    now = [0.0]
    waits: list[tuple[int, float]] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    deadline = Deadline(12.0, clock=lambda: now[0])
    with pytest.raises(AggregatorUnreachable, match=r"unreachable after 12 s \(6 attempts"):
        wait_until_listening(
            Address("127.0.0.1", free_port()),
            deadline,
            Backoff(),
            lambda attempt, delay, reason: waits.append((attempt, delay)),
            sleep,
        )
    assert waits == [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.5)]


def test_waiting_ends_as_soon_as_the_port_listens() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = Address("127.0.0.1", server.getsockname()[1])
        wait_until_listening(address, Deadline(5.0), Backoff(), lambda *_: None)
