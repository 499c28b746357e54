"""Stages 4 and 5, decided purely: whether a project trains, the key of a training run, where
its learners and its aggregator go, and what the actors are told (DESIGN §9, §10).

Decision: a run is named by what it trains (the images' digests) and how (the training
configuration, data tags included), so the same inputs always name the same run: a resync or a
restart finds the run it already finished and never starts it again, and only a new commit, a
changed configuration or an explicit `retrain` (a counter in the key) makes a new one.
Placement follows the data: one learner on every learner host that holds all of the project's
data tags, and the aggregator on the first of them (so a single-host inventory trains with no
network set-up at all).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reconciler.core.config import LEARNER_ADDON
from reconciler.core.naming import digest_of
from reconciler.core.sla import ProjectSla, TrainingConfiguration

AGGREGATOR_PORT = 8080


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


def place(hosts: Sequence[LearnerHost], config: TrainingConfiguration) -> Placement | Unplaceable:
    """One learner per learner host holding every data tag; at least min_available_clients."""
    if not hosts:
        return Unplaceable(f"no learner host: no [[hosts]] entry has the {LEARNER_ADDON} addon "
                           "(and a data_dir); add one (swarm: label a node flops-learner=true)")
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


@dataclass(frozen=True)
class TrainingSpec:
    """What one engine runs of a run: a compose project with some of its actors."""

    name: str  # the compose project
    project: str
    run: str  # the run's name (label flops.run)
    actors: tuple[ActorSpec, ...]
    publish: bool = False  # the aggregator's port is published (learners on other engines)


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
