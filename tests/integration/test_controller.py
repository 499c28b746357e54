"""The controller (issue 3): the watch loop, resyncs, crash safety, retries, shared builds,
build_timeout and infrastructure outages.

The real `reconciler` runs as a subprocess (`watch` in the background, `apply --wait` to
completion, kill -9 in between); the real engine, a real registry v2 server and real git
remotes do the rest. What Docker or the registry knows is asked from them: builder containers
from Docker's own event log, images from the registry's manifests.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import GitDaemon, RegistryServer, free_port, wait_until

from integration.harness import (
    REMOVES_REGISTRY_IMAGES,
    BuilderEvents,
    BuildGate,
    MlFiles,
    Publish,
    Workspace,
    builder_containers,
    builder_leftovers,
    docker,
    held_templates,
    image_labels_in_registry,
    manifest_exists,
    sla_text,
    start_registry_on,
)

pytestmark = REMOVES_REGISTRY_IMAGES

ROLES = ("learner", "aggregator")
BUILDER_STAGES = ("clone", "check", "dependencies", "build:learner", "build:aggregator",
                  "push:learner", "push:aggregator")
FAST_RETRIES = {"resync_interval": "2s", "retry_base": "1s", "retry_cap": "2s"}


def resources(memory: int) -> str:
    """An SLA key that decides neither the images nor a training run."""
    return f"resource_constraints:\n  memory: {memory}\n"


def is_ready_at(commit: str) -> Callable[[dict[str, Any]], bool]:
    return lambda row: row["phase"] == "ready" and row["commit"] == commit


def assert_images_in_registry(registry_url: str, row: dict[str, Any], commit: str) -> None:
    """Both FL-actor images of ``row`` are in the registry, tagged and labelled ``commit``."""
    host = registry_url.removeprefix("http://")
    assert set(row["images"]) >= set(ROLES), row
    for role in ROLES:
        ref = row["images"][role]
        assert ref.startswith(f"{host}/") and ref.endswith(f"/{role}:{commit}"), ref
        assert manifest_exists(registry_url, ref), f"{ref} is not in the registry"
        labels = image_labels_in_registry(registry_url, ref)
        assert labels["org.opencontainers.image.revision"] == commit


def no_builder_left() -> None:
    assert builder_leftovers() == []


# --- 1. watch: create, modify, delete --------------------------------------------------------


def test_watch_reacts_to_create_modify_and_delete(
    tmp_path: Path, registry: RegistryServer, base_image: str, git_remote: GitDaemon,
    ml_files: MlFiles,
    builds: BuilderEvents,
) -> None:
    repo = git_remote.make_ml_repo("watched-owner/watched", ml_files(marker="watched-main"))
    first = repo.commit
    ws = Workspace(tmp_path / "ws", registry.url, base_image, extra={"resync_interval": "2s"})
    project, file = "watched", "watched.yaml"
    since = time.time()
    with ws.watching() as watch:
        # create
        ws.sla(file, sla_text(repo.url, extra=resources(3)))
        row = ws.wait_row(project, is_ready_at(first), 120, "ready at the first commit", watch)
        assert_images_in_registry(registry.url, row, first)
        assert len(builds.created(project, since)) == 1

        # modify something that does not decide the images: recorded, not rebuilt
        before_update = time.time()
        ws.sla(file, sla_text(repo.url, extra=resources(5)))

        def memory() -> Any:
            return ws.record(project)["sla"]["resource_constraints"]["memory"]

        wait_until(lambda: memory() == 5, 30, 0.1, lambda: f"memory is {memory()}")
        update_lines = [line for line in ws.log(project).splitlines() if " INFO update " in line]
        assert len(update_lines) == 1, ws.log(project)
        assert "resource_constraints.memory: 3 -> 5" in update_lines[0]
        row = ws.status()[project]
        assert row["phase"] == "ready" and row["commit"] == first
        assert builds.created(project, before_update) == []

        # point the ref at another branch with another commit: rebuilt at that commit
        feature = repo.push_commit({"MARKER": "watched-feature\n"}, branch="feature")
        assert feature != first
        before_ref = time.time()
        ws.sla(file, sla_text(repo.url, extra=resources(5) + "ml_repo_ref: feature\n"))
        row = ws.wait_row(project, is_ready_at(feature), 120, "ready at the feature commit",
                          watch)
        assert_images_in_registry(registry.url, row, feature)
        assert len(builds.created(project, before_ref)) == 1

        # delete: the record goes, the log ends with the prune line, the images stay
        (ws.desired / file).unlink()
        wait_until(lambda: project not in ws.status(), 30, 0.2,
                   lambda: f"{project} is still in status\n{watch.output()}")
        last = ws.log(project).splitlines()[-1]
        assert " INFO prune " in last and "images stay in the registry" in last, last
        assert_images_in_registry(registry.url, row, feature)
    no_builder_left()


# --- 2. a new commit on the tracked branch -------------------------------------------------


def test_a_commit_pushed_to_the_tracked_branch_is_built_after_a_resync(
    tmp_path: Path, registry: RegistryServer, base_image: str, git_remote: GitDaemon,
    ml_files: MlFiles,
    builds: BuilderEvents,
) -> None:
    repo = git_remote.make_ml_repo("tracked-owner/tracked", ml_files(marker="tracked-1"))
    first = repo.commit
    ws = Workspace(tmp_path / "ws", registry.url, base_image, extra={"resync_interval": "2s"})
    with ws.watching() as watch:
        ws.sla("tracked.yaml", sla_text(repo.url, extra="ml_repo_ref: main\n"))
        ws.wait_row("tracked", is_ready_at(first), 120, "ready at the first commit", watch)

        since = time.time()
        second = repo.push_commit({"MARKER": "tracked-2\n"}, message="Second")
        assert second != first
        row = ws.wait_row("tracked", is_ready_at(second), 120, "ready at the pushed commit",
                          watch)
        assert_images_in_registry(registry.url, row, second)
        assert len(builds.created("tracked", since)) == 1
        assert f"moved from {first} to {second}" in ws.log("tracked")
    no_builder_left()


def test_a_one_shot_apply_builds_a_commit_pushed_to_the_tracked_branch(
    tmp_path: Path, registry: RegistryServer, base_image: str, git_remote: GitDaemon,
    ml_files: MlFiles, builds: BuilderEvents,
) -> None:
    """As `argocd app sync` or `flux reconcile` would: a one-shot pass compares against the
    branch's current commit, and `plan` says so before."""
    repo = git_remote.make_ml_repo("oneshot-owner/oneshot", ml_files(marker="oneshot-1"))
    first = repo.commit
    ws = Workspace(tmp_path / "ws", registry.url, base_image)
    ws.sla("oneshot.yaml", sla_text(repo.url, extra="ml_repo_ref: main\n"))
    assert ws.run("apply", "--wait").code == 0
    assert ws.status()["oneshot"]["commit"] == first
    assert ws.run("plan").code == 0  # in sync: the branch has not moved

    second = repo.push_commit({"MARKER": "oneshot-2\n"}, message="Second")
    offline = ws.run("plan", "--offline")
    assert offline.code == 0, "without asking the remote the plan cannot know"
    planned = ws.run("plan")
    assert planned.code == 1
    assert f"oneshot\tbuild\tnew commit {second} on main (was {first}): build" \
        in planned.stdout
    since = time.time()
    applied = ws.run("apply", "--wait")
    assert applied.code == 0, applied.stdout + applied.stderr
    row = ws.status()["oneshot"]
    assert row["phase"] == "ready" and row["commit"] == second, row
    assert_images_in_registry(registry.url, row, second)
    assert len(builds.created("oneshot", since)) == 1
    assert ws.run("plan").code == 0
    no_builder_left()


# --- 3. kill -9 mid-build, then restart ------------------------------------------------------


def _crash_and_restart(
    point: str, project: str, tmp_path: Path, registry: RegistryServer, base_image: str,
    publish: Publish, ml_files: MlFiles, builds: BuilderEvents, gate: BuildGate,
) -> tuple[Workspace, dict[str, Any], list[str]]:
    """A build held at the gate, started by `apply --wait`, that reconciler killed with
    SIGKILL at ``point``, then `apply --wait` again to its end. Returns the workspace, the
    final status row and the builder containers Docker created meanwhile."""
    url, commit = publish(project, ml_files(marker=project))
    templates = held_templates(tmp_path / "templates", gate, f"{project}-{uuid.uuid4().hex}")
    ws = Workspace(tmp_path / "ws", registry.url, base_image,
                   options=["--templates", str(templates)])
    ws.sla(f"{project}.yaml", sla_text(url))
    since = time.time()
    log = ws.state / "observers" / f"{project}.log"

    def logged(text: str) -> bool:
        return log.exists() and text in log.read_text()

    first = ws.start("apply", "--wait")
    try:
        def reached() -> bool:
            first.check_alive()
            if point == "created":  # Docker's create event, as soon as it is recorded
                return bool(builds.created(project, since))
            if point == "learner":  # the builder waits at the gate inside build:learner
                return logged(" INFO build:learner started\n") and gate.reached.is_set()
            return logged(" INFO clone finished ")  # "exited": the builder is mid-way

        wait_until(reached, 120, 0.01, lambda: f"{point} not reached\n{first.output()}")
        assert first.kill() == -9
    finally:
        if first.alive():
            first.kill()

    containers = builder_containers(project)
    assert len(containers) == 1, containers
    if point == "exited":
        gate.release()
        assert docker("wait", containers[0]).strip() == "0"
    else:  # held at the gate: certain to run still (or, killed between the container's
        # create and start, never started: the restart must complete that very container)
        state = docker("inspect", "--format", "{{.State.Status}}", containers[0]).strip()
        expected = {"running", "created"} if point == "created" else {"running"}
        assert state in expected, f"the builder is {state} when the reconciler restarts"
        gate.release()

    second = ws.run("apply", "--wait", timeout=300)
    assert second.code == 0, second.stdout + second.stderr
    row = ws.status()[project]
    assert row["phase"] == "ready" and row["commit"] == commit, row
    assert_images_in_registry(registry.url, row, commit)
    return ws, row, builds.created(project, since)


@pytest.mark.parametrize("point", ["created", "learner", "exited"])
def test_kill_9_mid_build_and_a_restart_converge_on_one_builder(
    point: str, tmp_path: Path, registry: RegistryServer, base_image: str, publish: Publish,
    ml_files: MlFiles, builds: BuilderEvents, build_gate: BuildGate,
) -> None:
    """Killed (a) right after the builder container is created, (b) once the observer log
    shows `build:learner started`, (c) while the builder runs, restarted only after the
    builder has exited. One builder ever, every builder event logged exactly once."""
    project = f"crash-{point}"
    ws, row, created = _crash_and_restart(point, project, tmp_path, registry, base_image,
                                          publish, ml_files, builds, build_gate)
    assert len(created) == 1, created
    log = ws.log(project)
    for stage in BUILDER_STAGES:
        assert log.count(f" INFO {stage} started\n") == 1, f"{stage}\n{log}"
    assert len(re.findall(r" INFO result build succeeded in ", log)) == 1, log
    for role in ROLES:
        assert log.count(f" INFO result image {role} {row['images'][role]} ") == 1, log
    # The log names that builder once as started ("starting" or "adopted"), however early
    # the reconciler died; killed between create and start, the restart completes the same
    # container (one "completing" line) instead of creating another.
    builder = created[0].removesuffix("-image-builder-1")
    deploys = [line for line in log.splitlines() if " INFO deploy " in line and builder in line]
    started = [line for line in deploys if "completing builder" not in line]
    assert len(started) == 1 and len(deploys) - len(started) <= 1, log
    no_builder_left()


# --- 4. backoff, exhaustion, re-arm ----------------------------------------------------------


def test_backoff_then_exhaustion_then_retry_rearms(
    tmp_path: Path, registry: RegistryServer, base_image: str, publish: Publish,
    ml_files: MlFiles,
    builds: BuilderEvents,
) -> None:
    project = "backoff"
    url, _ = publish(project, ml_files(marker=project, drop="model_manager.py"))
    ws = Workspace(tmp_path / "ws", registry.url, base_image,
                   extra={**FAST_RETRIES, "max_attempts": 2})
    since = time.time()
    with ws.watching() as watch:
        ws.sla(f"{project}.yaml", sla_text(url))
        row = ws.wait_row(project, lambda r: r["exhausted"] is True, 120, "exhausted", watch)
        assert row["phase"] == "failed" and row["attempts"] == 2, row
        assert "model_manager.py" in row["error"], row
        log = ws.log(project)
        assert "retries exhausted after 2 attempts" in log, log
        assert len(builds.created(project, since)) == 2

        # The backoff, from Docker's records: the second builder was created at least
        # retry_base (1 s) after the first one had exited.
        events = builds.events(project, since)
        first_died = next(e.at for e in events if e.action == "die")
        second_created = [e.at for e in events if e.action == "create"][1]
        assert second_created - first_died >= 0.9, events

        # Exhausted: no third builder, however many backoff periods go by.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert len(builds.created(project, since)) == 2, "a builder after exhaustion"
            time.sleep(0.5)

        retry = ws.run("retry", project)
        assert retry.code == 0, retry.stdout + retry.stderr
        wait_until(lambda: len(builds.created(project, since)) >= 3, 60, 0.2,
                   "no builder after `reconciler retry`")

        def failed_once_more() -> bool:
            record = ws.record(project)
            return bool(record["phase"] == "failed" and record["attempts"] == 1)

        wait_until(failed_once_more, 60, 0.05, lambda: f"record {ws.record(project)}")
        # ... and, the budget being whole again, a fourth attempt exhausts it once more.
        row = ws.wait_row(project, lambda r: r["exhausted"] is True, 120, "exhausted again",
                          watch)
        assert row["attempts"] == 2, row
        assert len(builds.created(project, since)) == 4
        after = ws.log(project).split("re-armed", 1)[1]
        assert "next attempt after" in after and "retries exhausted after 2 attempts" in after
    no_builder_left()


# --- 5. five projects, one build -------------------------------------------------------------


def test_five_projects_on_one_repository_and_commit_share_one_build(
    tmp_path: Path, registry: RegistryServer, base_image: str, publish: Publish,
    ml_files: MlFiles,
    builds: BuilderEvents,
) -> None:
    names = [f"five-{c}" for c in "abcde"]
    url, commit = publish("fivefold", ml_files(marker="fivefold"))
    ws = Workspace(tmp_path / "ws", registry.url, base_image)
    for name in names:
        ws.sla(f"{name}.yaml", sla_text(url, extra=resources(len(name))))
    since = time.time()
    result = ws.run("apply", "--wait")
    assert result.code == 0, result.stdout + result.stderr
    created = [b for name in names for b in builds.created(name, since)]
    assert len(created) == 1, created

    rows = ws.status()
    assert {rows[n]["phase"] for n in names} == {"ready"}, rows
    assert len({tuple(sorted(rows[n]["images"].items())) for n in names}) == 1
    keys = {rows[n]["build_key"] for n in names}
    assert len(keys) == 1 and None not in keys, keys
    key = keys.pop()
    assert_images_in_registry(registry.url, rows[names[0]], commit)

    sharers = [n for n in names if f"shares build {key}" in ws.log(n)]
    leaders = sorted(set(names) - set(sharers))
    assert len(sharers) == 4 and len(leaders) == 1, {n: ws.log(n) for n in names}
    assert created[0].startswith(f"flops-build-{leaders[0]}-"), created
    for name in sharers:
        assert f"served by build {key}" in ws.log(name)
    no_builder_left()


# --- 6. build_timeout ------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["apply", "watch"])
def test_build_timeout_stops_the_builder_and_fails_the_project(
    how: str, tmp_path: Path, registry: RegistryServer, base_image: str, publish: Publish,
    ml_files: MlFiles, builds: BuilderEvents, build_gate: BuildGate,
) -> None:
    project = f"timeout-{how}"
    url, commit = publish(project, ml_files(marker=project))
    # Held at the gate, never released: the build can only end by build_timeout.
    templates = held_templates(tmp_path / "templates", build_gate,
                               f"{project}-{uuid.uuid4().hex}")
    ws = Workspace(tmp_path / "ws", registry.url, base_image,
                   extra={"build_timeout": "3s", "resync_interval": "2s", "retry_base": "10m"},
                   options=["--templates", str(templates)])
    ws.sla(f"{project}.yaml", sla_text(url))
    since = time.time()
    if how == "apply":
        try:  # the build is stopped after 3 s; half a minute is ample
            result = ws.run("apply", "--wait", timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("`apply --wait` did not return within 30 s with a build_timeout of 3 s; "
                        f"status: {ws.status().get(project)}\n{ws.log(project)}")
        assert result.code == 1, result.stdout + result.stderr
        row = ws.status()[project]
    else:
        with ws.watching() as watch:
            row = ws.wait_row(project, lambda r: r["phase"] == "failed", 30, "failed", watch)
    assert row["phase"] == "failed", row
    assert "build_timeout" in (row["error"] or ""), row
    assert "build_timeout" in ws.log(project)
    assert len(builds.created(project, since)) == 1
    # the builder was stopped before it could push
    learner = f"{registry.host}/{project}-owner/{project}/learner:{commit}"
    assert not manifest_exists(registry.url, learner)
    no_builder_left()


# --- 7. an unreachable registry --------------------------------------------------------------


def test_an_unreachable_registry_is_logged_once_and_the_loop_recovers_by_itself(
    tmp_path: Path, base_image: str, publish: Publish, ml_files: MlFiles, docker_cleanup: Any,
    builds: BuilderEvents,
) -> None:
    port = free_port()
    registry_url = f"http://127.0.0.1:{port}"
    docker_cleanup.add_image_prefix(f"127.0.0.1:{port}/")
    project = "outage"
    url, commit = publish(project, ml_files(marker=project))
    ws = Workspace(tmp_path / "ws", registry_url, base_image, extra=FAST_RETRIES)
    since = time.time()
    server: RegistryServer | None = None
    try:
        with ws.watching() as watch:
            ws.sla(f"{project}.yaml", sla_text(url))
            row = ws.wait_row(project, lambda r: r["phase"] == "failed", 60, "failed", watch)
            assert (row["error"] or "").startswith("infrastructure:"), row

            # Several more passes fail the same way (each one rewrites the record).
            seen: set[str] = set()

            def passes() -> bool:
                seen.add(ws.record(project)["updated_at"])
                return len(seen) >= 4

            wait_until(passes, 30, 0.05, lambda: f"{len(seen)} passes seen")
            row = ws.status()[project]
            assert row["phase"] == "failed" and row["attempts"] == 0, row
            log = ws.log(project)
            errors = [line for line in log.splitlines() if " ERROR " in line]
            assert len(errors) == 1 and "infrastructure:" in errors[0], log
            assert builds.created(project, since) == []

            server = start_registry_on(tmp_path / "registry", port)
            row = ws.wait_row(project, is_ready_at(commit), 120, "ready after the outage",
                              watch)
            assert_images_in_registry(registry_url, row, commit)
            assert len(builds.created(project, since)) == 1
    finally:
        if server is not None:
            with contextlib.suppress(Exception):
                server.stop()
    no_builder_left()
