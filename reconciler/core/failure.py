"""What went wrong, and whose fault it is: a failure is a category and a message.

Decision: the category is a value of its own, decided where the failure is found (the
builder's result, the controller's step), and the retry policy and the controller decide on
it, never on text; ``<category>: <message>`` is only how people read a failure (status, the
observer log). Categories are the builder protocol's: ``repo``, ``dependencies``, ``build``,
``push`` (the build itself failed) and ``infrastructure`` (something the project cannot fix);
a training run adds ``data``, ``learner``, ``aggregator`` (the project's data or code failed)
and ``placement`` (too few hosts hold the data: the site's to fix).
"""

from __future__ import annotations

from dataclasses import dataclass

INFRASTRUCTURE = "infrastructure"
# Failures of the build itself: only these use up attempts (core/retry.py).
BUILD_CATEGORIES = ("repo", "dependencies", "build", "push")
# Failures of a training run that are the project's: they use up attempts too.
TRAINING_CATEGORIES = ("data", "learner", "aggregator")
PLACEMENT = "placement"


@dataclass(frozen=True)
class Failure:
    category: str
    message: str

    @property
    def text(self) -> str:
        """The failure as people read it: ``<category>: <message>``."""
        return f"{self.category}: {self.message}"

    @property
    def is_outage(self) -> bool:
        """Not the project's fault: an engine, registry or remote that is down."""
        return self.category == INFRASTRUCTURE


def infrastructure(message: str) -> Failure:
    return Failure(INFRASTRUCTURE, message)
