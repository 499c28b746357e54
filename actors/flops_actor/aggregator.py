"""The aggregator program: ``python3 -m flops_actor.aggregator`` (DESIGN §9).

FedAvg over ``FLOPS_ROUNDS`` rounds, starting from ``ModelManager().get_model_parameters()``
(the aggregator has no data and never calls ``set_model_data``); one ``round`` event per
round; at the end the best round's model in MLflow format in ``<output>/model`` and
``<output>/result.json``. Exit 0 once the model is saved; 1 with one error line otherwise
(too few learners in time, a learner failing, the repository failing); 2 for a bad
environment.

Flower: the legacy ``flwr.server.start_server`` + ``flwr.client.start_client`` (gRPC bidi),
pinned to flwr 1.42.0. Decisions: the legacy pair is what FLOps runs and keeps each role one
process with one entry point, its own event channel and in-process state (the best model);
Flower's deployment engine would need a SuperLink, a SuperNode per learner and ``flwr run``,
and passes state between runs only through its Context. 1.42.0 is the current release
(deprecation warnings only, on stderr) and installs beside this project's toolchain (flwr
before 1.33 pins pathspec below 1.0, which mypy 1.20 cannot use); it needs Python 3.11, the
images' Python. The same code and tests also pass on flwr 1.25.0, the newest release that
installs on Python 3.10, should a 3.10 base image need it.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from flops_utils.logging import logger

from flops_actor.events import Events, take_stdout
from flops_actor.parameters import Shape, to_arrays
from flops_actor.repository import RepositoryError, code_paths, describe, new_model_manager
from flops_actor.rounds import MODEL_DIR_NAME, Progress, RoundResult
from flops_actor.settings import AggregatorSettings, SettingsError, aggregator_settings

RESULT_FILE = "result.json"


class AggregatorFailure(RuntimeError):
    pass


def main() -> int:
    # Flower's telemetry would call out of the aggregator's host; the run stays here.
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    events = take_stdout("aggregator")
    try:
        settings = aggregator_settings(os.environ)
    except SettingsError as exc:
        events.error(str(exc))
        return 2
    try:
        return run(settings, events)
    except (AggregatorFailure, RepositoryError) as exc:
        events.error(str(exc))
        return 1
    except Exception as exc:  # a bug of ours or Flower's: still one line, trace on stderr
        logger.exception("aggregator failed")
        events.error(f"aggregator failed: {describe(exc)}")
        return 1


def run(settings: AggregatorSettings, events: Events) -> int:
    started = time.monotonic()
    _check_writable(settings.output_dir)
    manager = new_model_manager(settings.app_dir)
    try:
        initial = manager.get_model_parameters()
        shape = Shape.of(initial)
        initial_arrays = to_arrays(initial)
    except Exception as exc:
        raise AggregatorFailure(f"get_model_parameters() raised {describe(exc)}") from exc

    from flops_actor.tracking import Tracking

    tracking = Tracking(settings) if settings.tracking_uri else None
    try:
        server = _serve(settings, events, initial_arrays, shape, tracking)
    except BaseException:
        if tracking is not None:
            tracking.fail()
        raise
    if server.failure is not None:
        if tracking is not None:
            tracking.fail()
        raise AggregatorFailure(str(server.failure))
    best = server.progress.best
    events.emit(
        "finished",
        best_round=best.round if best else None,
        rounds=len(server.progress.rounds),
        model=str(settings.output_dir / MODEL_DIR_NAME),
        result=str(settings.output_dir / RESULT_FILE),
        seconds=time.monotonic() - started,
    )
    return 0


def _serve(
    settings: AggregatorSettings,
    events: Events,
    initial_arrays: list[Any],
    shape: Shape,
    tracking: Any,
) -> Any:
    from flwr.common import ndarrays_to_parameters
    from flwr.server import ServerConfig, start_server

    from flops_actor.federation import FlopsServer
    from flops_actor.learners import Learners
    from flops_actor.strategy import FlopsFedAvg

    learners = Learners(events, settings.wait_timeout)
    strategy = FlopsFedAvg(
        learners,
        min_fit_clients=settings.min_fit_clients,
        min_evaluate_clients=settings.min_evaluate_clients,
        min_available_clients=settings.min_available_clients,
        initial_parameters=ndarrays_to_parameters(initial_arrays),
    )

    def on_round(result: RoundResult) -> None:
        if tracking is not None:
            tracking.log_round(result)

    def finish(progress: Progress) -> None:
        _finish(settings, events, progress, shape, tracking)

    server = FlopsServer(
        settings=settings,
        events=events,
        learners=learners,
        strategy=strategy,
        on_round=on_round,
        finish=finish,
    )
    try:
        start_server(
            server_address=str(settings.bind),
            server=server,
            config=ServerConfig(num_rounds=settings.rounds),
        )
    except SystemExit as exc:  # Flower exits when it cannot bind, and on SIGINT/SIGTERM
        if server.listening:
            raise AggregatorFailure(f"stopped during the federation ({exc.code})") from exc
        raise AggregatorFailure(f"cannot listen on {settings.bind}: {exc.code}") from exc
    return server


def _finish(
    settings: AggregatorSettings, events: Events, progress: Progress, shape: Shape, tracking: Any
) -> None:
    """Save the best model and result.json; runs while the learners are still connected."""
    from flops_actor.model_export import save_model

    if progress.best is None:
        raise AggregatorFailure("no round finished, so there is no model to save")
    model_dir = settings.output_dir / MODEL_DIR_NAME
    started = time.monotonic()
    try:
        manager = new_model_manager(settings.app_dir)
        manager.set_model_parameters(shape.restore(progress.best_parameters))
        model = manager.get_model()
        saved_as = save_model(model, settings.flavor, model_dir, code_paths(settings.app_dir))
    except RepositoryError:
        raise
    except Exception as exc:
        raise AggregatorFailure(f"saving the best model failed: {describe(exc)}") from exc
    result_file = settings.output_dir / RESULT_FILE
    _write_json(result_file, progress.document(settings.flavor))
    events.emit(
        "saved",
        best_round=progress.best.round,
        model=str(model_dir),
        mlflow_flavor=saved_as,
        seconds=time.monotonic() - started,
    )
    if tracking is not None:
        tracking.finish(model_dir, result_file, progress.best.round)


def _check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise AggregatorFailure(f"output directory {directory} is not writable: {exc}") from exc


def _write_json(path: Path, document: dict[str, Any]) -> None:
    """Write then rename, so a reader never sees half a result.json."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
