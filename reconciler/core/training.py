"""Stages 4 and 5, decided purely: whether a project trains, the key of a training run, where
its learners and its aggregator go, and what the actors are told (DESIGN §9, §10).

Decision: a run is named by what it trains (the images' digests) and how (the training
configuration, data tags included), so the same inputs always name the same run: a resync or a
restart finds the run it already finished and never starts it again, and only a new commit, a
changed configuration or an explicit `retrain` (a counter in the key) makes a new one.
Placement follows the data: one learner on every learner host (a compose host with the
FLOps-learner addon, or a swarm node labelled flops-learner=true) that holds all of the
project's data tags. The aggregator goes on the first of them on a compose inventory (so a
single-host inventory trains with no network set-up at all), and on a swarm on the manager the
reconciler talks to (so its output is copied out through the engine the reconciler already
holds, after the task has exited).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reconciler.core.config import LEARNER_ADDON
from reconciler.core.naming import digest_of
from reconciler.core.sla import ProjectSla, TrainingConfiguration

AGGREGATOR_PORT = 8080
LEARNER_NODE_LABEL = "flops-learner"  # swarm: a node that may run learners (value "true")
DATA_DIR_NODE_LABEL = "flops-data-dir"  # swarm: that node's data directory
NO_LEARNER_HOST = (f"no learner host: no [[hosts]] entry has the {LEARNER_ADDON} addon "
                   "(and a data_dir); add one (swarm: label a node flops-learner=true)")
NO_LEARNER_NODE = (f"no learner node: no ready swarm node is labelled {LEARNER_NODE_LABEL}=true "
                   f"with a {DATA_DIR_NODE_LABEL} label; label one with `docker node update "
                   f"--label-add {LEARNER_NODE_LABEL}=true --label-add "
                   f"{DATA_DIR_NODE_LABEL}=/srv/flops/data NODE`")


def wants_training(sla: ProjectSla) -> bool:
    """A project trains when its SLA has a `training_configuration`; one without stops at
    `ready` (its images), as an image-only project."""
    return "training_configuration" in sla.model_fields_set


def run_key(digests: Mapping[str, str], config: TrainingConfiguration, retrain: int = 0) -> str:
    """The run's name: 12 hex digits of the images' digests, the configuration and the
    number of forced retrains."""
    return digest_of({"images": dict(sorted(digests.items())),
                      "training": config.model_dump(mode="json"), "retrain": retrain})[:12]


@dataclass(frozen=True)
class LearnerHost:
    """A host that may run learners, and the data tags its data directory holds."""

    name: str
    tags: frozenset[str]


@dataclass(frozen=True)
class Placement:
    aggregator: str  # the host the aggregator runs on
    learners: tuple[str, ...]  # one learner on each of these hosts


@dataclass(frozen=True)
class Unplaceable:
    """Not enough learner hosts hold the data: the project waits, and says why."""

    reason: str


def place(hosts: Sequence[LearnerHost], config: TrainingConfiguration, *,
          no_hosts: str = NO_LEARNER_HOST) -> Placement | Unplaceable:
    """One learner per learner host holding every data tag; at least min_available_clients.
    ``no_hosts``: the reason when there is no learner host at all (it says how to add one)."""
    if not hosts:
        return Unplaceable(no_hosts)
    wanted = set(config.data_tags)
    holding = [host.name for host in hosts if wanted <= host.tags]
    needed = config.min_available_clients
    if len(holding) < needed:
        tags = ", ".join(sorted(wanted)) or "(none)"
        have = "; ".join(f"{h.name}: {', '.join(sorted(h.tags)) or 'no tags'}" for h in hosts)
        hosts_hold = "1 learner host holds" if len(holding) == 1 else \
            f"{len(holding)} learner hosts hold"
        return Unplaceable(
            f"{hosts_hold} the data tags {tags}, min_available_clients is {needed} ({have}); "
            "add data for these tags to more learner hosts or lower min_available_clients")
    return Placement(aggregator=holding[0], learners=tuple(holding))


def aggregator_env(config: TrainingConfiguration, flavor: str) -> dict[str, str]:
    """The aggregator's environment (DESIGN §9)."""
    return {
        "FLOPS_ROUNDS": str(config.training_rounds),
        "FLOPS_MIN_AVAILABLE_CLIENTS": str(config.min_available_clients),
        "FLOPS_MIN_FIT_CLIENTS": str(config.min_fit_clients),
        "FLOPS_MIN_EVALUATE_CLIENTS": str(config.min_evaluate_clients),
        "FLOPS_MODEL_FLAVOR": flavor,
        "FLOPS_PORT": str(AGGREGATOR_PORT),
    }


def learner_env(config: TrainingConfiguration, aggregator: str, name: str) -> dict[str, str]:
    """A learner's environment: where the aggregator is (host:port), its data tags, its name."""
    return {
        "FLOPS_AGGREGATOR": aggregator,
        "FLOPS_DATA_TAGS": ",".join(config.data_tags),
        "FLOPS_LEARNER_NAME": name,
    }


def run_name(project: str, run: str) -> str:
    """The run's name (lower-case, <= 50 characters): its compose projects are
    ``<name>-<n>``, one per engine; every actor carries it as the label ``flops.run``."""
    if len(project) > 28:
        project = f"{project[:19]}-{digest_of(project)[:8]}"
    return f"flops-train-{project}-{run[:12]}"


@dataclass(frozen=True)
class ActorSpec:
    """One actor container: its service name, image, environment and data directory."""

    service: str  # "aggregator" or "learner-<host>"
    role: str  # aggregator | learner
    image: str
    env: dict[str, str]
    data_dir: str | None = None  # learners: mounted read-only at /flops/data
    node: str | None = None  # swarm: the id of the node its task is constrained to


@dataclass(frozen=True)
class TrainingSpec:
    """What one engine runs of a run: a compose project with some of its actors; or, on a
    swarm (``stack``), the whole run as one stack."""

    name: str  # the compose project or the stack
    project: str
    run: str  # the run's name (label flops.run)
    actors: tuple[ActorSpec, ...]
    publish: bool = False  # the aggregator's port is published (learners on other engines)
    stack: bool = False  # for `docker stack deploy`: an overlay network, node constraints


def learner_service(host: str) -> str:
    """The compose service of the learner on ``host`` (a DNS name on the run's network)."""
    return "learner-" + "".join(ch if ch.isalnum() else "-" for ch in host.lower())[:40]


def training_specs(project: str, name: str, *, hosts: Mapping[str, str],
                   data_dirs: Mapping[str, str], placement: Placement,
                   config: TrainingConfiguration, flavor: str, images: Mapping[str, str],
                   aggregator_address: str | None = None) -> list[TrainingSpec]:
    """The compose projects of a run: the aggregator's engine first (with the learners on it,
    reaching it as `aggregator` on the run's network), then one for each other engine, whose
    learners reach it at ``aggregator_address`` (its host's address and published port).
    ``hosts``: host name -> its engine (docker_host)."""
    engine = hosts[placement.aggregator]
    engines = [engine, *sorted({hosts[h] for h in placement.learners} - {engine})]
    specs = []
    for index, docker_host in enumerate(engines):
        actors = []
        if index == 0:
            actors.append(ActorSpec("aggregator", "aggregator", images["aggregator"],
                                    aggregator_env(config, flavor)))
        target = f"aggregator:{AGGREGATOR_PORT}" if index == 0 else aggregator_address or ""
        for host in placement.learners:
            if hosts[host] == docker_host:
                service = learner_service(host)
                actors.append(ActorSpec(service, "learner", images["learner"],
                                        learner_env(config, target, host), data_dirs[host]))
        specs.append(TrainingSpec(f"{name}-{index}", project, name, tuple(actors),
                                  publish=index == 0 and len(engines) > 1))
    return specs


def stack_name(run: str) -> str:
    """The stack of a run on a swarm: short, because the swarm refuses service names
    (``<stack>_<service>``) longer than 63 characters; the run's full name is its label."""
    return f"flops-train-{digest_of(run)[:12]}"


def swarm_training_spec(project: str, name: str, *, nodes: Mapping[str, str],
                        data_dirs: Mapping[str, str], placement: Placement,
                        config: TrainingConfiguration, flavor: str,
                        images: Mapping[str, str]) -> TrainingSpec:
    """The one stack of a run on a swarm: the aggregator constrained to its node, one learner
    per learner node (``learner-1``, ...: the node's hostname is too long for a service
    name; it is the learner's FLOPS_LEARNER_NAME), all on the run's overlay network, where
    the learners reach the aggregator by its service name. ``nodes``: host (node hostname)
    -> node id."""
    actors = [ActorSpec("aggregator", "aggregator", images["aggregator"],
                        aggregator_env(config, flavor), node=nodes[placement.aggregator])]
    for index, host in enumerate(placement.learners, start=1):
        actors.append(ActorSpec(f"learner-{index}", "learner", images["learner"],
                                learner_env(config, f"aggregator:{AGGREGATOR_PORT}", host),
                                data_dirs[host], node=nodes[host]))
    return TrainingSpec(stack_name(name), project, name, tuple(actors), stack=True)
