"""The builder's second kind of build, a trained model's image (``kind: trained-model``):
a request and a model directory in, protocol events out, the image built on a fake engine.

The engine is ``FakeEngine`` (it records what it is asked to build and push); the model
directory is what the builder reads of a saved model (its ``MLmodel``), the rest opaque files.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from builder_support import (
    LEARNER_IMAGE,
    FakeEngine,
    model_request,
    no_engine,
    write_model,
)

from reconciler.builder import protocol
from reconciler.builder.engine import Engine, EngineError
from reconciler.builder.run import run

ROOT = Path(__file__).resolve().parents[2]
ROLE = "trained-model"


def build(request: dict[str, Any], engine: Engine | None = None) -> tuple[int, list[Any]]:
    out = io.StringIO()
    code = run(json.dumps(request), out,
               engine_factory=(lambda: engine) if engine is not None else no_engine)
    return code, [protocol.decode(line) for line in out.getvalue().splitlines()]


def stages(events: list[Any]) -> list[str]:
    return [e["stage"] for e in events if e["type"] == "stage" and e["state"] == "start"]


def failure(events: list[Any]) -> dict[str, Any]:
    result = events[-1]
    assert result["type"] == "result" and result["ok"] is False, result
    error: dict[str, Any] = result["error"]
    return error


def test_the_image_is_the_learner_image_plus_the_model_and_the_runtime(tmp_path: Path) -> None:
    model = write_model(tmp_path / "model")
    engine = FakeEngine()
    request = model_request(model)
    code, events = build(request, engine)
    assert code == 0, events
    assert stages(events) == ["model", f"build:{ROLE}"]
    ref = request["images"][ROLE]
    result = events[-1]
    assert result["ok"] is True and result["images"] == {ROLE: ref}
    assert result["digests"] == {ROLE: "sha256:" + "0" * 63 + "1"}  # no push: the image id
    assert set(result["timings"]) == {"model", f"build:{ROLE}"}
    assert result["repairs"] == [] and result["base_image"] is None
    [(tag, dockerfile, labels, names)] = engine.builds
    assert tag == ref and dockerfile == "Dockerfile"
    assert labels["flops.role"] == ROLE and labels["flops.run"] == "run1"
    assert "mlflow-skinny" in labels["flops.runtime"]
    files = engine.contexts[ref]
    assert files["Dockerfile"].decode().splitlines()[0] == f"FROM {LEARNER_IMAGE}"
    assert files["model/MLmodel"] == (model / "MLmodel").read_bytes()
    assert "model/code/model_manager.py" in files
    assert b"def main(" in files["runtime/flops_actor/serve.py"]
    assert {n.split("/")[0] for n in names} == {"Dockerfile", "model", "runtime"}
    logs = [e["message"] for e in events if e["type"] == "log"]
    assert any("flavors python_function, 3 files" in m for m in logs), logs


def test_push_makes_a_push_stage_and_reports_the_registry_digest(tmp_path: Path) -> None:
    engine = FakeEngine()
    request = model_request(write_model(tmp_path / "model"), push=True)
    code, events = build(request, engine)
    assert code == 0
    assert stages(events) == ["model", f"build:{ROLE}", f"push:{ROLE}"]
    assert engine.pushed == [request["images"][ROLE]]
    assert events[-1]["digests"] == {ROLE: "sha256:" + "d" * 63 + "1"}


def test_a_missing_model_directory_is_infrastructure_before_any_engine_call(
    tmp_path: Path,
) -> None:
    code, events = build(model_request(tmp_path / "not-copied"))
    assert code == 1
    error = failure(events)
    assert (error["category"], error["stage"]) == ("infrastructure", "model")
    assert f"no model directory at {tmp_path / 'not-copied'}" in error["message"]
    assert "model_dir" in error["hint"]


@pytest.mark.parametrize(("mlmodel", "says"), [
    (None, "is not an MLflow model: MLmodel cannot be read"),
    ("flavors: [unclosed\n", "MLmodel is not valid YAML"),
    ("- a list\n", "MLmodel is not a YAML mapping"),
    ("flavors:\n  keras: {}\n", "has no python_function flavor (its MLmodel lists keras)"),
    ("flavors: {}\n", "has no python_function flavor (its MLmodel lists no flavors)"),
])
def test_a_model_the_server_cannot_load_is_a_build_error(
    tmp_path: Path, mlmodel: str | None, says: str
) -> None:
    model = write_model(tmp_path / "model", mlmodel or "")
    if mlmodel is None:
        (model / "MLmodel").unlink()
    code, events = build(model_request(model))
    assert code == 1
    error = failure(events)
    assert (error["category"], error["stage"]) == ("build", "model")
    assert says in error["message"]
    assert "reconciler retrain" in error["hint"]


def test_an_mlmodel_link_out_of_the_directory_is_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.yaml"
    secret.write_text("flavors: {python_function: {}}\n")
    model = write_model(tmp_path / "model")
    (model / "MLmodel").unlink()
    (model / "MLmodel").symlink_to(secret)
    code, events = build(model_request(model))
    error = failure(events)
    assert code == 1 and error["category"] == "build"
    assert "MLmodel is a symlink to a path outside the repository" in error["message"]


def test_links_stay_links_and_special_files_stay_out_of_the_context(tmp_path: Path) -> None:
    model = write_model(tmp_path / "model")
    (model / "weights.link").symlink_to("/etc/passwd")
    os.mkfifo(model / "pipe")
    engine = FakeEngine()
    request = model_request(model)
    assert build(request, engine)[0] == 0
    members = {m.name: m for m in engine.tar_members[request["images"][ROLE]]}
    assert members["model/weights.link"].issym()
    assert members["model/weights.link"].linkname == "/etc/passwd"
    assert "model/pipe" not in members
    assert all(m.uid == 0 and m.mtime == 0 for m in members.values())


class MissingBase(FakeEngine):
    """An engine that cannot get the learner image: the build fails at its FROM step."""

    def build(self, context: Any, tag: str, dockerfile_path: str, labels: dict[str, str],
              **_: Any) -> tuple[str, list[str]]:
        raise EngineError(f"pull access denied for {LEARNER_IMAGE.rsplit(':', 1)[0]}",
                          [f"Step 1/8 : FROM {LEARNER_IMAGE}"])


def test_a_learner_image_the_engine_cannot_get_is_infrastructure(tmp_path: Path) -> None:
    code, events = build(model_request(write_model(tmp_path / "model")), MissingBase())
    error = failure(events)
    assert code == 1
    assert (error["category"], error["stage"]) == ("infrastructure", f"build:{ROLE}")
    assert f"the learner image {LEARNER_IMAGE}" in error["message"]
    assert "Step 1/8" in error["details"][0]


@pytest.mark.parametrize(("fail", "category", "stage"), [
    ("build", "build", f"build:{ROLE}"),
    ("push", "push", f"push:{ROLE}"),
    ("unreachable", "infrastructure", f"push:{ROLE}"),
])
def test_engine_failures_are_categorized(
    tmp_path: Path, fail: str, category: str, stage: str
) -> None:
    request = model_request(write_model(tmp_path / "model"), push=True)
    code, events = build(request, FakeEngine(fail=fail))
    assert code == 1
    error = failure(events)
    assert (error["category"], error["stage"]) == (category, stage)


def test_the_builder_program_answers_a_trained_model_request(tmp_path: Path) -> None:
    """``python -m reconciler.builder`` as in its container: request file in, events out."""
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps(model_request(tmp_path / "absent")))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DOCKER_HOST": "unix:///nonexistent.sock",
           protocol.REQUEST_FILE_ENV: str(request_file)}
    proc = subprocess.run([sys.executable, "-m", "reconciler.builder"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    events = [protocol.decode(line) for line in proc.stdout.splitlines()]
    assert failure(events)["category"] == "infrastructure"
    assert stages(events) == ["model"]


def test_the_context_is_a_plain_tar(tmp_path: Path) -> None:
    from reconciler.builder.model_context import write_model_context
    from reconciler.builder.runtime import load_runtime

    model = write_model(tmp_path / "model")
    with io.BytesIO() as out:
        write_model_context(model, "FROM x\n", load_runtime(), out)
        assert out.tell() == 0
        with tarfile.open(fileobj=out) as tar:
            names = tar.getnames()
    assert names[:2] == ["Dockerfile", "model"]
    assert "runtime/requirements-runtime.txt" in names
