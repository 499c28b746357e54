"""The aggregator's round loop, run by Flower's legacy ``start_server`` (DESIGN §9).

Decision: ``Server.fit`` is replaced by our loop over Flower's own ``fit_round`` and
``evaluate_round``, so the aggregator owns what Flower leaves open: waiting for enough
learners with a deadline, one ``round`` event per round, the best round, failing on a
learner's error, and finishing (model and ``result.json``) while the learners are still
connected, so that they hear the outcome before Flower disconnects them.
"""

from __future__ import annotations

import time
import timeit
from collections.abc import Callable
from typing import Any

from flwr.common import Parameters, Scalar, parameters_to_ndarrays
from flwr.server import History, Server

from flops_actor.events import Events
from flops_actor.learner_client import MESSAGE_KEY, STATUS_KEY
from flops_actor.learners import Learners
from flops_actor.rounds import Progress, RoundResult
from flops_actor.settings import AggregatorSettings
from flops_actor.strategy import FlopsFedAvg


class FederationFailed(RuntimeError):
    pass


class FlopsServer(Server):
    def __init__(
        self,
        *,
        settings: AggregatorSettings,
        events: Events,
        learners: Learners,
        strategy: FlopsFedAvg,
        on_round: Callable[[RoundResult], None],
        finish: Callable[[Progress], None],
    ) -> None:
        super().__init__(client_manager=learners, strategy=strategy)
        self.settings = settings
        self.events = events
        self.learners = learners
        self.flops_strategy = strategy
        self.on_round = on_round
        self.finish = finish
        self.progress = Progress()
        self.failure: Exception | None = None
        self.listening = False  # Flower calls fit() once its gRPC server listens

    def fit(self, num_rounds: int, timeout: float | None) -> tuple[History, float]:
        started = timeit.default_timer()
        self.listening = True
        self.events.emit("listening", address=str(self.settings.bind))
        try:
            self._run(num_rounds)
            self.finish(self.progress)
            best = self.progress.best.round if self.progress.best else 0
            status: dict[str, Scalar] = {STATUS_KEY: "finished", "best_round": best}
        except Exception as exc:  # every failure ends the federation the same way
            self.failure = exc
            status = {STATUS_KEY: "failed", MESSAGE_KEY: str(exc)}
        self.learners.tell_all(status)
        return History(), timeit.default_timer() - started

    def _run(self, num_rounds: int) -> None:
        self.parameters = self._get_initial_parameters(server_round=0, timeout=None)
        for server_round in range(1, num_rounds + 1):
            self._wait_for_learners(server_round)
            self.learners.learn_names(server_round)
            started = time.monotonic()
            fitted = self.fit_round(server_round=server_round, timeout=None)
            if fitted is None or fitted[0] is None:
                raise FederationFailed(f"round {server_round}: no learner trained")
            self.parameters = fitted[0]
            learners = len(fitted[2][0])
            evaluated = self.evaluate_round(server_round=server_round, timeout=None)
            if evaluated is None:
                raise FederationFailed(f"round {server_round}: no learner evaluated")
            result = RoundResult(
                round=server_round,
                loss=evaluated[0],
                accuracy=self.flops_strategy.accuracy,
                learners=learners,
                seconds=round(time.monotonic() - started, 3),
            )
            self.progress.add(result, _arrays(self.parameters))
            self.events.emit("round", **result.as_dict())
            self.on_round(result)

    def _wait_for_learners(self, server_round: int) -> None:
        needed = self.settings.learners_needed
        connected = self.learners.num_available()
        if connected >= needed:
            return
        self.events.emit(
            "waiting",
            round=server_round,
            learners=connected,
            needed=needed,
            timeout=self.settings.wait_timeout,
        )
        if not self.learners.wait_for(needed):
            raise FederationFailed(
                f"too few learners: {self.learners.num_available()} connected, {needed} needed "
                f"(FLOPS_MIN_*_CLIENTS), waited {self.settings.wait_timeout:g} s "
                f"(FLOPS_WAIT_TIMEOUT) before round {server_round}"
            )


def _arrays(parameters: Parameters) -> list[Any]:
    return list(parameters_to_ndarrays(parameters))
