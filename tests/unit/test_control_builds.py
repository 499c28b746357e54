"""The controller and its build runner without Docker: builds, shared builds, retries and
backoff, timeouts, prune, and restarts, over builders that replay recorded real output."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from control_bed import Bed

from reconciler.control.reports import StageReport
from reconciler.core import transitions
from reconciler.core.project import Phase
from reconciler.edges.backend import Output


def test_a_new_project_gets_one_builder_and_its_result_makes_it_ready(tmp_path: Path) -> None:
    bed = Bed(tmp_path)
    url = bed.repo("alpha")
    bed.sla("alpha", url)
    controller = bed.controller()

    controller.apply(wait=False)
    building = bed.record("alpha")
    builder = bed.backend.only_builder()
    assert building.phase is Phase.building and building.build is not None
    assert building.build.name == builder.name
    assert builder.request["commit"] == bed.commit_of(url)
    assert builder.request["images"] == bed.images_of(url)
    assert "starting builder" in bed.log("alpha")

    controller.reconcile(follow=False)  # still running: nothing to harvest
    assert bed.record("alpha").phase is Phase.building
    bed.backend.finish(builder.name)
    controller.reconcile(follow=False)

    ready = bed.record("alpha")
    assert ready.phase is Phase.ready and ready.build is None
    assert ready.images == bed.images_of(url)
    assert set(ready.digests) == {"learner", "aggregator"}
    assert bed.backend.removed == [(builder.name, 10)]
    log = bed.log("alpha")
    for line in ("INFO clone started", "INFO build:learner started", "build succeeded in",
                 f"image learner {ready.images['learner']}",
                 f"builder {builder.name} removed (its result is recorded)"):
        assert line in log
    assert log.count("INFO clone started") == 1
    assert StageReport("alpha", "ready") in bed.reports


def test_apply_wait_follows_builders_in_threads_until_their_results_are_in(
    tmp_path: Path,
) -> None:
    bed = Bed(tmp_path, auto_finish=True)
    for name in ("alpha", "beta"):
        bed.sla(name, bed.repo(name))

    records = bed.controller().apply(wait=True)

    assert {name: r.phase for name, r in records.items()} == {
        "alpha": Phase.ready, "beta": Phase.ready}
    assert len(bed.backend.deployed) == 2
    assert "built builder image flops-builder:latest on local" in bed.notices()


def test_images_that_exist_need_no_builder(tmp_path: Path) -> None:
    bed = Bed(tmp_path)
    url = bed.repo("alpha")
    bed.images.present.update(bed.images_of(url).values())
    bed.sla("alpha", url)

    bed.controller().apply(wait=False)

    assert bed.record("alpha").phase is Phase.ready
    assert bed.backend.deployed == []
    assert "images exist, no build needed" in bed.log("alpha")


def test_projects_with_the_same_image_inputs_share_one_build(tmp_path: Path) -> None:
    bed = Bed(tmp_path, auto_finish=True)
    url = bed.repo("shared")
    bed.sla("first", url)
    bed.sla("second", url, customerID="another-team")

    bed.controller().apply(wait=True)

    assert len(bed.backend.deployed) == 1
    first, second = bed.record("first"), bed.record("second")
    assert first.phase is Phase.ready and second.phase is Phase.ready
    assert first.served_by == second.served_by
    assert "shares build" in bed.log("second") and "served by build" in bed.log("second")
    # Each project's log has the builder's events once.
    assert bed.log("second").count("INFO clone started") == 1


def test_builds_beyond_the_slot_limit_wait_for_a_slot(tmp_path: Path) -> None:
    bed = Bed(tmp_path, max_concurrent_builds=1)
    for name in ("alpha", "beta"):
        bed.sla(name, bed.repo(name))
    controller = bed.controller()

    controller.apply(wait=False)
    assert len(bed.backend.deployed) == 1
    # Build keys are started in their order; which project's comes first is the hash's say.
    (waiting,) = [p for p in ("alpha", "beta") if bed.record(p).phase is Phase.pending]
    assert StageReport(waiting, "waiting for a build slot") in bed.reports

    bed.backend.finish_all()
    controller.reconcile(follow=False)  # harvests the first; the second starts next pass
    controller.reconcile(follow=False)
    assert len(bed.backend.deployed) == 2
    assert bed.record(waiting).phase is Phase.building


def test_a_failed_build_backs_off_then_retries_until_exhausted_and_retry_rearms(
    tmp_path: Path,
) -> None:
    bed = Bed(tmp_path, auto_finish=True, max_attempts=2,
              stream_for=lambda request: "repo-failure")
    bed.sla("alpha", bed.repo("alpha"))
    controller = bed.controller()

    controller.apply(wait=True)
    failed = bed.record("alpha")
    assert failed.phase is Phase.failed and failed.attempts == 1 and not failed.exhausted
    assert failed.error_category == "repo"
    assert failed.error is not None and "model_manager.py" in failed.error
    assert failed.retry_at == "2026-11-30T12:00:10.000+00:00"
    assert "next attempt after 2026-11-30T12:00:10.000+00:00" in bed.log("alpha")
    assert controller.next_due() == 10

    controller.reconcile(follow=True)  # within the backoff: held
    assert len(bed.backend.deployed) == 1

    bed.clock.advance(10)
    controller.reconcile(follow=True)
    assert len(bed.backend.deployed) == 2
    controller.apply(wait=True)  # follows the second builder to its result
    exhausted = bed.record("alpha")
    assert exhausted.attempts == 2 and exhausted.exhausted and exhausted.retry_at is None
    assert "retries exhausted after 2 attempts" in bed.log("alpha")

    bed.clock.advance(3600)
    controller.reconcile(follow=True)
    assert len(bed.backend.deployed) == 2, "exhausted: no attempt without a re-arm"

    bed.workspace.request_retry("alpha")
    controller.reconcile(follow=True)
    assert len(bed.backend.deployed) == 3
    assert "re-armed by `reconciler retry`" in bed.log("alpha")


def test_a_build_that_fails_after_a_repair_keeps_both_in_the_log(tmp_path: Path) -> None:
    bed = Bed(tmp_path, auto_finish=True, stream_for=lambda request: "build-failure")
    bed.sla("alpha", bed.repo("alpha"))

    bed.controller().apply(wait=True)

    record = bed.record("alpha")
    assert record.phase is Phase.failed and record.error_category == "build"
    log = bed.log("alpha")
    assert "WARN dependencies learner: removed mlflow==2.9.2" in log
    assert "    - mlflow==2.9.2  # conda.yaml:8" in log
    assert "ERROR build:learner build: building the learner image failed" in log


def test_a_builder_past_build_timeout_is_killed_and_its_projects_fail(tmp_path: Path) -> None:
    bed = Bed(tmp_path, build_timeout="60s")
    controller, builder = bed.started("alpha")
    name = builder.name
    assert controller.runner.next_wake() == 60

    bed.clock.advance(61)
    controller.reconcile(follow=False)

    record = bed.record("alpha")
    assert record.phase is Phase.failed and record.error_category == "build"
    assert "ran longer than build_timeout (60s)" in (record.error or "")
    assert bed.backend.removed == [(name, 0)]
    assert "builder " + name + " removed (build_timeout exceeded)" in bed.log("alpha")


def test_removing_the_sla_mid_build_prunes_the_record_and_cancels_the_builder(
    tmp_path: Path,
) -> None:
    bed = Bed(tmp_path)
    sla = bed.sla("alpha", bed.repo("alpha"))
    controller = bed.controller()
    controller.apply(wait=False)
    name = bed.backend.only_builder().name

    sla.unlink()
    controller.reconcile(follow=False)

    assert bed.workspace.store.load("alpha") is None
    assert bed.backend.removed == [(name, 10)]
    log = bed.log("alpha")
    assert f"builder {name} cancelled: its SLA file was removed" in log
    assert "project record deleted" in log


def test_an_image_input_edit_mid_build_cancels_the_builder_and_builds_again(
    tmp_path: Path,
) -> None:
    bed = Bed(tmp_path)
    url = bed.repo("alpha")
    bed.sla("alpha", url)
    controller = bed.controller()
    controller.apply(wait=False)
    first = bed.backend.deployed[0]

    bed.sla("alpha", url, training_configuration={"mode": "classic", "training_rounds": 9})
    controller.reconcile(follow=False)
    assert "SLA changed during the build" in bed.log("alpha")
    assert bed.backend.deployed == [first]

    bed.sla("alpha", url, ml_model_flavor="pytorch")
    controller.reconcile(follow=False)
    assert bed.backend.removed == [(first, 10)]
    assert len(bed.backend.deployed) == 2
    assert "cancelled: the image inputs changed" in bed.log("alpha")


def test_a_restarted_controller_adopts_a_running_builder_and_harvests_it(
    tmp_path: Path,
) -> None:
    bed = Bed(tmp_path)
    bed.sla("alpha", bed.repo("alpha"))
    bed.controller().apply(wait=False)  # then the process dies
    name = bed.backend.only_builder().name

    bed.backend.finish(name)
    bed.controller().apply(wait=False)  # a new process over the same state

    assert bed.backend.deployed == [name], "nothing is built twice"
    assert bed.record("alpha").phase is Phase.ready
    assert bed.log("alpha").count("INFO clone started") == 1


def test_a_builder_that_vanished_before_reporting_is_started_again(tmp_path: Path) -> None:
    bed = Bed(tmp_path)
    bed.sla("alpha", bed.repo("alpha"))
    bed.controller().apply(wait=False)
    name = bed.backend.only_builder().name
    del bed.backend.builders[name]  # gone, e.g. removed by hand while the reconciler was down

    controller = bed.controller()
    controller.reconcile(follow=False)
    assert f"builder {name} not found running; the build is started again" in bed.log("alpha")
    controller.reconcile(follow=False)
    assert bed.backend.deployed == [name, name]
    assert bed.record("alpha").phase is Phase.building


def test_a_builder_deployed_before_a_crash_is_adopted_not_deployed_again(
    tmp_path: Path,
) -> None:
    bed = Bed(tmp_path)
    name = bed.started("alpha")[1].name
    # The crash came between the deploy and the record: the record still says pending.
    bed.workspace.store.save(replace(bed.record("alpha"), phase=Phase.pending, build=None))

    bed.controller().reconcile(follow=False)

    assert bed.backend.deployed == [name]
    assert f"adopted running builder {name}" in bed.log("alpha")


def test_following_resumes_after_an_outage_without_writing_an_event_twice(
    tmp_path: Path,
) -> None:
    bed = Bed(tmp_path, auto_finish=True)
    bed.sla("alpha", bed.repo("alpha"))
    bed.backend.fail_output_after = 5
    controller = bed.controller()
    controller.apply(wait=False)  # deployed and finished at once
    controller.reconcile(follow=False)  # reads 5 lines, then the engine breaks off

    interrupted = bed.record("alpha")
    assert interrupted.phase is Phase.building and interrupted.build is not None
    assert interrupted.build.events_logged == 5
    assert "cannot follow builder" in bed.log("alpha")
    assert any("Docker host local is unavailable" in text for text in bed.notices())

    bed.backend.fail_output_after = None
    bed.controller().reconcile(follow=False)  # a restart reads the whole output again

    assert bed.record("alpha").phase is Phase.ready
    log = bed.log("alpha")
    assert log.count("INFO clone started") == 1
    assert log.count("INFO check started") == 1


def test_a_builder_created_but_never_started_is_completed_not_created_again(
    tmp_path: Path,
) -> None:
    bed = Bed(tmp_path)
    _, builder = bed.started("alpha")
    builder.started = False  # the reconciler died between `compose create` and the start

    controller = bed.controller()  # the next start
    controller.reconcile(follow=False)  # finds it never started: the project waits again
    controller.reconcile(follow=False)  # deploys again, which completes that builder
    bed.backend.finish(builder.name)
    controller.reconcile(follow=False)

    assert bed.backend.deployed == [builder.name, builder.name]
    assert bed.backend.builders == {} and bed.record("alpha").phase is Phase.ready
    log = bed.log("alpha")
    assert f"builder {builder.name} not found running; the build is started again" in log
    assert f"completing builder (created but never started: a deploy cut short) " \
        f"{builder.name}" in log


@pytest.mark.parametrize("cut", [0, 3])
def test_a_builder_that_ends_without_a_result_fails_with_its_exit_status(
    tmp_path: Path, cut: int,
) -> None:
    bed = Bed(tmp_path)
    controller, builder = bed.started("alpha")
    killed = Output("stderr", "Traceback: killed", builder.outputs[0].at)
    builder.outputs = [*builder.outputs[:cut], killed]
    builder.exit_code = 137
    bed.backend.finish(builder.name)

    controller.reconcile(follow=False)

    record = bed.record("alpha")
    assert record.phase is Phase.failed and record.error_category == "infrastructure"
    assert "exited with status 137 without a result: Traceback: killed" in (record.error or "")
    assert record.attempts == 0 and record.waits == 1


def test_more_events_than_the_limit_are_cut_with_one_warning_but_the_result_counts(
    tmp_path: Path,
) -> None:
    bed = Bed(tmp_path)
    controller, builder = bed.started("alpha")
    log_event = next(o for o in builder.outputs if '"type":"log"' in o.line)
    builder.outputs = [log_event] * 400 + builder.outputs
    bed.backend.finish(builder.name)

    controller.reconcile(follow=False)

    assert bed.record("alpha").phase is Phase.ready
    log = bed.log("alpha")
    assert log.count("the builder sent more than 300 events") == 1
    assert "build succeeded in" in log


def test_a_result_recorded_while_a_pass_plans_is_not_acted_on_with_the_old_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pass takes its snapshot while the builder runs; its follower records the failure
    before the pass acts. Acting on the old plan ("follow the builder") with the new record
    would build again at once, past the backoff, and count a second attempt."""
    bed = Bed(tmp_path, max_attempts=3, stream_for=lambda request: "repo-failure")
    bed.sla("alpha", bed.repo("alpha"))
    controller = bed.controller()
    controller.reconcile(follow=True)  # starts the builder; its follower waits for its end
    builder = bed.record("alpha").build
    assert builder is not None and len(bed.backend.deployed) == 1

    taken = controller.book.snapshot

    def snapshot_then_the_result_lands() -> dict[str, Any]:
        records = taken()
        bed.backend.finish(builder.name)
        for thread in list(controller.runner._followers.values()):
            thread.join(timeout=30)
        assert bed.record("alpha").phase is Phase.failed  # recorded after the snapshot
        return records

    monkeypatch.setattr(controller.book, "snapshot", snapshot_then_the_result_lands)
    controller.reconcile(follow=True)
    monkeypatch.undo()

    record = bed.record("alpha")
    assert record.phase is Phase.failed and record.attempts == 1, record
    assert len(bed.backend.deployed) == 1  # no second build before the backoff ends
    assert bed.log("alpha").count("next attempt after") == 1


def test_events_logged_while_a_pass_plans_do_not_hold_its_action(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A follower writes the builder's events into the record all the time; only a result
    (a new phase) makes the pass leave a project to the next one. Here the SLA is removed
    while the builder runs and an event lands between snapshot and action: pruned anyway."""
    bed = Bed(tmp_path)
    bed.sla("alpha", bed.repo("alpha"))
    controller = bed.controller()
    controller.reconcile(follow=False)
    builder = bed.record("alpha").build
    assert builder is not None
    (bed.desired / "alpha.yaml").unlink()

    taken = controller.book.snapshot

    def snapshot_then_an_event_lands() -> dict[str, Any]:
        records = taken()
        controller.book.change("alpha", lambda have: transitions.events_logged(have, 3))
        return records

    monkeypatch.setattr(controller.book, "snapshot", snapshot_then_an_event_lands)
    controller.reconcile(follow=False)
    monkeypatch.undo()

    assert bed.workspace.store.load("alpha") is None
    assert builder.name in [name for name, _timeout in bed.backend.removed]
