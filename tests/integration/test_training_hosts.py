"""Training runs across machines (issue 12): a compose inventory of two engines (the main one
and a second one in its own network namespace) and a real two-node swarm. Learners land on
the learner hosts or nodes only (read from each engine's own events), each reads its own
Parquet data (different row counts per host, in the per-learner example counts), the second
engine pulls its images from the registry, and the learners reach the aggregator across
engines: through its published port at the host's `address`, or over the run's overlay
network on the swarm, where a run with no node labelled flops-learner waits with a reason
until one is labelled. On the swarm the post-training steps follow: the trained-model image is
built on the other node (the model travels there through the registry) and served as a
service. Every container, service and network of the run is gone afterwards.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from actors_support import TOY_REPO, held_in_round_two
from support import GitDaemon, RegistryServer, run, wait_until

from integration.conftest import DockerCleanup
from integration.harness import (
    BuilderEvents,
    Publish,
    Workspace,
    apply_after_release,
    docker_now,
    kill_apply_in_round_two,
    sla_text,
)
from integration.swarm_bed import NODE_HOSTNAME, SecondEngine, Swarm

STEPS = "post_training_steps: [build_image_for_trained_model, deploy_trained_model_image]\n"
TRAINING = ("training_configuration:\n  data_tags: [dev]\n  training_rounds: 2\n"
            "  min_available_clients: {n}\n  min_fit_clients: {n}\n"
            "  min_evaluate_clients: {n}\n")
# The example, reading the learner's own data: Parquet files of points (x, y) under the tag.
DATA_MANAGER = '''"""Points y = 2x + 1 from the learner's own Parquet files (columns x, y)."""

from flops_utils.ml_repo_building_blocks import load_dataset


class DataManager:
    def get_data(self) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        dataset = load_dataset()
        points = list(zip(dataset["x"], dataset["y"], strict=True))
        cut = len(points) * 4 // 5
        return points[:cut], points[cut:]
'''


def repo_files() -> dict[str, str]:
    files = {p.name: p.read_text() for p in TOY_REPO.iterdir() if p.is_file()}
    return {**files, "data_manager.py": DATA_MANAGER}


def data_dir(root: Path, rows: int) -> str:
    """A data directory with ``rows`` points under the tag ``dev`` (80 % train on them)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    xs = [i / rows for i in range(rows)]
    (root / "dev").mkdir(parents=True)
    pq.write_table(pa.table({"x": xs, "y": [2 * x + 1 for x in xs]}), root / "dev" / "p.parquet")
    return str(root)


def labelled(engine: list[str], kind: str, label: str) -> list[str]:
    extra = ["--all"] if kind == "container" else []
    return run(["docker", *engine, kind, "ls", *extra, "--quiet", "--filter",
                f"label={label}"]).stdout.split()


def nothing_left(engines: list[list[str]], project: str) -> bool:
    """No container of the project's runs, no data probe and no run network on any
    engine."""
    return not any(labelled(engine, kind, label) for engine in engines
                   for kind, label in (("container", f"flops.project={project}"),
                                       ("container", "flops.role=data-probe"),
                                       ("network", "flops.run")))


@contextlib.contextmanager
def both_engines(tmp_path: Path, second: SecondEngine) -> Iterator[tuple[BuilderEvents, ...]]:
    """Docker's events for training actors on the main engine and on the second one."""
    with BuilderEvents.recording(tmp_path / "events-a.jsonl", label="flops.run") as on_a, \
            BuilderEvents.recording(tmp_path / "events-b.jsonl", label="flops.run",
                                    docker_host=second.docker_host) as on_b:
        yield on_a, on_b


def roles_created(events: BuilderEvents, project: str) -> list[tuple[str, str]]:
    return sorted((e.role, e.name) for e in events.events(project) if e.action == "create")


def test_two_engines_learners_only_on_learner_hosts_each_on_its_own_data(
    tmp_path: Path, second_engine: SecondEngine, testbed_registry: RegistryServer,
    base_image: str, publish: Publish, docker_cleanup: DockerCleanup,
) -> None:
    docker_cleanup.add_image_prefix(testbed_registry.host)
    url, commit = publish("twoengines", repo_files())
    hosts: list[dict[str, Any]] = [
        # the aggregator's host: learners on other engines reach it at `address`
        {"name": "main", "addons": ["image-builder", "FLOps-learner"],
         "data_dir": data_dir(tmp_path / "data-main", 30), "address": second_engine.host_addr},
        # holds the data too, but has no FLOps-learner addon: no learner
        {"name": "plain", "data_dir": data_dir(tmp_path / "data-plain", 10)},
        {"name": "b", "docker_host": second_engine.tcp_host, "addons": ["FLOps-learner"],
         "data_dir": data_dir(tmp_path / "data-b", 50)},
    ]
    ws = Workspace(tmp_path / "ws", testbed_registry.url, base_image, hosts=hosts)
    ws.sla("twoengines.yaml", sla_text(url, extra=TRAINING.format(n=2)))
    since = docker_now()
    with both_engines(tmp_path, second_engine) as (on_a, on_b):
        result = ws.run("apply", "--wait", timeout=1200)
    assert result.code == 0, result.stdout + result.stderr + ws.log("twoengines")
    row = ws.status()["twoengines"]
    assert row["phase"] == "trained" and row["commit"] == commit, row
    training = row["training"]
    assert training["aggregator"] == "main" and training["learners"] == ["main", "b"]
    assert [r["learners"] for r in training["rounds"]] == [2, 2]  # b reached main each round

    # From each engine's own events: the aggregator and one learner on the main engine, one
    # learner on the second engine, none for the host without the addon.
    on_main, on_second = roles_created(on_a, "twoengines"), roles_created(on_b, "twoengines")
    assert [role for role, _ in on_main] == ["aggregator", "learner"], on_main
    assert "learner-main" in on_main[1][1]
    assert [role for role, _ in on_second] == ["learner"], on_second
    assert "learner-b" in on_second[0][1]

    log = ws.log("twoengines")
    assert "aggregator on main, learners on main, b" in log
    # each learner trained on its own data: 80 % of 30 and of 50 rows
    assert "learners trained on b: 40 examples, main: 24 examples" in log, log

    learner_image = row["images"]["learner"]
    assert learner_image.startswith(f"{testbed_registry.host}/")
    pulled = second_engine.docker("events", "--since", since, "--until", docker_now(),
                                  "--filter", "type=image", "--filter", "event=pull",
                                  "--format", "{{.Actor.ID}}").stdout.split()
    assert learner_image in pulled, pulled  # the second engine pulled it from the registry
    assert not second_engine.has_image(row["images"]["aggregator"])
    assert nothing_left([[], ["-H", second_engine.docker_host]], "twoengines")
    second_engine.docker("image", "rm", learner_image, check=False)


def node_update(node: str, *labels: str) -> None:
    run(["docker", "node", "update", *(arg for label in labels
                                       for arg in ("--label-add", label)), node], timeout=60)


def test_a_two_node_swarm_trains_on_labelled_nodes_and_builds_and_serves_the_model(
    tmp_path: Path, second_engine: SecondEngine, testbed_registry: RegistryServer,
    testbed_git: GitDaemon, base_image: str, docker_cleanup: DockerCleanup,
) -> None:
    """The whole of stages 4-5 on a swarm: the run waits for a learner node, trains on the
    labelled one, then the trained-model image is built on the other node (the model reaches
    that builder through the registry, as a carrier image) and served as a swarm service."""
    docker_cleanup.add_image_prefix(testbed_registry.host)
    repo = testbed_git.make_ml_repo("owner/swarmtrain", repo_files())
    ws = Workspace(tmp_path / "ws", testbed_registry.url, base_image,
                   extra={"backend": "swarm", "retry_base": "1s", "retry_cap": "2s"})
    ws.sla("swarmtrain.yaml", sla_text(repo.url, extra=TRAINING.format(n=1) + STEPS))
    engines = [[], ["-H", second_engine.docker_host]]
    with Swarm.formed(second_engine.host_addr, worker=second_engine) as swarm:
        assert swarm.node_b is not None
        # A builds images and holds data, but is no learner node; B holds data and becomes
        # the learner node once it is labelled.
        node_update(swarm.node_a, "image-builder=true",
                    f"flops-data-dir={data_dir(tmp_path / 'data-a', 30)}")
        data_b = data_dir(tmp_path / 'data-b', 50)
        node_update(swarm.node_b, f"flops-data-dir={data_b}")
        node_a = run(["docker", "node", "inspect", swarm.node_a, "--format",
                      "{{.Description.Hostname}}"]).stdout.strip()
        try:
            with both_engines(tmp_path, second_engine) as (on_a, on_b):
                waiting = ws.run("apply", "--wait", timeout=1200)
                assert waiting.code == 1, waiting.stdout + waiting.stderr
                row = ws.status()["swarmtrain"]
                assert row["phase"] == "failed" and row["error_category"] == "placement", row
                assert "no learner node: no ready swarm node is labelled flops-learner=true" \
                    in row["error"] and row["attempts"] == 0, row
                assert "ok       learner nodes: none: a project with a training_configuration " \
                    "waits" in ws.run("doctor").stdout
                # From now on only B builds: the trained model has to travel to it.
                run(["docker", "node", "update", "--label-rm", "image-builder", swarm.node_a])
                node_update(swarm.node_b, "image-builder=true")
                with ws.watching() as watch:
                    node_update(swarm.node_b, "flops-learner=true")
                    row = ws.wait_row("swarmtrain", lambda r: r["serving"] is not None,
                                      timeout=600, what="trained and served once B is "
                                      "labelled", process=watch)
            assert row["phase"] == "trained" and row["commit"] == repo.commit, row
            doctor = ws.run("doctor").stdout
            assert "ok       learner nodes: 1 of 2 node(s)" in doctor, doctor
            assert f"{NODE_HOSTNAME} ({swarm.node_b}): data dir {data_b}" in doctor, doctor
            training = row["training"]
            assert training["aggregator"] == node_a and training["learners"] == [NODE_HOSTNAME]
            assert [r["round"] for r in training["rounds"]] == [1, 2]
            assert (Path(training["model"]) / "MLmodel").is_file()

            # From each node's engine: the aggregator's task on A (the manager), the one
            # learner's on B (the labelled node) over the overlay network.
            on_main = roles_created(on_a, "swarmtrain")
            on_second = roles_created(on_b, "swarmtrain")
            assert [role for role, _ in on_main] == ["aggregator"], on_main
            assert [role for role, _ in on_second] == ["learner"], on_second
            log = ws.log("swarmtrain")
            assert f"aggregator on {node_a}, learners on {NODE_HOSTNAME}" in log
            assert f"learners trained on {NODE_HOSTNAME}: 40 examples" in log, log

            # The trained-model image: built on B from the carrier image, in the registry.
            run_id, image = training["run"], training["model_image"]
            prefix = f"{testbed_registry.host}/owner/swarmtrain"
            assert image == f"{prefix}/trained-model:{repo.commit}-{run_id}", training
            carrier = f"{prefix}/trained-model-files:{repo.commit}-{run_id}"
            assert f"travels to the builder as image {carrier}" in log, log
            assert f"trained-model builder placed on node {swarm.node_b} ({NODE_HOSTNAME})" \
                in log, log
            assert f"model unpacked from {carrier}" in log, log
            for ref in (image, carrier):
                name, tag = ref.split("/", 1)[1].rsplit(":", 1)
                assert testbed_registry.manifest_exists(name, tag), ref
            assert not second_engine.has_image(carrier)  # the builder removed what it pulled

            # Served by a swarm service on the manager's node, answering the scoring protocol.
            serving = row["serving"]
            assert serving.startswith("http://127.0.0.1:"), row
            service = run(["docker", "service", "ls", "--quiet", "--filter",
                           "label=flops.serving=swarmtrain"]).stdout.split()
            assert len(service) == 1, service
            assert httpx.get(f"{serving}/health", timeout=10).status_code == 200
            answer = httpx.post(f"{serving}/invocations", json={"inputs": [[2.0], [3.0]]},
                                timeout=30)
            assert answer.status_code == 200, answer.text
            low, high = answer.json()["predictions"]
            assert math.isfinite(low) and math.isfinite(high) and high > low, answer.text

            def run_gone() -> bool:  # the swarm removes the tasks' containers in the background
                services = run(["docker", "service", "ls", "-q", "--filter",
                                "label=flops.run"]).stdout.split()
                return not services and nothing_left(engines, "swarmtrain")

            wait_until(run_gone, 60, 0.2, "the run's services, containers and networks to go")
            again = ws.run("apply", "--wait", timeout=600)
            assert again.code == 0, again.stdout + again.stderr
            again_row = ws.status()["swarmtrain"]
            assert again_row["serving"] == serving  # nothing started again
            assert again_row["training"]["run"] == run_id
            assert again_row["training"]["model_image"] == image
        finally:
            (ws.desired / "swarmtrain.yaml").unlink()
            pruned = ws.run("apply", timeout=600)
            wait_until(lambda: swarm.stacks() == [], 60, 0.2, "the builder stack to go")
        assert pruned.code == 0, pruned.stdout + pruned.stderr
        assert run(["docker", "service", "ls", "--quiet", "--filter",
                    "label=flops.serving=swarmtrain"]).stdout.split() == []
        assert labelled([], "container", "flops.serving=swarmtrain") == []


def test_a_reconciler_killed_mid_run_on_a_swarm_is_followed_to_the_end_by_the_next_one(
    tmp_path: Path, second_engine: SecondEngine, testbed_registry: RegistryServer,
    testbed_git: GitDaemon, base_image: str, docker_cleanup: DockerCleanup,
) -> None:
    """Killed (SIGKILL) while the learner on B is held in round 2, restarted: the next
    reconciler finds the run's services by label and follows them to the end. Over the whole
    test one aggregator task ran on A and one learner task on B (each engine's own events),
    and each round is in the log once."""
    docker_cleanup.add_image_prefix(testbed_registry.host)
    files = repo_files()
    repo = testbed_git.make_ml_repo("owner/swarmheld", {
        **files, "model_manager.py": held_in_round_two(files["model_manager.py"])})
    ws = Workspace(tmp_path / "ws", testbed_registry.url, base_image,
                   extra={"backend": "swarm", "retry_base": "1s", "retry_cap": "2s"})
    ws.sla("swarmheld.yaml", sla_text(repo.url, extra=TRAINING.format(n=1)))
    data_b = data_dir(tmp_path / "data-b", 50)
    with Swarm.formed(second_engine.host_addr, worker=second_engine) as swarm:
        assert swarm.node_b is not None
        node_update(swarm.node_a, "image-builder=true")
        node_update(swarm.node_b, "flops-learner=true", f"flops-data-dir={data_b}")
        try:
            with both_engines(tmp_path, second_engine) as (on_a, on_b):
                kill_apply_in_round_two(ws, "swarmheld")
                services = run(["docker", "service", "ls", "--quiet", "--filter",
                                "label=flops.run"]).stdout.split()
                assert len(services) == 2, "the run's services go on without the reconciler"
                apply_after_release(ws, "swarmheld",
                                    lambda: (Path(data_b) / "dev" / "GO").write_text("go"))
            assert [role for role, _ in roles_created(on_a, "swarmheld")] == ["aggregator"]
            assert [role for role, _ in roles_created(on_b, "swarmheld")] == ["learner"]
            row = ws.status()["swarmheld"]
            assert row["phase"] == "trained", row
            assert [r["round"] for r in row["training"]["rounds"]] == [1, 2]
            log = ws.log("swarmheld")
            assert log.count(" INFO train round 1/2 ") == 1, log
            assert log.count(" INFO train round 2/2 ") == 1, log
            wait_until(lambda: not run(["docker", "service", "ls", "-q", "--filter",
                                        "label=flops.run"]).stdout.split()
                       and nothing_left([[], ["-H", second_engine.docker_host]], "swarmheld"),
                       60, 0.2, "the run's services, containers and networks to go")
        finally:
            wait_until(lambda: swarm.stacks() == [], 60, 0.2, "the builder stack to go")
