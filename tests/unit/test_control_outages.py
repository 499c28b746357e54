"""The controller through outages and odd inputs, without Docker: the registry, the engine,
git remotes and the desired directory going away and coming back; invalid SLAs, updates,
the swarm's placement, and `watch` itself."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from control_bed import Bed
from support import git, wait_until

from reconciler.control.reports import StageReport
from reconciler.core.project import Phase
from reconciler.edges.backend import Output


def test_a_registry_outage_fails_quietly_without_using_attempts_and_recovers(
    tmp_path: Path,
) -> None:
    bed = Bed(tmp_path, auto_finish=True)
    bed.sla("alpha", bed.repo("alpha"))
    bed.images.down = "registry http://registry:5000 did not answer"
    controller = bed.controller()

    controller.apply(wait=False)
    failed = bed.record("alpha")
    assert failed.phase is Phase.failed and failed.error_category == "infrastructure"
    assert failed.attempts == 0 and failed.waits == 1
    bed.clock.advance(10)
    controller.reconcile(follow=False)
    assert bed.record("alpha").waits == 2
    assert bed.log("alpha").count("ERROR registry infrastructure: registry") == 1, \
        "a repeated failure is logged once"
    assert bed.log("alpha").count(" plan ") == 1, "an outage's retries stay quiet"
    assert bed.notices().count(
        "reconciler: registry is unavailable: registry http://registry:5000 did not answer") == 1

    bed.images.down = None
    bed.clock.advance(20)
    controller.apply(wait=True)
    assert bed.record("alpha").phase is Phase.ready
    assert "reconciler: registry is available again" in bed.notices()


def test_no_reachable_host_fails_the_deploy_as_an_outage(tmp_path: Path) -> None:
    bed = Bed(tmp_path)
    bed.sla("alpha", bed.repo("alpha"))
    bed.backend.unreachable = "no image-builder host is reachable: local (connection refused)"

    bed.controller().apply(wait=False)

    record = bed.record("alpha")
    assert record.phase is Phase.failed and record.error_category == "infrastructure"
    assert "ERROR deploy infrastructure: no image-builder host is reachable" in bed.log("alpha")


def test_an_engine_that_refuses_the_deploy_is_an_outage_reported_once(tmp_path: Path) -> None:
    bed = Bed(tmp_path)
    bed.sla("alpha", bed.repo("alpha"))
    bed.backend.refuse_deploy = "docker compose create the builder on local failed: no space"
    controller = bed.controller()

    controller.apply(wait=False)
    bed.clock.advance(10)
    controller.reconcile(follow=False)

    record = bed.record("alpha")
    assert record.phase is Phase.failed and record.error_category == "infrastructure"
    assert record.waits == 2 and record.attempts == 0
    unavailable = [t for t in bed.notices() if "Docker host local is unavailable" in t]
    assert unavailable == ["reconciler: Docker host local is unavailable: docker compose "
                           "create the builder on local failed: no space"]
    bed.backend.refuse_deploy = None
    bed.clock.advance(20)
    controller.reconcile(follow=False)
    assert bed.record("alpha").phase is Phase.building
    assert "reconciler: Docker host local is available again" in bed.notices()


def test_two_platforms_with_the_local_registry_fail_before_a_builder_starts(
    tmp_path: Path,
) -> None:
    bed = Bed(tmp_path, images={"platforms": {"linux/arm64": "flops-base:bookworm-arm64"}})
    bed.sla("alpha", bed.repo("alpha"), supported_platforms=["linux/amd64", "linux/arm64"])

    bed.controller().apply(wait=False)

    record = bed.record("alpha")
    assert record.phase is Phase.failed and record.error_category == "build"
    assert 'registry = "local"' in (record.error or "") and "set registry to a URL" in (
        record.error or "")
    assert bed.backend.deployed == []


def test_a_platform_without_a_base_image_fails_before_a_builder_starts_naming_it(
    tmp_path: Path,
) -> None:
    bed = Bed(tmp_path, registry="http://127.0.0.1:5999",
              images={"platforms": {"linux/arm64": "flops-base:bookworm-arm64"}})
    bed.sla("alpha", bed.repo("alpha"),
            supported_platforms=["linux/amd64", "linux/arm64", "linux/riscv64"])

    bed.controller().apply(wait=False)

    record = bed.record("alpha")
    assert record.phase is Phase.failed and record.error_category == "build"
    error = record.error or ""
    assert "cannot build linux/riscv64 on image-builder host" in error
    assert '[images.platforms] "linux/riscv64"' in error and "linux/arm64" not in error
    assert record.attempts == 1 and bed.backend.deployed == []


def test_configured_platforms_reach_the_builder_with_their_images(tmp_path: Path) -> None:
    bed = Bed(tmp_path, registry="http://127.0.0.1:5999",
              images={"platforms": {"linux/arm64": {"base_image": "base:arm64",
                                                    "python": {"3.11": "py:3.11-arm64"}},
                                    "linux/s390x": "base:s390x"}})
    bed.sla("alpha", bed.repo("alpha"), supported_platforms=["linux/amd64", "linux/arm64"])

    bed.controller().apply(wait=False)

    assert bed.record("alpha").phase is Phase.building
    request = bed.backend.only_builder().request
    assert request["platforms"] == ["linux/amd64", "linux/arm64"]
    assert request["platform_images"] == {"linux/arm64": {
        "base_image": "base:arm64", "python_images": {"3.11": "py:3.11-arm64"},
        "conda_base_image": None}}  # only the platforms the project asks for
    assert request["registry_url"] == "http://127.0.0.1:5999"


def test_a_host_of_another_platform_builds_its_own_without_configuration(
    tmp_path: Path,
) -> None:
    bed = Bed(tmp_path)
    bed.backend.native = "linux/arm64"
    bed.sla("alpha", bed.repo("alpha"), supported_platforms=["linux/arm64"])

    bed.controller().apply(wait=False)

    assert bed.record("alpha").phase is Phase.building


def test_an_unreadable_ca_bundle_fails_the_deploy_naming_the_path(tmp_path: Path) -> None:
    bed = Bed(tmp_path, build={"ca_bundle": str(tmp_path / "missing.pem")})
    bed.sla("alpha", bed.repo("alpha"))

    bed.controller().apply(wait=False)

    assert "cannot read [build] ca_bundle" in (bed.record("alpha").error or "")
    assert bed.backend.deployed == []


def test_a_builder_no_node_takes_fails_and_is_taken_down(tmp_path: Path) -> None:
    bed = Bed(tmp_path)
    controller, builder = bed.started("alpha")
    builder.unschedulable = "no image-builder node: the swarm placed builder x on no node"

    controller.reconcile(follow=True)  # the follower thread meets the error
    wait_until(lambda: bed.record("alpha").phase is Phase.failed, 20, 0.01,
               "the project did not fail")
    record = bed.record("alpha")
    assert record.error_category == "infrastructure" and record.waits == 1
    assert bed.backend.removed == [(builder.name, 10)]


def test_where_the_swarm_placed_a_builder_is_logged_once(tmp_path: Path) -> None:
    bed = Bed(tmp_path)
    controller, builder = bed.started("alpha")
    placed = Output("placed", "n0d31d worker-2", builder.outputs[0].at)
    builder.outputs = [placed, placed, *builder.outputs]
    bed.backend.finish(builder.name)

    controller.reconcile(follow=False)

    assert bed.log("alpha").count("builder task placed on node n0d31d (worker-2)") == 1


def test_an_invalid_sla_is_recorded_once_and_a_fix_builds_it(tmp_path: Path) -> None:
    bed = Bed(tmp_path, auto_finish=True)
    url = bed.repo("alpha")
    bed.sla("alpha", url, ml_model_flavor="sklearn-ish")
    controller = bed.controller()

    controller.apply(wait=False)
    controller.reconcile(follow=False)
    assert bed.record("alpha").phase is Phase.invalid
    assert bed.log("alpha").count("ERROR validate") == 1
    assert StageReport("alpha", "invalid") in bed.reports

    bed.sla("alpha", url)
    controller.apply(wait=True)
    assert bed.record("alpha").phase is Phase.ready


def test_an_sla_that_turns_invalid_mid_build_cancels_its_builder(tmp_path: Path) -> None:
    bed = Bed(tmp_path)
    url = bed.repo("alpha")
    bed.sla("alpha", url)
    controller = bed.controller()
    controller.apply(wait=False)
    name = bed.backend.only_builder().name

    bed.sla("alpha", url, ml_model_flavor="nope")
    controller.reconcile(follow=False)

    assert bed.record("alpha").phase is Phase.invalid
    assert bed.backend.removed == [(name, 10)]


def test_a_change_that_does_not_decide_the_images_is_an_update_without_a_build(
    tmp_path: Path,
) -> None:
    bed = Bed(tmp_path, auto_finish=True)
    url = bed.repo("alpha")
    bed.sla("alpha", url)
    controller = bed.controller()
    controller.apply(wait=True)

    bed.sla("alpha", url, customerID="another-team", verbose=True)
    controller.reconcile(follow=False)

    record = bed.record("alpha")
    assert record.phase is Phase.ready and record.sla is not None
    assert record.sla["customer_id"] == "another-team"
    assert len(bed.backend.deployed) == 1
    assert "INFO update customer_id: Admin -> another-team, verbose" in bed.log("alpha")


def test_a_new_commit_on_a_tracked_branch_is_built_at_a_resync(tmp_path: Path) -> None:
    bed = Bed(tmp_path, auto_finish=True)
    url = bed.repo("alpha")
    bed.sla("alpha", url, ml_repo_ref="main")
    controller = bed.controller()
    controller.apply(wait=True)
    first = bed.record("alpha").commit

    work = tmp_path / "work" / "alpha-owner" / "alpha"
    (work / "MARKER").write_text("second\n")
    git(["commit", "-qam", "second"], cwd=work)
    git(["push", "-q", "origin", "main"], cwd=work)
    controller.reconcile(follow=False, resync=True)

    second = bed.commit_of(url)
    assert second != first
    assert f"main moved from {first} to {second}" in bed.log("alpha")
    assert len(bed.backend.deployed) == 2


def test_a_tracked_remote_that_vanishes_is_warned_about_once(tmp_path: Path) -> None:
    bed = Bed(tmp_path, auto_finish=True)
    url = bed.repo("alpha")
    bed.sla("alpha", url, ml_repo_ref="main")
    controller = bed.controller()
    controller.apply(wait=True)

    shutil.rmtree(url)
    controller.reconcile(follow=False, resync=True)
    controller.reconcile(follow=False, resync=True)

    assert bed.log("alpha").count("WARN resync") == 1
    assert bed.record("alpha").phase is Phase.ready, "a ready project stays ready"
    assert sum("is unavailable" in text for text in bed.notices()) == 1


def test_watch_builds_reacts_to_a_new_sla_and_stops_on_request(tmp_path: Path) -> None:
    bed = Bed(tmp_path, auto_finish=True)
    url = bed.repo("alpha")
    bed.sla("alpha", url)
    controller = bed.controller()
    stop = threading.Event()
    watcher = threading.Thread(target=controller.watch, args=(stop,), daemon=True)
    watcher.start()
    try:
        wait_until(lambda: bed.workspace.store.load("alpha") is not None
                   and bed.record("alpha").phase is Phase.ready, 30, 0.01, "alpha not ready")
        bed.sla("beta", bed.repo("beta"))
        wait_until(lambda: bed.workspace.store.load("beta") is not None
                   and bed.record("beta").phase is Phase.ready, 30, 0.01, "beta not ready")
    finally:
        stop.set()
        controller.wake.set()
        watcher.join(timeout=30)
    assert not watcher.is_alive()


def test_watch_survives_the_desired_directory_vanishing_and_prunes_nothing(
    tmp_path: Path,
) -> None:
    bed = Bed(tmp_path, auto_finish=True)
    bed.sla("alpha", bed.repo("alpha"))
    controller = bed.controller()
    stop = threading.Event()
    watcher = threading.Thread(target=controller.watch, args=(stop,), daemon=True)
    watcher.start()
    try:
        wait_until(lambda: bed.workspace.store.load("alpha") is not None
                   and bed.record("alpha").phase is Phase.ready, 30, 0.01, "alpha not ready")
        shutil.rmtree(bed.desired)
        controller.wake.set()  # a file watcher may say nothing of a directory that is gone
        wait_until(lambda: any("desired directory is unavailable" in text
                               for text in bed.notices()), 30, 0.01, "no outage notice")
        assert bed.record("alpha").phase is Phase.ready, "nothing is pruned"
    finally:
        stop.set()
        controller.wake.set()
        watcher.join(timeout=30)
    assert not watcher.is_alive()
