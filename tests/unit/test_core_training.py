"""Stage 4-5 decisions (reconciler.core.training): who trains, the run key, placement."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.core.sla import TrainingConfiguration, parse_sla
from reconciler.core.training import (
    LearnerHost,
    Placement,
    Unplaceable,
    aggregator_env,
    learner_env,
    place,
    run_key,
    wants_training,
)

DIGESTS = {"learner": "sha256:" + "1" * 64, "aggregator": "sha256:" + "2" * 64}


def sla(**fields: Any) -> Any:
    return parse_sla({"ml_repo_url": "https://example.org/o/r.git", "ml_model_flavor": "sklearn",
                      **fields}, allow_file_repos=False)


def test_only_a_project_with_a_training_configuration_trains() -> None:
    assert not wants_training(sla())
    assert wants_training(sla(training_configuration={}))
    assert wants_training(sla(training_configuration={"training_rounds": 2}))


def test_the_run_key_names_the_images_the_configuration_and_retrains() -> None:
    config = TrainingConfiguration(data_tags=("mnist",), training_rounds=2)
    key = run_key(DIGESTS, config)
    assert len(key) == 12 and key == run_key(dict(reversed(DIGESTS.items())), config)
    others = {
        run_key({**DIGESTS, "learner": "sha256:" + "3" * 64}, config),  # a new image
        run_key(DIGESTS, config.model_copy(update={"training_rounds": 3})),
        run_key(DIGESTS, config.model_copy(update={"data_tags": ("mnist", "extra")})),
        run_key(DIGESTS, config, retrain=1),
    }
    assert key not in others and len(others) == 4


def config(tags: tuple[str, ...] = ("mnist",), clients: int = 1) -> TrainingConfiguration:
    return TrainingConfiguration(data_tags=tags, min_available_clients=clients)


def test_one_learner_on_each_host_holding_every_tag_and_the_aggregator_on_the_first() -> None:
    hosts = [LearnerHost("a", frozenset({"other"})), LearnerHost("b", frozenset({"mnist", "x"})),
             LearnerHost("c", frozenset({"mnist", "x"}))]
    assert place(hosts, config(("mnist", "x"), 2)) == Placement("b", ("b", "c"))
    assert place(hosts, config(("mnist",), 1)) == Placement("b", ("b", "c"))


@pytest.mark.parametrize(
    ("hosts", "clients", "fragment"),
    [
        ([], 1, "no learner host: no [[hosts]] entry has the FLOps-learner addon"),
        ([LearnerHost("a", frozenset({"other"}))], 1,
         "0 learner hosts hold the data tags mnist, min_available_clients is 1 (a: other)"),
        ([LearnerHost("a", frozenset({"mnist"}))], 2,
         "1 learner host holds the data tags mnist, min_available_clients is 2"),
    ],
)
def test_too_few_learner_hosts_is_a_reason_to_wait(
    hosts: list[LearnerHost], clients: int, fragment: str
) -> None:
    placement = place(hosts, config(clients=clients))
    assert isinstance(placement, Unplaceable)
    assert fragment in placement.reason


def test_the_actors_are_told_the_configuration_as_design_section_9_names_it() -> None:
    settings = TrainingConfiguration(data_tags=("mnist", "edge"), training_rounds=4,
                                     min_available_clients=2, min_fit_clients=2,
                                     min_evaluate_clients=1)
    assert aggregator_env(settings, "keras") == {
        "FLOPS_ROUNDS": "4", "FLOPS_MIN_AVAILABLE_CLIENTS": "2", "FLOPS_MIN_FIT_CLIENTS": "2",
        "FLOPS_MIN_EVALUATE_CLIENTS": "1", "FLOPS_MODEL_FLAVOR": "keras", "FLOPS_PORT": "8080"}
    assert learner_env(settings, "10.0.0.5:8080", "host-b") == {
        "FLOPS_AGGREGATOR": "10.0.0.5:8080", "FLOPS_DATA_TAGS": "mnist,edge",
        "FLOPS_LEARNER_NAME": "host-b"}
