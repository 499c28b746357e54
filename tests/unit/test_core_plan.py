"""The plan (DESIGN §3 `plan`): one action per project, with the reason a person reads."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.plan import Action, PlanItem, in_sync, make_plan, tracked_refs
from reconciler.core.project import (
    BuildRecord,
    Desired,
    DesiredProject,
    InvalidProject,
    Phase,
    ProjectRecord,
)
from reconciler.core.sla import parse_sla

URL = "https://github.com/owner/repo.git"
COMMIT = "a" * 40


def desired(name: str = "demo", **sla: Any) -> DesiredProject:
    data = {"ml_repo_url": URL, "ml_model_flavor": "sklearn", **sla}
    return DesiredProject(name, f"desired/{name}.yaml", parse_sla(data, allow_file_repos=False))


def record_of(project: DesiredProject, phase: Phase = Phase.ready, **changes: Any) -> ProjectRecord:
    """The record a pass writes after applying `project` and reaching `phase`."""
    fields: dict[str, Any] = {
        "project": project.name,
        "phase": phase,
        "sla_file": project.sla_file,
        "sla": project.sla_dump,
        "sla_digest": project.sla_digest,
        "image_digest": project.image_digest,
        "commit": COMMIT,
        "images": {"learner": f"flops.local/owner/repo/learner:{COMMIT}"},
    }
    fields.update(changes)
    return ProjectRecord(**fields)


def only(desired_: dict[str, Desired], recorded: dict[str, ProjectRecord]) -> PlanItem:
    plan = make_plan(desired_, recorded)
    assert len(plan) == 1
    return plan[0]


def test_a_new_project_is_created() -> None:
    item = only({"demo": desired()}, {})
    assert (item.project, item.action) == ("demo", Action.create)


def test_a_project_whose_sla_became_valid_is_created() -> None:
    old = ProjectRecord(project="demo", phase=Phase.invalid, sla_file="desired/demo.yaml",
                        error="bad")
    assert only({"demo": desired()}, {"demo": old}).action is Action.create


def test_a_ready_project_with_the_same_sla_is_a_noop_and_in_sync() -> None:
    project = desired()
    plan = make_plan({"demo": project}, {"demo": record_of(project)})
    assert [item.action for item in plan] == [Action.noop]
    assert COMMIT in plan[0].reason
    assert in_sync(plan)


@pytest.mark.parametrize(
    ("key", "old", "new"),
    [
        ("ml_repo_url", URL, "https://github.com/owner/other.git"),
        ("ml_repo_ref", "main", "v2"),
        ("ml_model_flavor", "sklearn", "pytorch"),
        ("supported_platforms", ["linux/amd64"], ["linux/amd64", "linux/arm64"]),
        ("use_devel_base_images", False, True),
    ],
)
def test_a_change_to_an_image_input_is_a_build_naming_the_key(key: str, old: Any, new: Any) -> None:
    before = desired(**{key: old})
    after = desired(**{key: new})
    item = only({"demo": after}, {"demo": record_of(before)})
    assert item.action is Action.build
    assert f"image inputs changed: {key}" in item.reason
    assert not in_sync([item])


def test_a_build_reason_shows_old_and_new_values_and_only_image_keys() -> None:
    before = desired(ml_model_flavor="sklearn", verbose=False)
    after = desired(ml_model_flavor="keras", verbose=True)
    item = only({"demo": after}, {"demo": record_of(before)})
    assert item.action is Action.build
    assert "ml_model_flavor: sklearn -> keras" in item.reason
    assert "verbose" not in item.reason


def test_platform_order_alone_is_not_an_image_change() -> None:
    before = desired(supported_platforms=["linux/amd64", "linux/arm64"])
    after = desired(supported_platforms=["linux/arm64", "linux/amd64"])
    assert only({"demo": after}, {"demo": record_of(before)}).action is not Action.build


def test_a_training_configuration_change_is_a_new_run_not_a_build() -> None:
    before = desired(training_configuration={"training_rounds": 3})
    after = desired(training_configuration={"training_rounds": 7})
    item = only({"demo": after}, {"demo": record_of(before)})
    assert item.action is Action.train
    assert item.reason.startswith("start run ")
    assert "the first run of these images (7 rounds, data tags dev)" in item.reason


def test_other_changes_outside_the_image_keys_are_updates() -> None:
    before, after = desired(customerID="a"), desired(customerID="b")
    item = only({"demo": after}, {"demo": record_of(before)})
    assert item.action is Action.update
    assert "customer_id: a -> b" in item.reason and "images stay" in item.reason


_NON_IMAGE = st.fixed_dictionaries(
    {},
    optional={
        "customerID": st.text(max_size=10),
        "verbose": st.booleans(),
        "post_training_steps": st.lists(st.just("build_image_for_trained_model"), max_size=1),
        "training_configuration": st.fixed_dictionaries(
            {},
            optional={
                "mode": st.just("classic"),
                "training_rounds": st.integers(1, 50),
                "min_fit_clients": st.integers(1, 5),
                "data_tags": st.lists(st.from_regex(r"[a-z0-9][a-z0-9_-]{0,4}",
                                                    fullmatch=True), max_size=2),
            },
        ),
        "resource_constraints": st.fixed_dictionaries(
            {}, optional={"memory": st.integers(0, 4096), "vcpus": st.integers(0, 8)}
        ),
    },
)


@given(before=_NON_IMAGE, after=_NON_IMAGE)
def test_changes_outside_the_image_keys_never_rebuild(
    before: dict[str, Any], after: dict[str, Any]
) -> None:
    old, new = desired(**before), desired(**after)
    item = only({"demo": new}, {"demo": record_of(old)})
    if "training_configuration" in after:  # a project that trains: its first run is due
        assert item.action is Action.train
    else:
        assert item.action is (Action.noop if old.sla == new.sla else Action.update)


def test_a_removed_sla_is_a_delete_naming_the_file() -> None:
    project = desired()
    item = only({}, {"demo": record_of(project)})
    assert item.action is Action.delete
    assert project.sla_file in item.reason


def test_an_invalid_sla_is_invalid_with_its_error_as_reason() -> None:
    bad = InvalidProject("demo", "desired/demo.yaml", "desired/demo.yaml: unknown key `x`")
    for recorded in ({}, {"demo": record_of(desired())}):
        item = only({"demo": bad}, recorded)
        assert item.action is Action.invalid
        assert item.reason == bad.error
        assert not in_sync([item])


def test_a_failed_project_is_retried() -> None:
    project = desired()
    failed = record_of(project, Phase.failed, error="build: pip could not install torch")
    item = only({"demo": project}, {"demo": failed})
    assert item.action is Action.build
    assert "retry" in item.reason
    assert "pip could not install torch" in item.reason


def test_a_running_build_is_followed() -> None:
    project = desired()
    build = BuildRecord(key="k" * 16, name="flops-build-demo-kkkkkkkkkkkk", host="local",
                        commit=COMMIT, images={}, started_at="2026-01-01T00:00:00.000Z")
    item = only({"demo": project}, {"demo": record_of(project, Phase.building, build=build)})
    assert item.action is Action.build
    assert "follow" in item.reason
    assert build.name in item.reason
    assert build.host in item.reason


def test_a_pending_project_builds() -> None:
    project = desired()
    assert only({"demo": project}, {"demo": record_of(project, Phase.pending)}).action is (
        Action.build
    )


def test_a_different_builder_version_rebuilds() -> None:
    project = desired()
    item = only({"demo": project}, {"demo": record_of(project, image_digest="0" * 64)})
    assert item.action is Action.build
    assert "(builder version)" in item.reason


def test_the_plan_covers_every_project_once_sorted_by_name() -> None:
    kept, changed, gone = desired("b-kept"), desired("d-changed"), desired("a-gone")
    new = desired("c-new")
    recorded = {
        "b-kept": record_of(kept),
        "d-changed": record_of(changed),
        "a-gone": record_of(gone),
    }
    wanted: dict[str, Desired] = {
        "b-kept": kept,
        "d-changed": desired("d-changed", verbose=True),
        "c-new": new,
    }
    plan = make_plan(wanted, recorded)
    assert [(i.project, i.action) for i in plan] == [
        ("a-gone", Action.delete),
        ("b-kept", Action.noop),
        ("c-new", Action.create),
        ("d-changed", Action.update),
    ]
    assert not in_sync(plan)
    assert in_sync([i for i in plan if i.action is Action.noop])
    assert in_sync([])


def test_plan_items_as_json() -> None:
    item = PlanItem("demo", Action.update, "verbose changed")
    assert item.as_json() == {
        "project": "demo", "action": "update", "reason": "verbose changed", "hold": False
    }


def test_a_ready_project_whose_tracked_ref_moved_is_a_build_naming_the_new_commit() -> None:
    project = desired(ml_repo_ref="main")
    new = "b" * 40
    [item] = make_plan({"demo": project}, {"demo": record_of(project)},
                       remote_commits={"demo": new})
    assert item.action is Action.build
    assert item.reason == f"new commit {new} on main (was {COMMIT}): build"
    [same] = make_plan({"demo": project}, {"demo": record_of(project)},
                       remote_commits={"demo": COMMIT})
    assert same.action is Action.noop


def test_only_ready_projects_with_movable_refs_are_tracked() -> None:
    wanted: dict[str, Desired] = {
        "branch": desired("branch", ml_repo_ref="main"),
        "head": desired("head"),
        "pinned": desired("pinned", ml_repo_ref=COMMIT),
        "failed": desired("failed", ml_repo_ref="main"),
        "changed": desired("changed", ml_repo_ref="main"),
        "bad": InvalidProject("bad", "desired/bad.yaml", "broken"),
    }
    recorded = {name: record_of(project) for name, project in wanted.items()
                if isinstance(project, DesiredProject)}
    recorded["failed"] = record_of(desired("failed", ml_repo_ref="main"), Phase.failed)
    recorded["changed"] = record_of(desired("changed", ml_repo_ref="v1"))  # a build is due
    assert sorted(tracked_refs(wanted, recorded)) == ["branch", "head"]


@pytest.mark.parametrize("sla_removed", [False, True])
def test_a_corrupt_record_holds_its_project_and_is_never_created_or_deleted(
    sla_removed: bool,
) -> None:
    corrupt = ProjectRecord(project="demo", phase=Phase.corrupt, sla_file="",
                            error="state record state/projects/demo.json cannot be read")
    [item] = make_plan({} if sla_removed else {"demo": desired()}, {"demo": corrupt})
    assert (item.action, item.hold) == (Action.invalid, True)
    assert item.reason == corrupt.error
