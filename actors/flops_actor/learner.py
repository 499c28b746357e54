"""The learner program: ``python3 -m flops_actor.learner`` (DESIGN §9).

Loads the repository's ModelManager, calls ``set_model_data()`` once (the data is read
before any connection, so data problems show without an aggregator), waits for the
aggregator with backoff, then serves Flower rounds until the aggregator ends the
federation. Exit 0 when the aggregator ends it successfully; 1 with one error line when
the data, the repository, the connection or the aggregator fails; 2 for a bad environment.

Flower: the legacy ``flwr.client.start_client`` (gRPC bidi) of flwr 1.42.0, see
``flops_actor.aggregator`` for why.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import TYPE_CHECKING

from flops_utils.data_files import DataError, parse_tags
from flops_utils.logging import logger

from flops_actor.connect import AggregatorUnreachable, Backoff, Deadline, wait_until_listening
from flops_actor.events import Events, take_stdout
from flops_actor.repository import RepositoryError, describe, new_model_manager
from flops_actor.settings import LearnerSettings, SettingsError, learner_settings

if TYPE_CHECKING:
    from flops_actor.learner_client import LearnerClient


class LearnerFailure(RuntimeError):
    pass


def main() -> int:
    # Flower's telemetry would call out of the learner's host; the data and the run stay here.
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    events = take_stdout("learner")
    try:
        settings = learner_settings(os.environ, socket.gethostname())
        parse_tags(settings.data_tags)
    except (SettingsError, DataError) as exc:
        events.error(str(exc))
        return 2
    try:
        return run(settings, events)
    except (LearnerFailure, RepositoryError, DataError, AggregatorUnreachable) as exc:
        events.error(str(exc))
        return 1
    except Exception as exc:  # a bug of ours or Flower's: still one line, trace on stderr
        logger.exception("learner failed")
        events.error(f"learner failed: {describe(exc)}")
        return 1


def run(settings: LearnerSettings, events: Events) -> int:
    manager = new_model_manager(settings.app_dir)
    started = time.monotonic()
    try:
        manager.set_model_data()
    except DataError:
        raise
    except Exception as exc:
        raise LearnerFailure(f"set_model_data() raised {describe(exc)}") from exc
    events.emit(
        "ready",
        learner=settings.name,
        data_tags=settings.data_tags,
        seconds=time.monotonic() - started,
    )

    # Imported after the data is loaded: a data error must not wait for Flower's import.
    from flops_actor.learner_client import MESSAGE_KEY, STATUS_KEY, LearnerClient

    try:
        client = LearnerClient(manager, settings.name, events)
    except Exception as exc:
        raise LearnerFailure(f"get_model_parameters() raised {describe(exc)}") from exc
    federate(client, settings, events)
    if client.error is not None:
        raise LearnerFailure(client.error)
    if client.status.get(STATUS_KEY) == "failed":
        reason = str(client.status.get(MESSAGE_KEY, "no reason given"))
        raise LearnerFailure(f"the aggregator ended the federation with an error: {reason}")
    events.emit("finished", learner=settings.name, rounds=client.last_round)
    return 0


def federate(client: LearnerClient, settings: LearnerSettings, events: Events) -> None:
    """Connect (waiting for the aggregator as long as allowed) and serve until disconnected."""
    import grpc
    from flwr.client import start_client

    address = settings.aggregator
    deadline = Deadline(settings.connect_timeout)
    backoff = Backoff()

    def waiting(attempt: int, retry_in: float, reason: str) -> None:
        events.emit(
            "waiting", aggregator=str(address), attempt=attempt, retry_in=retry_in, reason=reason
        )

    while True:
        wait_until_listening(address, deadline, backoff, waiting)
        events.emit("connected", aggregator=str(address), seconds=deadline.elapsed())
        try:
            start_client(server_address=str(address), client=client.to_client())
            return
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            detail = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            if client.heard_from_aggregator:
                raise LearnerFailure(
                    f"lost the aggregator {address} after round {client.last_round}: {detail}"
                ) from exc
            if code != grpc.StatusCode.UNAVAILABLE:
                raise LearnerFailure(f"aggregator {address} refused the learner: {detail}") from exc
            # It was listening a moment ago: back off and probe again within the same deadline.
            delay = min(backoff.next_delay(), deadline.remaining())
            if delay <= 0:
                raise AggregatorUnreachable(
                    f"aggregator {address} unreachable after {deadline.elapsed():.0f} s: {detail}"
                ) from exc
            waiting(backoff.attempts, delay, detail or "unavailable")
            time.sleep(delay)


if __name__ == "__main__":
    sys.exit(main())
