"""Two controller behaviours with real parts: an SLA edited in the middle of a build, and the
Docker engine stopped and started again while `watch` runs."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import RegistryServer, docker_engine_error, wait_until

from integration.harness import (
    REMOVES_REGISTRY_IMAGES,
    Background,
    BuilderEvents,
    BuildGate,
    MlFiles,
    Publish,
    Workspace,
    builder_leftovers,
    held_templates,
    sla_text,
)

pytestmark = REMOVES_REGISTRY_IMAGES

REPO_ROOT = Path(__file__).resolve().parents[2]
FAST = {"resync_interval": "2s", "retry_base": "1s", "retry_cap": "2s"}


def row_of(ws: Workspace, project: str) -> dict[str, Any] | None:
    return ws.status().get(project)


def phase_is(ws: Workspace, watch: Background, project: str, phase: str) -> Callable[[], bool]:
    """A predicate: the project is in ``phase`` (and watch has not died meanwhile)."""

    def check() -> bool:
        watch.check_alive()
        row = row_of(ws, project)
        return row is not None and row["phase"] == phase

    return check


def test_an_image_input_edited_mid_build_cancels_the_builder_and_starts_a_new_one(
    tmp_path: Path, registry: RegistryServer, base_image: str, publish: Publish,
    ml_files: MlFiles, builds: BuilderEvents, build_gate: BuildGate,
) -> None:
    project = "midbuild"
    # Both builders wait at the gate: the first is certain to run while the SLA is edited.
    templates = held_templates(tmp_path / "templates", build_gate, uuid.uuid4().hex)
    ws = Workspace(tmp_path / "ws", registry.url, base_image, extra=FAST,
                   options=["--templates", str(templates)])
    url, commit = publish(project, ml_files(marker=project))
    with ws.watching() as watch:
        ws.sla(f"{project}.yaml", sla_text(url))
        wait_until(lambda: bool(builds.created(project)), 60)
        first_key = ws.record(project)["served_by"]
        # A setting that does not decide the images: same images, the build goes on.
        ws.sla(f"{project}.yaml", sla_text(url, extra="resource_constraints:\n"
                                                      "  memory: 9\n"))
        wait_until(lambda: ws.record(project)["sla"]["resource_constraints"]["memory"] == 9,
                   30)
        assert len(builds.created(project)) == 1
        # An image input: the running builder is cancelled, a new one builds the new inputs.
        ws.sla(f"{project}.yaml", sla_text(url, flavor="pytorch"))
        wait_until(lambda: len(builds.created(project)) == 2, 60)
        build_gate.release()
        wait_until(phase_is(ws, watch, project, "ready"), 240)
    record = ws.record(project)
    assert record["served_by"] != first_key
    assert record["sla"]["ml_model_flavor"] == "pytorch"
    assert record["commit"] == commit
    log = ws.log(project)
    assert "SLA changed during the build" in log
    assert "cancelled: the image inputs changed" in log
    assert builder_leftovers() == []


def _stop_engine() -> None:
    pid = int(Path("/var/run/docker.pid").read_text().strip())
    subprocess.run(["kill", "-TERM", str(pid)], check=True)
    wait_until(lambda: docker_engine_error() is not None, 60, 0.2,
               "the Docker engine did not stop")


def _start_engine() -> None:
    subprocess.run(["bash", str(REPO_ROOT / "scripts" / "setup.sh")], check=True,
                   capture_output=True)
    wait_until(lambda: docker_engine_error() is None, 60, 0.2, "the engine did not come back")


def test_the_engine_stopped_and_started_while_watching(
    tmp_path: Path, registry: RegistryServer, base_image: str, publish: Publish,
    ml_files: MlFiles,
) -> None:
    if not Path("/var/run/docker.pid").exists():
        pytest.fail("this test stops and restarts the engine that scripts/setup.sh started")
    ws = Workspace(tmp_path / "ws", registry.url, base_image, extra=FAST)
    url, commit = publish("outage", ml_files(marker="outage"))
    try:
        with ws.watching() as watch:
            _stop_engine()
            ws.sla("outage.yaml", sla_text(url))
            wait_until(phase_is(ws, watch, "outage", "failed"), 60)
            row = row_of(ws, "outage")
            assert row is not None and row["error"].startswith("infrastructure:")
            # Several passes go by (retry_base 1 s, resync 2 s) while the engine is down.
            first = ws.record("outage")["updated_at"]
            wait_until(lambda: ws.record("outage")["updated_at"] != first, 30)
            assert watch.alive()
            _start_engine()
            wait_until(phase_is(ws, watch, "outage", "ready"), 240)
    finally:
        if docker_engine_error() is not None:
            _start_engine()
    assert ws.record("outage")["commit"] == commit
    errors = [line for line in ws.log("outage").splitlines() if " ERROR " in line]
    assert len(errors) == 1, errors  # one outage, one line, however many passes failed
    assert builder_leftovers() == []
