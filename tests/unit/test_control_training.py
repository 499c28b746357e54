"""The trainer (reconciler/control/trainer.py) on the fake backends: no Docker. A project
with a training_configuration trains once its images are ready: placed by data tags, followed
round by round into its log and record, kept as trained, never run twice; a restart follows
the same run; placement, data and learner failures, timeouts, prune and retrain."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from control_bed import Bed
from fake_training import FakeTraining, round_event

from reconciler.core.config import LEARNER_ADDON, HostConfig
from reconciler.core.record import Phase, TrainingPhase
from reconciler.core.training import stack_name

TRAINING = {"data_tags": ["mnist"], "training_rounds": 2, "min_available_clients": 2,
            "min_fit_clients": 2, "min_evaluate_clients": 2}
HOSTS = [
    {"name": "site-a", "addons": ["image-builder", "FLOps-learner"], "data_dir": "/srv/a"},
    {"name": "site-b", "addons": ["FLOps-learner"], "data_dir": "/srv/b"},
]


def bed_with(tmp_path: Path, tags: dict[str, set[str]] | None = None, **config: Any
             ) -> tuple[Bed, FakeTraining]:
    training = FakeTraining(tags if tags is not None else {"site-a": {"mnist"},
                                                             "site-b": {"mnist", "x"}})
    return Bed(tmp_path, auto_finish=True, training=training, hosts=HOSTS, **config), training


def training_started(tmp_path: Path, **config: Any) -> tuple[Bed, FakeTraining, Any, str]:
    bed, training = bed_with(tmp_path, **config)
    bed.sla("alpha", bed.repo("alpha"), training_configuration=TRAINING)
    controller = bed.controller()
    passes(controller, 3)  # builds, finds the images ready, starts the run
    assert bed.record("alpha").phase is Phase.training, bed.log("alpha")
    return bed, training, controller, training.only_run()


def passes(controller: Any, count: int) -> None:
    """Passes that harvest what has ended instead of following in threads."""
    for _ in range(count):
        controller.reconcile(follow=False)


def test_a_run_is_placed_followed_kept_and_never_run_again(tmp_path: Path) -> None:
    bed, training, controller, run = training_started(tmp_path)
    [(host, name, spec)] = training.deployed
    assert host == "site-a" and name == f"{run}-0"
    assert sorted(spec["services"]) == ["aggregator", "learner-site-a", "learner-site-b"]
    assert spec["services"]["learner-site-b"]["volumes"][0]["source"] == "/srv/b"
    record = bed.record("alpha")
    assert record.training is not None and record.training.learners == ["site-a", "site-b"]

    training.say(run, round_event(1, 0.6), round_event(2, 0.8, 0.5))
    controller.reconcile(follow=False)
    assert [r.round for r in bed.record("alpha").training.rounds] == [1, 2]  # type: ignore[union-attr]
    training.say(run, {"type": "finished", "best_round": 2, "rounds": 2})
    training.end(run, 0)
    training.end(run, 0, role="learner")
    controller.reconcile(follow=False)

    record = bed.record("alpha")
    run_record = record.training
    assert record.phase is Phase.trained and run_record is not None
    assert run_record.phase is TrainingPhase.finished and run_record.best_round == 2
    model = Path(run_record.model or "")
    assert (model / "MLmodel").is_file()
    assert json.loads((model.parent / "result.json").read_text())["best_round"] == 2
    log = bed.log("alpha")
    assert log.count("INFO train round 1/2 loss=1 accuracy=0.6 learners=2 (0.1s)") == 1
    assert log.count("INFO train round 2/2 ") == 1
    assert "run " + record.training.run + " finished: best round 2" in log  # type: ignore[union-attr]
    assert training.removed == [run]

    deployed = len(training.deployed)
    for _ in range(3):
        controller.reconcile(follow=False)
    passes(bed.controller(), 2)  # a restart: still the same run, nothing started
    assert len(training.deployed) == deployed
    assert bed.record("alpha").training == run_record


def test_a_restart_follows_the_run_it_started_and_logs_each_round_once(
    tmp_path: Path,
) -> None:
    bed, training, controller, run = training_started(tmp_path)
    training.say(run, round_event(1))
    controller.reconcile(follow=False)
    restarted = bed.controller()  # the first one is gone (kill -9): a new one, same state
    training.say(run, round_event(2), {"type": "finished", "best_round": 2, "rounds": 2})
    training.end(run, 0)
    restarted.reconcile(follow=False)
    assert bed.record("alpha").phase is Phase.trained
    assert len(training.deployed) == 1
    log = bed.log("alpha")
    assert log.count("train round 1/2") == 1 and log.count("train round 2/2") == 1


def test_too_few_hosts_with_the_data_is_a_placement_wait(tmp_path: Path) -> None:
    bed, training = bed_with(tmp_path, tags={"site-a": {"mnist"}, "site-b": {"other"}})
    bed.sla("alpha", bed.repo("alpha"), training_configuration=TRAINING)
    passes(bed.controller(), 3)
    record = bed.record("alpha")
    assert record.phase is Phase.failed and record.error_category == "placement"
    assert record.waits == 1 and record.attempts == 0
    assert "1 learner host holds the data tags mnist" in (record.error or "")
    assert "site-b: other" in (record.error or "")
    assert training.deployed == []


def test_a_learner_that_fails_before_its_data_is_loaded_is_a_data_failure(
    tmp_path: Path,
) -> None:
    bed, training, controller, run = training_started(tmp_path)
    training.say(run, {"type": "error", "message": "data tag mnist: no Parquet files in "
                       "/flops/data/mnist"}, role="learner")
    training.end(run, 1, role="learner", service="learner-site-b")
    controller.reconcile(follow=False)
    record = bed.record("alpha")
    assert record.phase is Phase.failed and record.error_category == "data"
    assert "learner on site-a (learner-site-b): data tag mnist" in (record.error or "")
    assert record.attempts == 1
    assert training.removed == [run]


def test_a_learner_failing_mid_run_fails_the_run_naming_it(tmp_path: Path) -> None:
    bed, training, controller, run = training_started(tmp_path)
    training.say(run, round_event(1), {"type": "error", "message": "learner site-b failed in "
                                       "round 2: fit_model raised RuntimeError: boom"})
    training.end(run, 1)
    controller.reconcile(follow=False)
    record = bed.record("alpha")
    assert record.phase is Phase.failed and record.error_category == "learner"
    assert "learner site-b failed in round 2" in (record.error or "")
    assert record.training is not None and record.training.phase is TrainingPhase.failed
    assert "ERROR train learner: learner site-b failed in round 2" in bed.log("alpha")


def test_a_run_past_training_timeout_is_stopped_and_fails(tmp_path: Path) -> None:
    bed, training, controller, run = training_started(tmp_path, training_timeout="1h")
    bed.clock.advance(3601)
    controller.reconcile(follow=False)
    record = bed.record("alpha")
    assert record.phase is Phase.failed and "training_timeout (3600s)" in (record.error or "")
    assert training.removed == [run]


def test_removing_the_sla_removes_a_running_run(tmp_path: Path) -> None:
    bed, training, controller, run = training_started(tmp_path)
    (bed.desired / "alpha.yaml").unlink()
    controller.reconcile(follow=False)
    assert training.removed == [run]
    assert "training run" in bed.log("alpha") and "its SLA file was removed" in bed.log("alpha")


def test_retrain_starts_a_new_run_of_the_same_images(tmp_path: Path) -> None:
    bed, training, controller, run = training_started(tmp_path)
    training.say(run, round_event(1), round_event(2), {"type": "finished", "best_round": 1})
    training.end(run, 0)
    controller.reconcile(follow=False)
    first = bed.record("alpha").training
    assert first is not None
    bed.workspace.request_retrain("alpha")
    controller.reconcile(follow=False)
    controller.reconcile(follow=False)
    record = bed.record("alpha")
    assert record.phase is Phase.training and record.retrain == 1
    assert record.training is not None and record.training.run != first.run
    assert len(training.deployed) == 2


def test_an_engine_outage_while_following_is_not_the_runs_end(tmp_path: Path) -> None:
    bed, training, controller, run = training_started(tmp_path)
    training.down = True
    controller.reconcile(follow=False)
    assert bed.record("alpha").phase is Phase.training
    assert any("training hosts is unavailable" in text for text in bed.notices())
    training.down = False
    training.say(run, round_event(1), round_event(2), {"type": "finished", "best_round": 2})
    training.end(run, 0)
    controller.reconcile(follow=False)
    assert bed.record("alpha").phase is Phase.trained


NODES = {"manager": "id-m", "node-b": "id-b", "node-c": "id-c"}


def swarm_bed(tmp_path: Path, tags: dict[str, set[str]], learner_nodes: list[str]
              ) -> tuple[Bed, FakeTraining]:
    """A swarm whose nodes labelled flops-learner=true are ``learner_nodes``."""
    hosts = [HostConfig(name=name, addons=(LEARNER_ADDON,), data_dir=f"/srv/{name}")
             for name in learner_nodes]
    training = FakeTraining(tags, hosts=hosts, nodes=NODES, manager="manager")
    bed = Bed(tmp_path, auto_finish=True, training=training, backend="swarm",
              registry="http://127.0.0.1:5000")
    return bed, training


def swarm_run_started(tmp_path: Path) -> tuple[Bed, FakeTraining, Any]:
    """A project on a swarm whose labelled nodes node-b and node-c both hold its data,
    after the passes that build its images and start its run."""
    bed, training = swarm_bed(tmp_path, {"node-b": {"mnist"}, "node-c": {"mnist"}},
                              ["node-b", "node-c"])
    bed.sla("alpha", bed.repo("alpha"), training_configuration=TRAINING)
    controller = bed.controller()
    passes(controller, 3)
    return bed, training, controller


def test_on_a_swarm_learners_go_to_the_labelled_nodes_and_the_aggregator_to_the_manager(
    tmp_path: Path,
) -> None:
    bed, training, controller = swarm_run_started(tmp_path)
    assert bed.record("alpha").phase is Phase.training, bed.log("alpha")
    [(host, name, spec)] = training.deployed  # the run's one stack, through the manager
    run = training.only_run()
    assert name == stack_name(run) and host == "local"
    services = spec["services"]
    assert services["aggregator"]["deploy"]["placement"]["constraints"] == ["node.id == id-m"]
    assert services["learner-1"]["deploy"]["placement"]["constraints"][0] == "node.id == id-b"
    assert services["learner-2"]["deploy"]["placement"]["constraints"][0] == "node.id == id-c"
    assert spec["networks"]["run"]["driver"] == "overlay"
    record = bed.record("alpha")
    assert record.training is not None and record.training.aggregator == "manager"
    assert record.training.learners == ["node-b", "node-c"]
    assert "aggregator on manager, learners on node-b, node-c" in bed.log("alpha")

    training.say(run, round_event(1), round_event(2), {"type": "finished", "best_round": 2})
    for service, node, examples in (("learner-1", "node-b", 24), ("learner-2", "node-c", 40)):
        training.say(run, {"type": "ready", "learner": node},
                     {"type": "fit", "round": 2, "examples": examples}, role="learner",
                     service=service)
    training.end(run, 0)
    controller.reconcile(follow=False)
    assert bed.record("alpha").phase is Phase.trained
    assert "learners trained on node-b: 24 examples, node-c: 40 examples" in bed.log("alpha")
    assert training.removed == [run]


def test_on_a_swarm_without_learner_nodes_the_run_waits_saying_how_to_label_one(
    tmp_path: Path,
) -> None:
    bed, training = swarm_bed(tmp_path, {}, [])
    bed.sla("alpha", bed.repo("alpha"), training_configuration=TRAINING)
    passes(bed.controller(), 3)
    record = bed.record("alpha")
    assert record.phase is Phase.failed and record.error_category == "placement"
    assert "no learner node: no ready swarm node is labelled flops-learner=true" in (
        record.error or "")
    assert "--label-add flops-data-dir=" in (record.error or "")
    assert record.waits == 1 and record.attempts == 0 and training.deployed == []


def test_on_a_swarm_too_few_nodes_with_the_data_is_the_same_wait_as_on_compose(
    tmp_path: Path,
) -> None:
    bed, training = swarm_bed(tmp_path, {"node-b": {"mnist"}, "node-c": {"other"}},
                              ["node-b", "node-c"])
    bed.sla("alpha", bed.repo("alpha"), training_configuration=TRAINING)
    passes(bed.controller(), 3)
    record = bed.record("alpha")
    assert record.phase is Phase.failed and record.error_category == "placement"
    assert "1 learner host holds the data tags mnist, min_available_clients is 2 " \
           "(node-b: mnist; node-c: other)" in (record.error or "")
    assert training.deployed == []


def test_a_learner_task_lost_with_its_node_is_an_infrastructure_failure_not_the_data(
    tmp_path: Path,
) -> None:
    bed, training, controller = swarm_run_started(tmp_path)
    run = training.only_run()
    training.say(run, round_event(1))
    training.end(run, 125, role="learner", service="learner-2",
                 infrastructure="the swarm's task ended orphaned: node is down")
    controller.reconcile(follow=False)
    record = bed.record("alpha")
    assert record.phase is Phase.failed and record.error_category == "infrastructure"
    assert "(learner-2): the swarm's task ended orphaned: node is down" in (record.error or "")
    assert record.attempts == 0  # not the project's: it does not use up attempts
    assert training.removed == [run]


class HeldProbes(FakeTraining):
    """Each data-tag probe waits until every learner host is being asked: asked in turn,
    the first one would wait in vain."""

    def __init__(self, tags: dict[str, set[str]]) -> None:
        super().__init__(tags)
        self.all_asked = threading.Barrier(len(tags), timeout=10)

    def data_tags(self, host: HostConfig, image: str) -> frozenset[str]:
        self.all_asked.wait()
        return super().data_tags(host, image)


def test_the_learner_hosts_are_asked_for_their_data_at_once(tmp_path: Path) -> None:
    training = HeldProbes({"site-a": {"mnist"}, "site-b": {"mnist"}})
    bed = Bed(tmp_path, auto_finish=True, training=training, hosts=HOSTS)
    bed.sla("alpha", bed.repo("alpha"), training_configuration=TRAINING)
    passes(bed.controller(), 3)
    record = bed.record("alpha")
    assert record.phase is Phase.training, bed.log("alpha")
    assert record.training is not None and record.training.learners == ["site-a", "site-b"]
    assert not training.all_asked.broken
