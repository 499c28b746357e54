"""A training run's specs (templates/training-compose.yaml.j2): the compose projects of a
compose inventory and the one stack of a swarm, with its node constraints and overlay network;
values are data, never spec structure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core.render import make_environment, render_training_compose
from reconciler.core.sla import TrainingConfiguration
from reconciler.core.training import (
    Placement,
    stack_name,
    swarm_training_spec,
    training_specs,
)

ROOT = Path(__file__).resolve().parents[2]
ENV = make_environment([ROOT / "templates"])
CONFIG = TrainingConfiguration(data_tags=("mnist",), training_rounds=2, min_available_clients=2)
IMAGES = {"learner": "reg:5000/o/r/learner:c", "aggregator": "reg:5000/o/r/aggregator:c"}
RUN = "flops-train-alpha-0123456789ab"


def rendered(spec: Any) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(render_training_compose(ENV, spec))
    return document


def stack(nodes: dict[str, str], placement: Placement, project: str = "alpha",
          data_dirs: dict[str, str] | None = None) -> Any:
    return swarm_training_spec(project, RUN, nodes=nodes,
                               data_dirs=data_dirs or {h: f"/srv/{h}" for h in nodes},
                               placement=placement, config=CONFIG, flavor="sklearn",
                               images=IMAGES)


def test_a_swarm_run_is_one_stack_with_each_actor_constrained_to_its_node() -> None:
    nodes = {"manager": "id-m", "node-b": "id-b", "node-c": "id-c"}
    spec = stack(nodes, Placement("manager", ("node-b", "node-c")))
    assert spec.stack and spec.name == stack_name(RUN) and spec.run == RUN
    document = rendered(spec)
    assert "name" not in document  # the stack's name is on `docker stack deploy`'s line
    services = document["services"]
    assert sorted(services) == ["aggregator", "learner-1", "learner-2"]
    aggregator = services["aggregator"]
    assert aggregator["deploy"]["placement"]["constraints"] == ["node.id == id-m"]
    assert aggregator["deploy"]["restart_policy"] == {"condition": "none"}
    assert "ports" not in aggregator and "restart" not in aggregator
    for service, node, host in (("learner-1", "id-b", "node-b"),
                                ("learner-2", "id-c", "node-c")):
        learner = services[service]
        assert learner["deploy"]["placement"]["constraints"] == [
            f"node.id == {node}", "node.labels.flops-learner == true"]
        assert learner["environment"]["FLOPS_AGGREGATOR"] == "aggregator:8080"
        assert learner["environment"]["FLOPS_LEARNER_NAME"] == host
        assert learner["volumes"] == [{"type": "bind", "source": f"/srv/{host}",
                                       "target": "/flops/data", "read_only": True}]
        assert learner["deploy"]["endpoint_mode"] == "dnsrr"
    for body in services.values():
        labels = {"flops.project": "alpha", "flops.run": RUN}
        assert labels.items() <= body["labels"].items()  # the containers, on every node
        assert labels.items() <= body["deploy"]["labels"].items()  # the services
        assert body["networks"] == ["run"]
    assert document["networks"]["run"] == {"driver": "overlay", "attachable": True,
                                           "labels": {"flops.run": RUN}}


def test_the_stack_s_service_names_fit_the_swarm_s_63_characters() -> None:
    long_run = "flops-train-" + "p" * 19 + "-12345678-0123456789ab"
    name = stack_name(long_run)
    assert len(f"{name}_aggregator") <= 63 and len(f"{name}_learner-999") <= 63
    assert name != stack_name(long_run.replace("p", "q"))  # two runs, two stacks


def test_a_compose_run_keeps_its_compose_projects() -> None:
    hosts = {"site-a": "unix:///a.sock", "site-b": "tcp://10.0.0.2:2375"}
    first, second = training_specs(
        "alpha", RUN, hosts=hosts, data_dirs={"site-a": "/a", "site-b": "/b"},
        placement=Placement("site-a", ("site-a", "site-b")), config=CONFIG, flavor="sklearn",
        images=IMAGES, aggregator_address="10.0.0.1:32768")
    one, two = rendered(first), rendered(second)
    assert one["name"] == f"{RUN}-0" and two["name"] == f"{RUN}-1"
    assert one["services"]["aggregator"]["ports"] == [{"target": 8080, "published": "0"}]
    assert "deploy" not in one["services"]["aggregator"]
    assert two["services"]["learner-site-b"]["environment"]["FLOPS_AGGREGATOR"] == \
        "10.0.0.1:32768"
    assert one["networks"]["run"] == {"labels": {"flops.run": RUN}}  # a bridge network


VALUES = st.text(min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(host=VALUES, data_dir=VALUES, project=VALUES, node=VALUES)
def test_no_value_can_change_the_shape_of_the_stack(host: str, data_dir: str, project: str,
                                                    node: str) -> None:
    spec = stack({"manager": "id-m", host: node}, Placement("manager", (host,)),
                 project=project, data_dirs={host: data_dir})
    document = rendered(spec)
    assert sorted(document) == ["networks", "services"]
    learner = document["services"]["learner-1"]
    assert sorted(learner) == ["deploy", "environment", "image", "labels", "networks",
                               "volumes"]
    assert learner["volumes"][0]["source"] == data_dir.replace("$", "$$")
    assert learner["deploy"]["placement"]["constraints"][0] == \
        f"node.id == {node}".replace("$", "$$")
    assert learner["environment"]["FLOPS_LEARNER_NAME"] == host.replace("$", "$$")
    assert learner["labels"]["flops.project"] == project.replace("$", "$$")
