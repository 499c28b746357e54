"""The Flower client around the repository's ModelManager (one per learner process).

Per round: set the global parameters, ``fit_model()``, return ``(parameters, n_examples,
{})``; ``evaluate_model()`` gives ``(loss, n_examples, {"accuracy": ...})``. Decision: an
exception in the repository's code does not crash the client (Flower's legacy transport
would then only show the aggregator a broken stream); it is reported in-band as
``{"flops_error": ..., "learner": name}`` with zero examples, so the aggregator can name the
learner, the round and the cause. ``get_properties`` carries the learner's name to the
aggregator and the aggregator's final status (``flops_status``) back.
"""

from __future__ import annotations

import time
from typing import Any

from flops_utils.logging import logger
from flwr.client import NumPyClient
from flwr.common import Config, NDArrays, Scalar

from flops_actor.events import Events
from flops_actor.parameters import Shape, to_arrays
from flops_actor.repository import describe

ERROR_KEY = "flops_error"
LEARNER_KEY = "learner"
STATUS_KEY = "flops_status"
MESSAGE_KEY = "flops_message"
ROUND_KEY = "round"


class LearnerClient(NumPyClient):
    def __init__(self, manager: Any, name: str, events: Events) -> None:
        self.manager = manager
        self.name = name
        self.events = events
        self.shape = Shape.of(manager.get_model_parameters())
        self.heard_from_aggregator = False
        self.last_round = 0
        self.error: str | None = None  # this learner's own failure, reported in-band
        self.status: dict[str, Scalar] = {}  # the aggregator's final word

    def get_properties(self, config: Config) -> dict[str, Scalar]:
        self.heard_from_aggregator = True
        if STATUS_KEY in config:
            self.status = dict(config)
        return {LEARNER_KEY: self.name}

    def get_parameters(self, config: Config) -> NDArrays:
        self.heard_from_aggregator = True
        return to_arrays(self.manager.get_model_parameters())

    def fit(self, parameters: NDArrays, config: Config) -> tuple[NDArrays, int, dict[str, Scalar]]:
        server_round = self._start_round(config)
        started = time.monotonic()
        try:
            self.manager.set_model_parameters(self.shape.restore(parameters))
            examples = int(self.manager.fit_model())
            updated = to_arrays(self.manager.get_model_parameters())
        except Exception as exc:
            return parameters, 0, self._failed("fit_model", server_round, exc)
        self.events.emit(
            "fit", round=server_round, examples=examples, seconds=time.monotonic() - started
        )
        return updated, examples, {}

    def evaluate(
        self, parameters: NDArrays, config: Config
    ) -> tuple[float, int, dict[str, Scalar]]:
        server_round = self._start_round(config)
        started = time.monotonic()
        try:
            self.manager.set_model_parameters(self.shape.restore(parameters))
            loss, accuracy, examples = self.manager.evaluate_model()
            loss, accuracy, examples = float(loss), float(accuracy), int(examples)
        except Exception as exc:
            return 0.0, 0, self._failed("evaluate_model", server_round, exc)
        self.events.emit(
            "evaluate",
            round=server_round,
            loss=loss,
            accuracy=accuracy,
            examples=examples,
            seconds=time.monotonic() - started,
        )
        return loss, examples, {"accuracy": accuracy}

    def _start_round(self, config: Config) -> int:
        self.heard_from_aggregator = True
        value = config.get(ROUND_KEY, 0)
        self.last_round = int(value) if isinstance(value, int | float) else 0
        return self.last_round

    def _failed(self, step: str, server_round: int, exc: Exception) -> dict[str, Scalar]:
        logger.exception("%s failed in round %d", step, server_round)
        cause = f"{step} raised {describe(exc)}"
        self.error = f"{cause} (round {server_round})"
        return {ERROR_KEY: cause, LEARNER_KEY: self.name}
