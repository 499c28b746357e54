"""Round bookkeeping of the aggregator: weighted metrics, the best round, ``result.json``.

Pure: no Flower, no I/O. The best round has the highest accuracy, then the lowest loss
(a round without an accuracy never beats one with it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

MODEL_DIR_NAME = "model"


@dataclass(frozen=True)
class RoundResult:
    round: int
    loss: float | None
    accuracy: float | None
    learners: int
    seconds: float

    def __post_init__(self) -> None:
        # A NaN loss (a diverged model) is recorded as "no value": JSON has no NaN.
        for name in ("loss", "accuracy"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                object.__setattr__(self, name, None)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def weighted_mean(pairs: Iterable[tuple[int, float]]) -> float | None:
    """Mean of values weighted by their example counts; None without examples."""
    total = 0
    weighted = 0.0
    for examples, value in pairs:
        total += examples
        weighted += examples * value
    return weighted / total if total > 0 else None


def _rank(result: RoundResult) -> tuple[float, float]:
    accuracy = result.accuracy if result.accuracy is not None else float("-inf")
    loss = result.loss if result.loss is not None else float("inf")
    return (accuracy, -loss)


@dataclass
class Progress:
    """Every round so far and the parameters of the best one."""

    rounds: list[RoundResult] = field(default_factory=list)
    best: RoundResult | None = None
    best_parameters: Any = None

    def add(self, result: RoundResult, parameters: Any) -> bool:
        """Record a round; True when it is the new best."""
        self.rounds.append(result)
        if self.best is None or _rank(result) > _rank(self.best):
            self.best, self.best_parameters = result, parameters
            return True
        return False

    def document(self, flavor: str) -> dict[str, Any]:
        """``result.json`` as DESIGN §9 defines it."""
        return {
            "rounds": [r.as_dict() for r in self.rounds],
            "best_round": self.best.round if self.best else None,
            "flavor": flavor,
            "model": MODEL_DIR_NAME,
        }
