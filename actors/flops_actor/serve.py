"""The trained model's HTTP server: ``python3 -m flops_actor.serve`` (DESIGN §10).

Speaks MLflow's scoring protocol, as ``mlflow models serve`` does: ``GET /health`` and
``GET /ping`` answer 200 (the model is loaded before the port opens), ``GET /version`` the
MLflow version, ``POST /invocations`` scores a body (``scoring.py``: MLflow's own request
handling) and answers ``{"predictions": [...]}``. Loads ``FLOPS_MODEL_DIR`` (``/flops/model``),
listens on ``FLOPS_BIND``:``FLOPS_PORT`` (``0.0.0.0:8080``), logs to stderr, and writes one
``serving`` event on stdout once it answers; SIGTERM or SIGINT stop it (a ``stopped`` event,
exit 0). Exit 1 with one error line when the model cannot be loaded or the port cannot be
opened; 2 for a bad environment. ``--check`` loads the model as the server would, writes one
``loaded`` event and exits (0): the trained-model image's build runs it, so a model that
cannot load in the image fails the build rather than the deployment.

Decision: the standard library's ``ThreadingHTTPServer`` (one thread per connection, HTTP/1.1
keep-alive), not MLflow's uvicorn app: the server's start is one event on the channel the
reconciler already reads, and the request body is bounded (``FLOPS_MAX_REQUEST_BYTES``,
16 MiB): a larger ``Content-Length`` is answered 413 before any of it is read, a body without
one 411, and the connection is closed after either.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

from flops_utils.logging import logger

from flops_actor.events import Events, take_stdout
from flops_actor.repository import describe
from flops_actor.scoring import Answer, ModelNotLoaded, Scorer, error_answer
from flops_actor.settings import Address, ServerSettings, SettingsError, server_settings

HEALTH_PATHS = ("/health", "/ping")
IDLE_TIMEOUT = 60.0  # seconds a connection may stay silent (keep-alive, a slow body)


class ServerFailure(RuntimeError):
    pass


class ModelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, settings: ServerSettings, scorer: Scorer) -> None:
        self.scorer = scorer
        self.max_request_bytes = settings.max_request_bytes
        super().__init__((settings.bind.host, settings.bind.port), Handler)


class ModelServer6(ModelServer):
    address_family = socket.AF_INET6


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "flops-model-server"
    timeout = IDLE_TIMEOUT
    server: ModelServer

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path in HEALTH_PATHS:
            self._send(Answer(200, "text/plain", b"\n"))
        elif path == "/version":
            import mlflow

            self._send(Answer(200, "text/plain", mlflow.__version__.encode()))
        else:
            self._send(_not_found(path))

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path != "/invocations":
            self._send(_not_found(path))
            return
        length = self._content_length()
        if length is None:
            return
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            return  # the client went away mid-body: nobody to answer
        self._send(self.server.scorer.invoke(body, self.headers.get("Content-Type", "")))

    def _content_length(self) -> int | None:
        """The body's length, or None after answering why the body will not be read."""
        raw = self.headers.get("Content-Length")
        limit = self.server.max_request_bytes
        if raw is None:
            self._refuse(error_answer(411, "BAD_REQUEST", "a request body needs a "
                                      "Content-Length header (chunked bodies are not accepted)"))
            return None
        if not raw.strip().isdigit():
            self._refuse(error_answer(400, "BAD_REQUEST", f"bad Content-Length {raw!r}"))
            return None
        length = int(raw)
        if length > limit:
            self._refuse(error_answer(
                413, "REQUEST_LIMIT_EXCEEDED",
                f"the request body is {length} bytes; this server accepts up to {limit} bytes "
                "(FLOPS_MAX_REQUEST_BYTES): send fewer rows per request"))
            return None
        return length

    def _refuse(self, answer: Answer) -> None:
        self.close_connection = True
        self._send(answer)

    def _send(self, answer: Answer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:
        """One line per request on stderr; health checks (every few seconds) only at DEBUG."""
        health = urllib.parse.urlsplit(getattr(self, "path", "")).path in HEALTH_PATHS
        level = logging.DEBUG if health else logging.INFO
        logger.log(level, "%s %s", self.address_string(), format % args)


def _not_found(path: str) -> Answer:
    return error_answer(404, "ENDPOINT_NOT_FOUND", f"no endpoint {path[:200]!r}: this server "
                        "answers GET /health, GET /ping, GET /version and POST /invocations")


def main(argv: list[str]) -> int:
    events = take_stdout("model-server")
    try:
        settings = server_settings(os.environ)
    except SettingsError as exc:
        events.error(str(exc))
        return 2
    try:
        if argv == ["--check"]:
            return check(settings, events)
        return serve(settings, events)
    except (ServerFailure, ModelNotLoaded) as exc:
        events.error(str(exc))
        return 1
    except Exception as exc:  # a bug of ours or MLflow's: still one line, trace on stderr
        logger.exception("model server failed")
        events.error(f"model server failed: {describe(exc)}")
        return 1


def check(settings: ServerSettings, events: Events) -> int:
    started = time.monotonic()
    scorer = Scorer(settings.model_dir)
    events.emit("loaded", model=str(settings.model_dir), flavors=scorer.flavors,
                seconds=time.monotonic() - started)
    return 0


def serve(settings: ServerSettings, events: Events) -> int:
    started = time.monotonic()
    scorer = Scorer(settings.model_dir)
    server_class = ModelServer6 if ":" in settings.bind.host else ModelServer
    try:
        server = server_class(settings, scorer)
    except OSError as exc:
        raise ServerFailure(f"cannot listen on {settings.bind}: {exc.strerror or exc}") from exc
    stopped_by: list[str] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped_by.append(signal.Signals(signum).name)
        # shutdown() waits for serve_forever(), which runs in this very thread: ask another.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    port = int(server.server_address[1])
    events.emit(
        "serving",
        port=port,
        address=str(Address(settings.bind.host, port)),
        model=str(settings.model_dir),
        flavors=scorer.flavors,
        seconds=time.monotonic() - started,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    events.emit("stopped", signal=stopped_by[0] if stopped_by else None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
