"""FedAvg that fails loudly: a learner's error or disconnection stops the federation.

Decision (as in FLOps): a learner that fails a round fails the run. Flower's FedAvg would
average whatever arrived and carry on; here ``aggregate_fit``/``aggregate_evaluate`` raise
``LearnerFailed`` naming the learner, the round and the cause, and the aggregator ends the
federation with that line. Loss and accuracy are averaged weighted by examples.
"""

from __future__ import annotations

from typing import Any

from flwr.common import EvaluateIns, EvaluateRes, FitIns, FitRes, Parameters, Scalar
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg

from flops_actor.learner_client import ERROR_KEY, ROUND_KEY
from flops_actor.learners import Learners
from flops_actor.repository import describe
from flops_actor.rounds import weighted_mean


class LearnerFailed(RuntimeError):
    pass


class FlopsFedAvg(FedAvg):
    def __init__(self, learners: Learners, **kwargs: Any) -> None:
        super().__init__(
            fraction_fit=1.0,
            fraction_evaluate=1.0,
            on_fit_config_fn=_round_config,
            on_evaluate_config_fn=_round_config,
            accept_failures=False,
            **kwargs,
        )
        self.learners = learners
        self.sampled: dict[tuple[str, int], list[str]] = {}
        self.accuracy: float | None = None  # of the last aggregated evaluation

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        chosen = super().configure_fit(server_round, parameters, client_manager)
        self.sampled[("fit", server_round)] = [proxy.cid for proxy, _ in chosen]
        return chosen

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        chosen = super().configure_evaluate(server_round, parameters, client_manager)
        self.sampled[("evaluate", server_round)] = [proxy.cid for proxy, _ in chosen]
        return chosen

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        self._check("fit", server_round, results, failures)
        return super().aggregate_fit(server_round, results, failures)

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        self._check("evaluate", server_round, results, failures)
        loss = weighted_mean((r.num_examples, r.loss) for _, r in results)
        self.accuracy = weighted_mean(
            (r.num_examples, _number(r.metrics.get("accuracy"))) for _, r in results
        )
        return loss, {} if self.accuracy is None else {"accuracy": self.accuracy}

    def _check(
        self,
        step: str,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]] | list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException]
        | list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> None:
        for proxy, res in results:
            error = res.metrics.get(ERROR_KEY)
            if isinstance(error, bytes):
                error = error.decode(errors="replace")
            if error is not None:
                raise LearnerFailed(
                    f"learner {self.learners.name(proxy.cid)} failed in round {server_round}: "
                    f"{error}"
                )
        if not failures:
            return
        answered = {proxy.cid for proxy, _ in results}
        missing = [c for c in self.sampled.get((step, server_round), []) if c not in answered]
        who = ", ".join(self.learners.name(c) for c in missing) or "a learner"
        first = failures[0]
        cause = describe(first) if isinstance(first, BaseException) else first[1].status.message
        if cause == "GrpcBridgeClosed":
            cause = "its connection closed"
        raise LearnerFailed(f"learner {who} failed in round {server_round} ({step}): {cause}")


def _round_config(server_round: int) -> dict[str, Scalar]:
    return {ROUND_KEY: server_round}


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LearnerFailed(f"a learner sent accuracy {value!r}, not a number")
    return float(value)
