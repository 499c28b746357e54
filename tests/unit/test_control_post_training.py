"""The post-training steps (reconciler/control/post_training.py) on the fake backends: a
finished run's trained-model image is built once by an image-builder with the run's model
copied in, recorded, and served once when asked; a failed step fails the project with its
category; prune removes the server."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from control_bed import Bed
from fake_training import FakeServing, FakeTraining, round_event
from support import git

from reconciler.core.model_request import model_carrier_ref, trained_model_ref
from reconciler.core.record import Phase
from reconciler.protocol.events import MODEL_DIR

TRAINING = {"data_tags": ["mnist"], "training_rounds": 1, "min_available_clients": 2,
            "min_fit_clients": 2, "min_evaluate_clients": 2}
HOSTS = [
    {"name": "site-a", "addons": ["image-builder", "FLOps-learner"], "data_dir": "/srv/a"},
    {"name": "site-b", "addons": ["FLOps-learner"], "data_dir": "/srv/b"},
]
BOTH_STEPS = ["build_image_for_trained_model", "deploy_trained_model_image"]


def stream_for(model_stream: str) -> Any:
    return lambda request: model_stream if request.get("kind") == "trained-model" else "success"


def trained(tmp_path: Path, steps: list[str], model_stream: str = "trained-model",
            ships_models: bool = False) -> tuple[Bed, FakeServing, Any, str]:
    """A project whose one run has just finished (the pass that saw it end has run); its
    repository's URL. ``ships_models``: the backend takes models as carrier images (a
    swarm's)."""
    training = FakeTraining({"site-a": {"mnist"}, "site-b": {"mnist"}})
    serving = FakeServing()
    bed = Bed(tmp_path, auto_finish=True, training=training, serving=serving, hosts=HOSTS,
              stream_for=stream_for(model_stream))
    bed.backend.ships_models = ships_models
    url = bed.repo("alpha")
    bed.sla("alpha", url, training_configuration=TRAINING, post_training_steps=steps)
    controller = bed.controller()
    for _ in range(3):
        controller.reconcile(follow=False)
    finish(training, training.only_run(), controller)
    return bed, serving, controller, url


def finish(training: FakeTraining, run: str, controller: Any) -> None:
    """The run reports its one round and ends; a pass sees it."""
    training.say(run, round_event(1, 0.75, 0.5), {"type": "finished", "best_round": 1,
                                                   "rounds": 1})
    training.end(run, 0)
    training.end(run, 0, role="learner")
    controller.reconcile(follow=False)


def model_builders(bed: Bed) -> list[str]:
    return [name for name in bed.backend.deployed if bed.backend.copied_in.get(name)]


def test_the_trained_model_image_is_built_once_with_the_model_copied_in(tmp_path: Path) -> None:
    bed, serving, controller, url = trained(tmp_path, ["build_image_for_trained_model"])
    for _ in range(2):
        controller.reconcile(follow=False)

    record = bed.record("alpha")
    assert record.phase is Phase.trained and record.training is not None
    assert record.commit is not None
    expected = trained_model_ref(bed.config.image_prefix, url, record.commit,
                                 record.training.run)
    assert record.training.model_image == expected
    assert record.training.model_image_digest == "sha256:" + "7" * 64
    assert expected in bed.images.present  # pushed
    [builder] = model_builders(bed)
    [(source, target, names)] = bed.backend.copied_in[builder]
    assert target == MODEL_DIR and source == Path(record.training.model or "")
    assert "MLmodel" in names
    assert serving.served == []  # not asked for

    for _ in range(3):  # later passes and a restart build nothing more
        controller.reconcile(follow=False)
    bed.controller().reconcile(follow=False)
    assert len(model_builders(bed)) == 1
    assert bed.log("alpha").count(f"trained-model image {expected} (sha256:") == 1


def test_a_backend_that_cannot_copy_in_gets_the_model_as_a_carrier_image(
    tmp_path: Path,
) -> None:
    bed, _serving, controller, url = trained(tmp_path, ["build_image_for_trained_model"],
                                             ships_models=True)
    for _ in range(2):
        controller.reconcile(follow=False)
    record = bed.record("alpha")
    assert record.training is not None and record.commit is not None
    carrier = model_carrier_ref(bed.config.image_prefix, url, record.commit,
                                record.training.run)
    assert carrier.endswith(f"/trained-model-files:{record.commit}-{record.training.run}")
    assert "MLmodel" in bed.backend.shipped[carrier]
    [builder] = [name for name, request in bed.backend.requests.items()
                 if request.get("kind") == "trained-model"]
    assert bed.backend.requests[builder]["model_carrier"] == carrier
    assert bed.backend.copied_in[builder] == []  # nothing copied: the builder pulls it
    assert record.training.model_image == trained_model_ref(
        bed.config.image_prefix, url, record.commit, record.training.run)
    assert f"the model of run {record.training.run} travels to the builder as image " \
        f"{carrier}" in bed.log("alpha")


def test_the_model_is_served_once_on_the_aggregators_host_and_removed_on_prune(
    tmp_path: Path,
) -> None:
    bed, serving, controller, _ = trained(tmp_path, BOTH_STEPS)
    for _ in range(3):
        controller.reconcile(follow=False)
    record = bed.record("alpha")
    assert record.training is not None and record.training.model_image is not None
    assert serving.served == [("site-a", "alpha", record.training.model_image)]
    assert record.training.serving == "http://site-a:32771"
    assert "served at http://site-a:32771" in bed.log("alpha")
    bed.controller().reconcile(follow=False)
    assert len(serving.served) == 1  # a restart finds it served

    (bed.desired / "alpha.yaml").unlink()
    controller.reconcile(follow=False)
    assert serving.serving == {}
    assert "the model server at http://site-a:32771 is removed" in bed.log("alpha")


def test_a_new_runs_model_replaces_the_served_one_once_it_is_built(tmp_path: Path) -> None:
    bed, serving, controller, _ = trained(tmp_path, BOTH_STEPS)
    for _ in range(2):
        controller.reconcile(follow=False)
    first = bed.record("alpha").training
    assert first is not None and serving.serving["alpha"][1] == first.model_image

    bed.workspace.request_retrain("alpha")
    controller.reconcile(follow=False)
    training = bed.workspace.training
    assert isinstance(training, FakeTraining)
    second_run = training.only_run()  # the first run's actors are gone
    assert serving.serving["alpha"][1] == first.model_image  # served while the next run trains
    finish(training, second_run, controller)
    for _ in range(2):
        controller.reconcile(follow=False)
    second = bed.record("alpha").training
    assert second is not None and second.run != first.run
    assert second.model_image not in (None, first.model_image)
    assert [image for _host, _project, image in serving.served] == [first.model_image,
                                                                     second.model_image]
    assert serving.serving == {"alpha": ("site-a", second.model_image)}  # one server


def test_a_resync_serves_the_model_again_when_its_server_is_gone(tmp_path: Path) -> None:
    bed, serving, controller, _ = trained(tmp_path, BOTH_STEPS)
    for _ in range(2):
        controller.reconcile(follow=False)
    assert len(serving.served) == 1
    controller.reconcile(follow=False, resync=True)  # healthy: nothing to do
    assert len(serving.served) == 1

    serving.serving.clear()  # the server container was removed outside the reconciler
    controller.reconcile(follow=False, resync=True)
    assert len(serving.served) == 2 and "alpha" in serving.serving
    assert bed.record("alpha").training.serving == "http://site-a:32771"  # type: ignore[union-attr]
    assert "WARN serve the model server at http://site-a:32771 does not answer" in bed.log(
        "alpha")


def test_a_model_that_does_not_load_fails_the_project_with_the_builders_reason(
    tmp_path: Path,
) -> None:
    bed, serving, controller, _ = trained(tmp_path, BOTH_STEPS, "trained-model-failure")
    controller.reconcile(follow=False)
    record = bed.record("alpha")
    assert record.phase is Phase.failed, bed.log("alpha")
    assert record.error_category == "build"
    assert "the model does not load" in (record.error or "")
    assert record.training is not None and record.training.model_image is None
    assert serving.served == []
    assert bed.backend.builders == {}  # the model's builder is removed


def test_a_trained_model_builder_no_node_takes_is_taken_down_and_tried_again(
    tmp_path: Path,
) -> None:
    bed, _serving, controller, _ = trained(tmp_path, ["build_image_for_trained_model"],
                                           ships_models=True)
    bed.backend.unschedulable_next = "no image-builder node: the swarm placed builder x on no node"
    controller.reconcile(follow=False)
    record = bed.record("alpha")
    assert record.phase is Phase.failed and record.error_category == "infrastructure"
    assert "no image-builder node" in (record.error or "")
    [builder] = [name for name, request in bed.backend.requests.items()
                 if request.get("kind") == "trained-model"]
    assert (builder, 0) in bed.backend.removed and bed.backend.builders == {}

    bed.backend.unschedulable_next = None  # a node is labelled
    bed.clock.advance(3600)
    for _ in range(3):
        controller.reconcile(follow=False)
    record = bed.record("alpha")
    assert record.phase is Phase.trained and record.training is not None
    assert record.training.model_image is not None, bed.log("alpha")


def test_a_model_missing_from_the_state_directory_fails_naming_retrain(tmp_path: Path) -> None:
    bed, _, controller, url = trained(tmp_path, [])
    model = Path(bed.record("alpha").training.model or "")  # type: ignore[union-attr]
    shutil.rmtree(model)

    bed.sla("alpha", url, training_configuration=TRAINING,
            post_training_steps=["build_image_for_trained_model"])
    controller.reconcile(follow=False)
    record = bed.record("alpha")
    assert record.phase is Phase.failed
    assert "is not in the state directory" in (record.error or "")
    assert "reconciler retrain alpha" in (record.error or "")
    assert model_builders(bed) == []


def test_the_slas_source_commit_is_logged_once_however_many_passes_act_on_it(
    tmp_path: Path,
) -> None:
    training = FakeTraining({"site-a": {"mnist"}, "site-b": {"mnist"}})
    bed = Bed(tmp_path, auto_finish=True, training=training, serving=FakeServing(),
              hosts=HOSTS, stream_for=stream_for("trained-model"))
    bed.sla("alpha", bed.repo("alpha"), training_configuration=TRAINING,
            post_training_steps=BOTH_STEPS)
    git(["init", "-q", str(bed.desired)])
    git(["add", "-A"], cwd=bed.desired)
    git(["commit", "-q", "-m", "alpha"], cwd=bed.desired)
    commit = git(["rev-parse", "HEAD"], cwd=bed.desired)
    controller = bed.controller()
    for _ in range(3):  # build, images found, run started: each pass acts on alpha
        controller.reconcile(follow=False)
    run = training.only_run()
    training.say(run, round_event(1), {"type": "finished", "best_round": 1, "rounds": 1})
    training.end(run, 0)
    training.end(run, 0, role="learner")
    for _ in range(3):  # the run ends, its image is built, its model served
        controller.reconcile(follow=False)
    assert bed.record("alpha").training.serving is not None  # type: ignore[union-attr]
    assert bed.log("alpha").count(f"as of desired-repo commit {commit[:12]}") == 1
