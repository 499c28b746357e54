"""The trained model's HTTP server (``python -m flops_actor.serve``) on real saved models.

The models are saved as the aggregator saves the best round's (``flops_actor.model_export``,
in a process of their own like the aggregator's): the sklearn FLOps-layout test repository's
logistic regression (flavor sklearn) and the toy example's plain object (a pyfunc around it).
The server runs as a real process without the repository on its path (the model carries the
code it needs); tests know it is up from its ``serving`` event, never from sleeping.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from actors_support import ACTORS_DIR, SKLEARN_REPO, TOY_REPO, Actor, free_port
from flops_actor.settings import MAX_REQUEST_BYTES

FEATURES = 28 * 28
WEIGHT, BIAS = 2.0, 1.0
# What the aggregator's _finish does with the best round's parameters.
SAVE = """
import sys
from pathlib import Path

import numpy as np
from flops_actor.model_export import save_model
from flops_actor.repository import code_paths, new_model_manager

app, out = Path(sys.argv[1]), Path(sys.argv[2])
manager = new_model_manager(app)
if sys.argv[3] == "toy":
    manager.set_model_parameters([float(sys.argv[4]), float(sys.argv[5])])
else:
    rng = np.random.default_rng(0)
    manager.set_model_parameters([rng.normal(size=p.shape) for p in manager.get_model_parameters()])
print(save_model(manager.get_model(), "sklearn", out, code_paths(app)))
"""

Start = Callable[..., Actor]
Reply = tuple[int, dict[str, str], Any]


def save_like_the_aggregator(models: dict[str, tuple[Path, Path]]) -> dict[str, str]:
    """Save each repository's model (name -> (repository, directory)), in parallel processes;
    name -> the MLflow flavor it was saved as."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", SAVE, str(repo), str(out), name, str(WEIGHT), str(BIAS)],
            env={**os.environ, "PYTHONPATH": str(ACTORS_DIR)}, cwd=out.parent,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for name, (repo, out) in models.items()
    }
    flavors = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-3000:]
        flavors[name] = stdout.strip().splitlines()[-1]
    return flavors


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    saved = {"sklearn": (SKLEARN_REPO, root / "sklearn"), "toy": (TOY_REPO, root / "toy")}
    flavors = save_like_the_aggregator(saved)
    assert flavors == {"sklearn": "sklearn", "toy": "python_function"}
    return {name: out for name, (_, out) in saved.items()}


def start_server(tmp_path: Path, model_dir: Path, **env: str) -> Actor:
    """The server as the image runs it, with no repository on its path (an empty app dir)."""
    (tmp_path / "app").mkdir(exist_ok=True)
    settings = {"FLOPS_MODEL_DIR": str(model_dir), "FLOPS_BIND": "127.0.0.1",
                "FLOPS_PORT": str(free_port()), **env}
    return Actor("serve", tmp_path / "app", settings, tmp_path)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    servers: list[Actor] = []

    def run(model_dir: Path, **env: str) -> Actor:
        servers.append(start_server(tmp_path, model_dir, **env))
        return servers[-1]

    try:
        yield run
    finally:
        for server in servers:
            server.kill()


@pytest.fixture(scope="module")
def toy_port(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    server = start_server(tmp_path_factory.mktemp("toy-server"), models["toy"])
    try:
        yield server.wait_type("serving", timeout=120)["port"]
    finally:
        server.kill()


def call(port: int, method: str, path: str, body: Any = None,
         content_type: str = "application/json") -> Reply:
    """One request; (status, headers, JSON document or text)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read().decode()
        headers = {k.lower(): v for k, v in response.getheaders()}
        is_json = headers.get("content-type", "").startswith("application/json")
        return response.status, headers, json.loads(raw) if is_json else raw
    finally:
        conn.close()


def raw_request(port: int, head: str) -> tuple[int, dict[str, Any]]:
    """Send only a request head (no body) and read the answer: (status, JSON document)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode())
        received = b""
        while chunk := sock.recv(65536):  # the server closes the connection after refusing
            received += chunk
    status_line, _, rest = received.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


def test_an_sklearn_model_is_served_until_sigterm(start: Start, models: dict[str, Path]) -> None:
    server = start(models["sklearn"])
    serving = server.wait_type("serving", timeout=120)
    port = serving["port"]
    assert serving["address"] == f"127.0.0.1:{port}"
    assert serving["model"] == str(models["sklearn"])
    assert {"python_function", "sklearn"} <= set(serving["flavors"])
    for path in ("/health", "/ping"):
        assert call(port, "GET", path)[0] == 200

    rows = [[0.0] * FEATURES, [1.0] * FEATURES, [0.5] * FEATURES]
    status, headers, document = call(port, "POST", "/invocations", {"inputs": rows})
    assert status == 200 and headers["content-type"] == "application/json", document
    assert len(document["predictions"]) == 3
    assert all(label in range(10) for label in document["predictions"])
    # The same rows as a DataFrame (pandas is in the runtime image: datasets needs it).
    columns = [f"pixel{i}" for i in range(FEATURES)]
    split = {"dataframe_split": {"columns": columns, "data": rows[:2]}}
    status, _, document = call(port, "POST", "/invocations", split)
    assert status == 200 and len(document["predictions"]) == 2

    server.process.send_signal(signal.SIGTERM)
    assert server.finish(timeout=30) == 0, server.tail()
    assert [event["signal"] for event in server.of_type("stopped")] == ["SIGTERM"]


def test_the_toy_model_answers_y_equals_w_x_plus_b(toy_port: int) -> None:
    status, _, document = call(toy_port, "POST", "/invocations", {"inputs": [[1.0], [2.5]]})
    assert status == 200, document
    assert document == {"predictions": [pytest.approx(WEIGHT * x + BIAS) for x in (1.0, 2.5)]}
    status, _, document = call(toy_port, "POST", "/invocations", {"instances": [[0.0]]})
    assert status == 200 and document["predictions"] == [pytest.approx(BIAS)]
    import mlflow

    assert call(toy_port, "GET", "/version")[2] == mlflow.__version__


@pytest.mark.parametrize(("body", "content_type", "says"), [
    (b"not json", "application/json", "valid JSON"),
    ({"rows": [[1.0]]}, "application/json", "exactly one of the input fields"),
    ({"inputs": "text"}, "application/json", "Encountered an unexpected error"),
])
def test_a_bad_body_is_a_400_with_mlflows_error_document(
    toy_port: int, body: Any, content_type: str, says: str
) -> None:
    status, _, document = call(toy_port, "POST", "/invocations", body, content_type)
    assert status == 400
    assert document["error_code"] == "BAD_REQUEST"
    assert says in document["message"]


def test_an_unsupported_content_type_is_a_415_and_an_unknown_path_a_404(toy_port: int) -> None:
    status, _, text = call(toy_port, "POST", "/invocations", b"x=1", "application/x-www-form")
    assert status == 415 and "content types" in text
    status, _, document = call(toy_port, "GET", "/predict")
    assert status == 404 and document["error_code"] == "ENDPOINT_NOT_FOUND"


def test_a_body_over_the_limit_is_refused_before_it_is_read(toy_port: int) -> None:
    status, document = raw_request(
        toy_port, "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {MAX_REQUEST_BYTES + 1}\r\n\r\n")
    assert status == 413
    assert document["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert f"up to {MAX_REQUEST_BYTES} bytes (FLOPS_MAX_REQUEST_BYTES)" in document["message"]
    status, document = raw_request(
        toy_port, "POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert status == 411 and "Content-Length" in document["message"]


def test_the_limit_is_set_by_the_environment(start: Start, models: dict[str, Path]) -> None:
    server = start(models["toy"], FLOPS_MAX_REQUEST_BYTES="64")
    port = server.wait_type("serving", timeout=120)["port"]
    assert call(port, "POST", "/invocations", {"inputs": [[1.0]]})[0] == 200
    status, _, document = call(port, "POST", "/invocations", {"inputs": [[1.0]] * 20})
    assert status == 413 and "up to 64 bytes" in document["message"]


def test_no_model_is_one_error_line_and_exit_1(start: Start, tmp_path: Path) -> None:
    server = start(tmp_path / "nothing")
    assert server.finish(timeout=60) == 1
    (error,) = server.of_type("error")
    assert error["message"].startswith(f"no MLmodel file in {tmp_path / 'nothing'}")


def test_a_taken_port_is_exit_1_and_a_bad_port_exit_2(
    start: Start, models: dict[str, Path]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = start(models["toy"], FLOPS_PORT=str(port))
        assert server.finish(timeout=120) == 1
    assert server.of_type("error")[0]["message"].startswith(f"cannot listen on 127.0.0.1:{port}")
    server = start(models["toy"], FLOPS_PORT="http")
    assert server.finish(timeout=60) == 2
    assert "FLOPS_PORT='http'" in server.of_type("error")[0]["message"]


def test_check_loads_the_model_as_the_server_would_and_exits(
    models: dict[str, Path], tmp_path: Path
) -> None:
    """What the trained-model image's build runs (``--check``): exit 0 and a ``loaded`` event
    for a model that loads, 1 and one error line for one that does not."""
    def check(model_dir: Path) -> tuple[int, list[dict[str, Any]]]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOPS_")}
        env.update(PYTHONPATH=str(ACTORS_DIR), FLOPS_MODEL_DIR=str(model_dir))
        proc = subprocess.run([sys.executable, "-m", "flops_actor.serve", "--check"], env=env,
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
        return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()]

    code, events = check(models["sklearn"])
    assert code == 0
    assert [(e["type"], e["model"]) for e in events] == [("loaded", str(models["sklearn"]))]
    assert "sklearn" in events[0]["flavors"]
    code, events = check(tmp_path / "nothing")
    assert code == 1 and [e["type"] for e in events] == ["error"]
