"""Waiting for the aggregator: a learner may start before it (and often does).

Flower's legacy gRPC transport does not retry: a client whose aggregator is not listening
fails at once with UNAVAILABLE. Decision: before each Flower connection the learner probes
the aggregator's TCP port with exponential backoff (0.5 s doubling to 10 s), one ``waiting``
event per failed attempt, until it answers or ``FLOPS_CONNECT_TIMEOUT`` runs out; the same
deadline bounds the Flower connection attempts that follow.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from flops_actor.settings import Address

FIRST_DELAY = 0.5
MAX_DELAY = 10.0


class AggregatorUnreachable(RuntimeError):
    pass


@dataclass
class Deadline:
    seconds: float
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.started = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def remaining(self) -> float:
        return max(0.0, self.seconds - self.elapsed())


@dataclass
class Backoff:
    """Doubling delays; ``attempts`` counts every failed attempt across reconnects."""

    delay: float = FIRST_DELAY
    attempts: int = 0

    def next_delay(self) -> float:
        self.attempts += 1
        current, self.delay = self.delay, min(self.delay * 2, MAX_DELAY)
        return current


def probe(address: Address, timeout: float) -> str | None:
    """None when the port accepts a TCP connection, otherwise why not."""
    try:
        with socket.create_connection((address.host, address.port), timeout=max(timeout, 0.1)):
            return None
    except socket.gaierror as exc:
        return f"cannot resolve {address.host}: {exc.strerror or exc}"
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


def wait_until_listening(
    address: Address,
    deadline: Deadline,
    backoff: Backoff,
    on_wait: Callable[[int, float, str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once the aggregator's port answers; raise AggregatorUnreachable at the deadline."""
    while True:
        reason = probe(address, min(5.0, deadline.remaining()))
        if reason is None:
            return
        delay = min(backoff.next_delay(), deadline.remaining())
        if delay <= 0:
            raise AggregatorUnreachable(
                f"aggregator {address} unreachable after {deadline.elapsed():.0f} s "
                f"({backoff.attempts} attempts, FLOPS_CONNECT_TIMEOUT={deadline.seconds:g}): "
                f"{reason}"
            )
        on_wait(backoff.attempts, delay, reason)
        sleep(delay)
