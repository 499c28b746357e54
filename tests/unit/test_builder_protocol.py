"""The builder as the reconciler sees it: a request in, protocol events out (DESIGN §7).

Everything here runs without Docker: the engine is either a fake `Engine` subclass or a fake
Docker Engine API served on a unix socket.
"""

from __future__ import annotations

import ast
import io
import json
import os
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import pytest
from builder_support import FakeEngine, build_request, git

from reconciler.builder import protocol
from reconciler.builder.checks import REQUIRED_METHODS
from reconciler.builder.clone import CloneError, clone
from reconciler.builder.deps import ImageOptions
from reconciler.builder.engine import Engine, EngineError, EngineUnreachable, split_reference
from reconciler.builder.review import review_repository
from reconciler.builder.run import run
from reconciler.builder.runtime import load_runtime

ROOT = Path(__file__).resolve().parents[2]
MODEL_MANAGER = "class ModelManager:\n" + "".join(
    f"    def {m}(self):\n        pass\n" for m in REQUIRED_METHODS
)
CONDA = "name: fl\ndependencies:\n  - python=3.11\n  - pip:\n    - mlflow==2.9.2\n    - flwr\n"


def git_repo(root: Path, files: dict[str, str]) -> tuple[Path, str]:
    repo = root / "ml-repo"
    repo.mkdir()
    git(repo, "init", "-q")
    for name, text in files.items():
        (repo / name).write_text(text, encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "fixture")
    return repo, git(repo, "rev-parse", "HEAD")


def request(repo: Path, commit: str, push: bool = False) -> dict[str, Any]:
    return build_request(repo, commit, push=push)


def events_of(text: str) -> list[dict[str, Any]]:
    lines = text.splitlines()
    events = [protocol.decode(line) for line in lines]
    assert all(e is not None for e in events), f"stdout has non-event lines: {text!r}"
    return [e for e in events if e is not None]


def stage_events(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["stage"], e["state"]) for e in events if e["type"] == "stage"]


def test_a_repo_without_model_manager_fails_in_the_check_stage(tmp_path: Path) -> None:
    repo, commit = git_repo(tmp_path, {"conda.yaml": CONDA})
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps(request(repo, commit)))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DOCKER_HOST": "unix:///nonexistent.sock",
           protocol.REQUEST_FILE_ENV: str(request_file)}
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler.builder"], env=env, capture_output=True, text=True,
        timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    events = events_of(proc.stdout)
    assert stage_events(events) == [
        ("clone", "start"), ("clone", "end"), ("check", "start"), ("check", "end"),
    ]
    assert all(isinstance(e["seconds"], float) for e in events if e.get("state") == "end")
    result = events[-1]
    assert [e["type"] for e in events].count("result") == 1
    assert result["type"] == "result" and result["ok"] is False
    assert result["error"]["category"] == "repo"
    assert result["error"]["stage"] == "check"
    assert "model_manager.py" in result["error"]["message"]
    assert "ModelManager" in result["error"]["hint"]
    assert set(result["timings"]) == {"clone", "check"}


def test_an_unadvertised_commit_is_fetched_by_the_full_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, first = git_repo(tmp_path, {"a.txt": "1"})
    (repo / "a.txt").write_text("2")
    git(repo, "commit", "-qam", "second")
    # Protocol v0 servers refuse a commit that no ref points at: the shallow fetch fails.
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "protocol.version")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "0")
    notes = clone(f"file://{repo}", first, tmp_path / "out")
    assert "refused a shallow fetch" in notes[0]
    assert git(tmp_path / "out", "rev-parse", "HEAD") == first
    assert (tmp_path / "out" / "a.txt").read_text() == "1"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_a_repository_owned_by_another_user_can_be_cloned(tmp_path: Path) -> None:
    repo, commit = git_repo(tmp_path, {"a.txt": "1"})
    for path in [repo, *repo.rglob("*")]:
        os.chown(path, 4321, 4321, follow_symlinks=False)
    clone(str(repo), commit, tmp_path / "out")
    assert git(tmp_path / "out", "rev-parse", "HEAD") == commit


def test_a_commit_that_is_not_a_full_id_is_refused_before_git_runs(tmp_path: Path) -> None:
    with pytest.raises(CloneError, match="not a full commit id"):
        clone(str(tmp_path), "--upload-pack=touch /tmp/x", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def run_in_process(req: dict[str, Any], engine: Engine) -> tuple[int, list[dict[str, Any]]]:
    out = io.StringIO()
    code = run(json.dumps(req), out, engine_factory=lambda: engine)
    return code, events_of(out.getvalue())


@pytest.fixture
def good_repo(tmp_path: Path) -> tuple[Path, str]:
    return git_repo(tmp_path, {"model_manager.py": MODEL_MANAGER, "conda.yaml": CONDA})


def test_a_good_repository_is_built_pushed_and_reported(good_repo: tuple[Path, str]) -> None:
    engine = FakeEngine()
    req = request(*good_repo, push=True)
    code, events = run_in_process(req, engine)
    assert code == 0
    assert stage_events(events) == [
        (s, state) for s in ("clone", "check", "dependencies", "runtime", "build:learner",
                             "build:aggregator", "push:learner", "push:aggregator")
        for state in ("start", "end")
    ]
    repairs = [e for e in events if e["type"] == "log" and e["level"] == "WARN"]
    assert [(e["stage"], e["message"]) for e in repairs] == [(
        "dependencies", "learner: removed mlflow==2.9.2 (no module of the repository "
        "imports mlflow; the aggregator keeps it)",
    )]
    result = events[-1]
    assert result["ok"] is True
    assert result["images"] == req["images"]
    assert result["digests"] == {"learner": "sha256:" + "d" * 63 + "1",
                                 "aggregator": "sha256:" + "d" * 63 + "2"}
    assert result["repairs"] == [repairs[0]["message"]]
    assert set(result["timings"]) == {s for s, _ in stage_events(events)}
    assert engine.pushed == [req["images"]["learner"], req["images"]["aggregator"]]


def test_each_role_gets_its_dockerfile_requirements_and_labels(
    good_repo: tuple[Path, str]
) -> None:
    engine = FakeEngine()
    req = request(*good_repo)
    code, _events = run_in_process(req, engine)
    assert code == 0
    (l_tag, l_file, l_labels, l_names), (a_tag, a_file, a_labels, _) = engine.builds
    assert (l_tag, l_file) == (req["images"]["learner"], ".flops/Dockerfile.learner")
    assert (a_tag, a_file) == (req["images"]["aggregator"], ".flops/Dockerfile.aggregator")
    assert l_labels["flops.role"] == "learner" and a_labels["flops.role"] == "aggregator"
    assert l_labels["org.opencontainers.image.revision"] == good_repo[1]
    assert len(json.loads(l_labels["flops.repairs"])) == 1
    assert json.loads(a_labels["flops.repairs"]) == []
    assert not any(n == ".git" or n.startswith(".git/") for n in l_names)
    files = engine.contexts[l_tag]
    assert files[".flops/requirements-learner.txt"] == b"flwr\n"
    assert files[".flops/requirements-aggregator.txt"] == b"mlflow==2.9.2\nflwr\n"
    # The aggregator adds the repository's own mlflow (not imported: the learner goes
    # without), which replaces the runtime's mlflow-skinny.
    assert files[".flops/requirements-aggregator-extra.txt"] == b"mlflow==2.9.2\n"
    assert files[".flops/uninstall-aggregator-deps.txt"] == b"mlflow-skinny\n"
    assert files[".flops/uninstall-deps.txt"] == b""
    [runtime_image] = engine.runtime_builds
    assert files[".flops/Dockerfile.learner"] == req["dockerfiles"]["learner"].replace(
        "FROM base ", f"FROM {runtime_image} ", 1).encode()
    runtime = load_runtime()
    for name, content in runtime.files.items():
        assert files[f".flops/runtime/{name}"] == content
    assert ".flops/runtime/flops_actor/learner.py" in files
    assert ".flops/runtime/flops_utils/provided.json" in files
    assert l_labels["flops.runtime"] == a_labels["flops.runtime"] == runtime.label
    assert "flwr==" in runtime.label and "mlflow-skinny==" in runtime.label
    assert "model_manager.py" in files


def test_without_push_the_digests_are_the_local_image_ids(good_repo: tuple[Path, str]) -> None:
    engine = FakeEngine()
    code, events = run_in_process(request(*good_repo, push=False), engine)
    assert code == 0
    assert events[-1]["digests"] == {"learner": f"sha256:{1:064d}",
                                     "aggregator": f"sha256:{2:064d}"}
    assert engine.pushed == []
    assert not any(e["stage"].startswith("push:") for e in events if e["type"] == "stage")


@pytest.mark.parametrize(
    ("fail", "category", "stage"),
    [("build", "build", "build:learner"), ("push", "push", "push:learner"),
     ("unreachable", "infrastructure", "push:learner")],
)
def test_engine_failures_become_categorized_results(
    good_repo: tuple[Path, str], fail: str, category: str, stage: str
) -> None:
    code, events = run_in_process(request(*good_repo, push=True), FakeEngine(fail))
    assert code == 1
    error = events[-1]["error"]
    assert (error["category"], error["stage"]) == (category, stage)
    assert error["hint"]
    assert stage_events(events)[-1] == (stage, "end")
    if fail != "unreachable":
        assert error["details"]


def test_a_missing_commit_is_a_repo_error(good_repo: tuple[Path, str]) -> None:
    code, events = run_in_process(request(good_repo[0], "0" * 40), FakeEngine())
    assert code == 1
    assert (events[-1]["error"]["category"], events[-1]["error"]["stage"]) == ("repo", "clone")


def test_a_malformed_conda_yaml_fails_with_category_dependencies(tmp_path: Path) -> None:
    repo, commit = git_repo(tmp_path, {"model_manager.py": MODEL_MANAGER,
                                       "conda.yaml": "dependencies: python=3.11\n"})
    code, events = run_in_process(request(repo, commit), FakeEngine())
    assert code == 1
    error = events[-1]["error"]
    assert (error["category"], error["stage"]) == ("dependencies", "dependencies")
    assert "must be a list" in error["message"]


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [(None, "is missing or empty"), ("{", "not JSON"), ('{"project": "p"}', "'repo_url'")],
)
def test_a_malformed_request_is_an_infrastructure_error(raw: str | None, fragment: str) -> None:
    out = io.StringIO()
    assert run(raw, out, engine_factory=FakeEngine) == 1
    [event] = events_of(out.getvalue())
    assert event["type"] == "result" and event["error"]["category"] == "infrastructure"
    assert fragment in event["error"]["message"]


def test_an_unexpected_exception_is_reported_not_raised(good_repo: tuple[Path, str]) -> None:
    class Broken(FakeEngine):
        def platform(self) -> str:
            raise RuntimeError("kaput")

    code, events = run_in_process(request(*good_repo), Broken())
    assert code == 1
    error = events[-1]["error"]
    assert error["category"] == "infrastructure"
    assert "RuntimeError: kaput" in error["message"]


# The Docker Engine API as the builder speaks it, against a fake engine on a unix socket.

class FakeDockerHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[tuple[str, str, dict[str, str], int]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _stream(self, messages: list[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        payload = "".join(json.dumps(m) + "\r\n" for m in messages).encode()
        for i in range(0, len(payload), 7):  # split objects across chunks
            piece = payload[i:i + 7]
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self.seen.append(("POST", self.path, dict(self.headers), len(body)))
        if self.path.startswith("/v1.41/build") and "fail" in self.path:
            self._stream([{"stream": f"Step {i}/30 : RUN x\n"} for i in range(30)]
                         + [{"errorDetail": {"message": "pip exited 1"}, "error": "pip"}])
        elif self.path.startswith("/v1.41/build"):
            self._stream([{"stream": "Step 1/2 : FROM base\n"}, {"stream": " ---> abc\n"},
                          {"aux": {"ID": "sha256:" + "a" * 64}},
                          {"stream": "Successfully built aaaa\n"}])
        else:
            self._stream([{"status": "Pushing", "id": "l1", "progressDetail": {"current": 1}},
                          {"status": "t: digest: sha256:bb size: 1"},
                          {"progressDetail": {}, "aux": {"Tag": "t", "Digest": "sha256:bb"}}])

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, dict(self.headers), 0))
        found = "missing" not in self.path
        body = json.dumps({"Id": "sha256:cc"} if found else {"message": "No such image"})
        self.send_response(200 if found else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())


@pytest.fixture
def fake_docker(tmp_path: Path) -> Iterator[Engine]:
    socket_path = tmp_path / "docker.sock"
    server = socketserver.ThreadingUnixStreamServer(str(socket_path), FakeDockerHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeDockerHandler.seen = []
    try:
        yield Engine(f"unix://{socket_path}")
    finally:
        server.shutdown()
        server.server_close()


def test_build_streams_progress_and_returns_the_image_id(fake_docker: Engine) -> None:
    seen: list[str] = []
    image, lines = fake_docker.build(b"tar-bytes", "r/a:t", ".flops/Dockerfile.learner",
                                     {"k": "v"}, on_line=seen.append)
    assert image == "sha256:" + "a" * 64
    assert lines == ["Step 1/2 : FROM base", " ---> abc", "Successfully built aaaa"] == seen
    _method, path, headers, size = FakeDockerHandler.seen[0]
    assert path.startswith("/v1.41/build?")
    assert "dockerfile=.flops%2FDockerfile.learner" in path
    assert "labels=%7B%22k%22%3A+%22v%22%7D" in path
    assert headers["Content-Type"] == "application/x-tar" and size == len(b"tar-bytes")


def test_a_failed_build_raises_with_the_last_twenty_lines(fake_docker: Engine) -> None:
    with pytest.raises(EngineError) as caught:
        fake_docker.build(io.BytesIO(b"tar"), "fail", "Dockerfile", {})
    assert "pip exited 1" in str(caught.value)
    assert len(caught.value.details) == 20
    assert caught.value.details[-1] == "Step 29/30 : RUN x"


def test_push_sends_empty_auth_and_returns_the_manifest_digest(fake_docker: Engine) -> None:
    assert fake_docker.push("127.0.0.1:5000/acme/demo/learner:abc") == "sha256:bb"
    _method, path, headers, _size = FakeDockerHandler.seen[0]
    assert path == "/v1.41/images/127.0.0.1:5000/acme/demo/learner/push?tag=abc"
    assert headers["X-Registry-Auth"] == "e30="


def test_image_id_is_none_for_an_unknown_image(fake_docker: Engine) -> None:
    assert fake_docker.image_id("acme/present:1") == "sha256:cc"
    assert fake_docker.image_id("acme/missing:1") is None


def test_an_absent_engine_is_unreachable(tmp_path: Path) -> None:
    with pytest.raises(EngineUnreachable):
        Engine(f"unix://{tmp_path}/none.sock").image_id("x")
    with pytest.raises(EngineUnreachable):
        Engine("ssh://host").image_id("x")


@pytest.mark.parametrize(
    ("ref", "expected"),
    [("host:5000/a/b:t", ("host:5000/a/b", "t")), ("host:5000/a/b", ("host:5000/a/b", "latest")),
     ("a/b:c", ("a/b", "c"))],
)
def test_split_reference(ref: str, expected: tuple[str, str]) -> None:
    assert split_reference(ref) == expected


# Dependency repairs, base images and conda packages as the reconciler sees them.

PYTHON_IMAGES = {"3.10": "reg.example/py:3.10", "3.11": "reg.example/py:3.11"}


def log_events(events: list[dict[str, Any]], level: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "log" and e["level"] == level]


def test_each_repair_is_a_warn_event_with_its_diff_and_in_the_role_label(
    tmp_path: Path,
) -> None:
    conda = ("name: fl\ndependencies:\n  - python=3.10\n  - pytorch=2.1\n  - pip:\n"
             "    - mlflow==2.9.2\n")
    repo, commit = git_repo(tmp_path, {"model_manager.py": MODEL_MANAGER, "conda.yaml": conda,
                                       "requirements.txt": "flwr==1.5\n",
                                       "net.py": "import torchvision\n"})
    engine = FakeEngine()
    code, events = run_in_process(request(repo, commit), engine)
    assert code == 0
    warns = log_events(events, "WARN")
    assert {e["stage"] for e in warns} == {"dependencies"}
    mlflow = next(e for e in warns if e["message"].startswith("learner: removed mlflow"))
    assert mlflow["details"] == ["- mlflow==2.9.2  # conda.yaml:6",
                                 "+ (removed for the learner; the aggregator keeps it)"]
    torchvision = next(e for e in warns if "added torchvision==0.16.*" in e["message"])
    assert torchvision["details"][0].startswith("+ torchvision==0.16.*  # imported at net.py:1")
    result = events[-1]
    assert [r["summary"] for r in result["repair_diffs"]] == result["repairs"]
    assert [r["diff"] for r in result["repair_diffs"]] == [e["details"] for e in warns]
    (_, _, l_labels, _), (_, _, a_labels, _) = engine.builds
    learner = json.loads(l_labels["flops.repairs"])
    aggregator = json.loads(a_labels["flops.repairs"])
    assert {"roles": ["learner"], "summary": mlflow["message"],
            "diff": mlflow["details"]} in learner
    assert all(r["roles"] != ["learner"] for r in aggregator)
    assert len(learner) == len(aggregator) + 1
    files = engine.contexts[req_tag(engine, "learner")]
    assert files[".flops/requirements-learner.txt"] == b"torch==2.1.*\nflwr==1.5\n" \
        b"torchvision==0.16.*\n"
    assert files[".flops/requirements-aggregator.txt"] == b"torch==2.1.*\nmlflow==2.9.2\n" \
        b"flwr==1.5\ntorchvision==0.16.*\n"
    assert files[".flops/conda-packages.txt"] == b""


def req_tag(engine: FakeEngine, role: str) -> str:
    return next(tag for tag, path, _labels, _names in engine.builds if path.endswith(role))


def test_the_python_pin_selects_the_from_image_of_both_dockerfiles(
    good_repo: tuple[Path, str]
) -> None:
    engine = FakeEngine()
    req = {**request(*good_repo), "python_images": PYTHON_IMAGES}
    code, events = run_in_process(req, engine)
    assert code == 0
    [runtime] = engine.runtime_builds
    runtime_files = engine.contexts[runtime]
    assert runtime_files[".flops/Dockerfile.runtime"].startswith(
        b"FROM reg.example/py:3.11 AS actor-base\n")
    files = engine.contexts[req_tag(engine, "learner")]
    for role in ("learner", "aggregator"):
        assert files[f".flops/Dockerfile.{role}"].startswith(f"FROM {runtime} AS ".encode())
    infos = [e["message"] for e in log_events(events, "INFO") if e["stage"] == "dependencies"]
    assert "conda.yaml:3 pins python=3.11: the images build from reg.example/py:3.11 " \
           "(python 3.11)" in infos
    assert events[-1]["base_image"] == "reg.example/py:3.11"


def test_a_python_pin_without_an_image_fails_the_dependencies_stage(
    good_repo: tuple[Path, str]
) -> None:
    req = {**request(*good_repo), "python_images": {"3.9": "py:3.9", "3.10": "py:3.10"}}
    engine = FakeEngine()
    code, events = run_in_process(req, engine)
    assert code == 1
    error = events[-1]["error"]
    assert (error["category"], error["stage"]) == ("dependencies", "dependencies")
    assert error["message"] == ("conda.yaml:3: the python pin 'python=3.11' matches none of "
                                "the configured python images (3.9, 3.10)")
    assert engine.builds == []


def test_without_a_python_map_the_rendered_base_is_kept(good_repo: tuple[Path, str]) -> None:
    engine = FakeEngine()
    code, events = run_in_process({**request(*good_repo), "python_images": {}}, engine)
    assert code == 0
    [runtime] = engine.runtime_builds
    assert engine.contexts[runtime][".flops/Dockerfile.runtime"].startswith(b"FROM base ")
    assert events[-1]["base_image"] is None


def test_conda_only_packages_build_from_the_conda_base_with_the_hook(tmp_path: Path) -> None:
    conda = ("name: fl\nchannels: [nvidia, conda-forge]\ndependencies:\n  - python=3.11\n"
             "  - cudatoolkit=11.8\n  - pip:\n    - flwr\n")
    repo, commit = git_repo(tmp_path, {"model_manager.py": MODEL_MANAGER, "conda.yaml": conda})
    engine = FakeEngine()
    req = {**request(repo, commit), "conda_base_image": "reg.example/conda:24",
           "python_images": PYTHON_IMAGES}
    code, events = run_in_process(req, engine)
    assert code == 0, events[-1]
    [runtime] = engine.runtime_builds
    assert engine.contexts[runtime][".flops/Dockerfile.runtime"].startswith(
        b"FROM reg.example/conda:24 AS actor-base\n")
    files = engine.contexts[req_tag(engine, "learner")]
    dockerfile = files[".flops/Dockerfile.learner"].decode()
    assert dockerfile.startswith(f"FROM {runtime} AS runtime\n")
    assert "--file /tmp/flops/conda-packages.txt" in dockerfile
    assert files[".flops/conda-packages.txt"] == b"python=3.11\ncudatoolkit=11.8\n"
    assert files[".flops/conda-channels.txt"] == b"nvidia\nconda-forge\n"
    assert files[".flops/requirements-learner.txt"] == b"flwr\n"


def test_conda_only_packages_without_a_conda_base_fail_listing_them(tmp_path: Path) -> None:
    conda = "dependencies:\n  - cudatoolkit=11.8\n  - cudnn\n"
    repo, commit = git_repo(tmp_path, {"model_manager.py": MODEL_MANAGER, "conda.yaml": conda})
    code, events = run_in_process(request(repo, commit), FakeEngine())
    assert code == 1
    error = events[-1]["error"]
    assert error["category"] == "dependencies"
    assert "cudatoolkit=11.8 (conda.yaml:2), cudnn (conda.yaml:3)" in error["message"]


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [({"python_images": ["3.10"]}, "'python_images'"),
     ({"python_images": {"py3": "img"}}, "'python_images'"),
     ({"python_images": {"3.10": "img\nRUN evil"}}, "'python_images'"),
     ({"conda_base_image": "a b"}, "'conda_base_image'")],
)
def test_malformed_base_image_fields_are_infrastructure_errors(
    good_repo: tuple[Path, str], changes: dict[str, Any], fragment: str
) -> None:
    code, events = run_in_process({**request(*good_repo), **changes}, FakeEngine())
    assert code == 1
    error = events[-1]["error"]
    assert error["category"] == "infrastructure" and fragment in error["message"]


# check-repo's review gives the builder's verdict, from the same functions.

VERDICT_REPOS: dict[str, dict[str, str]] = {
    "good": {"model_manager.py": MODEL_MANAGER, "conda.yaml": CONDA,
             "requirements.txt": "flwr\nnumpy==1.26.4\n", "m.py": "import torchvision\n"},
    "no-model-manager": {"conda.yaml": CONDA},
    "conflict": {"model_manager.py": MODEL_MANAGER, "conda.yaml": CONDA,
                 "requirements.txt": "mlflow==2.10\n"},
    "no-data-manager": {"model_manager.py": "from data_manager import DataManager\n"
                        + MODEL_MANAGER, "conda.yaml": CONDA},
    "python-unmatched": {"model_manager.py": MODEL_MANAGER,
                         "conda.yaml": CONDA.replace("python=3.11", "python=3.8")},
    "conda-only": {"model_manager.py": MODEL_MANAGER,
                   "conda.yaml": CONDA.replace("  - pip:", "  - cudnn\n  - pip:")},
    "requirements-only": {"model_manager.py": MODEL_MANAGER,
                          "requirements.txt": "torch==2.2.0\nmlflow\n",
                          "m.py": "from torchvision import models\n"},
}


@pytest.mark.parametrize("name", sorted(VERDICT_REPOS))
def test_the_review_gives_the_builders_verdict(tmp_path: Path, name: str) -> None:
    repo, commit = git_repo(tmp_path, VERDICT_REPOS[name])
    req = {**request(repo, commit), "python_images": PYTHON_IMAGES}
    code, events = run_in_process(req, FakeEngine())
    review = review_repository(repo, ImageOptions(python_images=PYTHON_IMAGES))
    result = events[-1]
    assert review.ok is result["ok"] is (code == 0)
    if review.ok:
        assert review.plan is not None
        assert [r.as_json() for r in review.repair_diffs] == result["repair_diffs"]
        logged = [(e["level"], e["message"], e.get("details", [])) for e in events
                  if e["type"] == "log" and e["stage"] == "dependencies"]
        assert logged == [(n.level, n.message, list(n.details)) for n in review.notes]
    else:
        failure = review.failure
        assert failure is not None
        assert (failure.category, failure.message, failure.hint) == (
            result["error"]["category"], result["error"]["message"], result["error"]["hint"])
        assert review.failed_stage == result["error"]["stage"]


def test_the_builder_package_imports_only_the_standard_library_yaml_and_the_protocol() -> None:
    allowed = set(sys.stdlib_module_names) | {"yaml", "__future__"}
    shared = "reconciler.protocol"  # the wire contract, copied into the builder image too
    for path in sorted((ROOT / "reconciler" / "builder").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed or name.startswith(shared), \
                    f"{path.name} imports {name}"
