"""Stages 4-5 as reconciled desired state (issue 12), on one engine: a project with a
`training_configuration` goes from `ready` to `training` to `trained`; one learner runs on each
FLOps-learner host that holds the data tags (here two [[hosts]] entries of the one engine,
each with a data directory of its own), the observer log has a line per round, `status --json`
the metrics, and the model is kept under the state directory. Bad placements wait with a reason
while other projects go on; a learner that fails mid-run fails the run naming it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from actors_support import SKLEARN_REPO, TOY_REPO, held_in_round_two, write_mnist_parquet
from support import RegistryServer

from integration.harness import (
    BuilderEvents,
    Workspace,
    apply_after_release,
    docker,
    kill_apply_in_round_two,
    sla_text,
)

pytestmark = pytest.mark.usefixtures("remove_registry_images")

TRAINING = ("training_configuration:\n  data_tags: [dev]\n  training_rounds: 2\n"
            "  min_available_clients: 2\n  min_fit_clients: 2\n  min_evaluate_clients: 2\n")


def example_files(**replace: str) -> dict[str, str]:
    files = {p.name: p.read_text() for p in TOY_REPO.iterdir() if p.is_file()}
    return {**files, **replace}


def learner_sites(root: Path, tags: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Inventory entries of the local engine: the first also builds images; each has a data
    directory holding the given tag folders."""
    hosts = []
    for index, (name, folders) in enumerate(tags.items()):
        data = root / "data" / name
        for tag in folders:
            (data / tag).mkdir(parents=True, exist_ok=True)
        data.mkdir(parents=True, exist_ok=True)
        addons = ["image-builder", "FLOps-learner"] if index == 0 else ["FLOps-learner"]
        hosts.append({"name": name, "addons": addons, "data_dir": str(data)})
    return hosts


def run_containers(project: str) -> list[str]:
    out = docker("ps", "-a", "-q", "--filter", f"label=flops.project={project}",
                 "--filter", "label=flops.run")
    return out.split()


def test_the_example_trains_on_two_learner_hosts_and_is_not_trained_again(
    tmp_path: Path, registry: RegistryServer, base_image: str, publish: Any,
) -> None:
    url, commit = publish("toytrain", example_files())
    ws = Workspace(tmp_path / "ws", registry.url, base_image,
                   hosts=learner_sites(tmp_path, {"site-a": ["dev"], "site-b": ["dev"]}))
    ws.sla("toytrain.yaml", sla_text(url, extra=TRAINING))
    result = ws.run("apply", "--wait", timeout=1200)
    assert result.code == 0, result.stdout + result.stderr + ws.log("toytrain")
    row = ws.status()["toytrain"]
    assert row["phase"] == "trained" and row["commit"] == commit, row
    training = row["training"]
    assert training["phase"] == "finished" and training["learners"] == ["site-a", "site-b"]
    assert [r["round"] for r in training["rounds"]] == [1, 2]
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["learners"] == 2 for r in training["rounds"])
    assert training["best_round"] in (1, 2)
    model = Path(training["model"])
    assert (model / "MLmodel").is_file() and model.is_relative_to(ws.state)
    result_json = json.loads((model.parent / "result.json").read_text())
    assert [r["round"] for r in result_json["rounds"]] == [1, 2]
    log = ws.log("toytrain")
    assert log.count(" INFO train round 1/2 loss=") == 1, log
    assert log.count(" INFO train round 2/2 loss=") == 1, log
    assert "aggregator on site-a, learners on site-a, site-b" in log
    assert run_containers("toytrain") == [], "the run's actors are removed when it ends"

    again = ws.run("apply", "--wait")
    assert again.code == 0
    assert ws.status()["toytrain"]["training"] == training  # the same run, not a new one
    assert ws.log("toytrain").count(" INFO train round 1/2 ") == 1
    plan = ws.run("plan")
    assert plan.code == 0 and "trained at" in plan.stdout, plan.stdout


@pytest.mark.parametrize(
    ("sites", "training", "fragment"),
    [
        ({}, TRAINING, "no learner host"),
        ({"site-a": ["other"], "site-b": ["other"]}, TRAINING,
         "0 learner hosts hold the data tags dev"),
        ({"site-a": ["dev"], "site-b": ["dev"]},
         TRAINING.replace("min_available_clients: 2", "min_available_clients: 3"),
         "2 learner hosts hold the data tags dev, min_available_clients is 3"),
    ],
    ids=["no-learner-host", "tag-on-no-host", "too-few-hosts"],
)
def test_a_run_that_cannot_be_placed_waits_with_a_reason_and_others_proceed(
    sites: dict[str, list[str]], training: str, fragment: str, tmp_path: Path,
    registry: RegistryServer, base_image: str, publish: Any,
) -> None:
    url, _ = publish("placed", example_files())
    hosts = learner_sites(tmp_path, sites) if sites else [
        {"name": "local", "addons": ["image-builder"]}]
    ws = Workspace(tmp_path / "ws", registry.url, base_image, hosts=hosts)
    ws.sla("placed.yaml", sla_text(url, extra=training))
    ws.sla("images-only.yaml", sla_text(url))  # no training_configuration: stops at ready
    result = ws.run("apply", "--wait", timeout=1200)
    assert result.code == 1
    rows = ws.status()
    assert rows["images-only"]["phase"] == "ready"
    row = rows["placed"]
    assert row["phase"] == "failed" and row["error_category"] == "placement", row
    assert fragment in row["error"], row["error"]
    assert row["attempts"] == 0 and row["waits"] == 1, row  # the site's to fix: never exhausts
    assert run_containers("placed") == []


BROKEN_FIT = '''
    def fit_model(self, epochs: int = 50, learning_rate: float = 0.01) -> int:
        self.fits = getattr(self, "fits", 0) + 1
        if self.fits == 2:
            raise RuntimeError("disk on fire")
        return len(self.train)

'''


def test_a_learner_that_fails_mid_run_fails_the_run_naming_it(
    tmp_path: Path, registry: RegistryServer, base_image: str, publish: Any,
) -> None:
    code = example_files()["model_manager.py"].replace(
        "    def evaluate_model(", BROKEN_FIT.lstrip("\n") + "    def evaluate_model(", 1)
    url, _ = publish("crashing", example_files(**{"model_manager.py": code}))
    ws = Workspace(tmp_path / "ws", registry.url, base_image,
                   hosts=learner_sites(tmp_path, {"site-a": ["dev"], "site-b": ["dev"]}))
    ws.sla("crashing.yaml", sla_text(url, extra=TRAINING))
    result = ws.run("apply", "--wait", timeout=1200)
    assert result.code == 1
    row = ws.status()["crashing"]
    assert row["phase"] == "failed" and row["error_category"] == "learner", row
    assert "failed in round 2" in row["error"] and "disk on fire" in row["error"], row
    assert row["training"]["phase"] == "failed"
    assert run_containers("crashing") == []
    assert " ERROR train " in ws.log("crashing")


def test_a_reconciler_killed_mid_run_is_followed_to_the_end_by_the_next_one(
    tmp_path: Path, registry: RegistryServer, base_image: str, publish: Any,
) -> None:
    """Killed (SIGKILL) while round 2 is held in the learners' fit_model, restarted: the
    run goes on with the same actors (one aggregator and two learners over the whole test,
    from Docker's events), finishes, and each round is in the log once."""
    code = held_in_round_two(example_files()["model_manager.py"])
    url, _ = publish("held", example_files(**{"model_manager.py": code}))
    sites = learner_sites(tmp_path, {"site-a": ["dev"], "site-b": ["dev"]})
    ws = Workspace(tmp_path / "ws", registry.url, base_image, hosts=sites)
    ws.sla("held.yaml", sla_text(url, extra=TRAINING))
    with BuilderEvents.recording(tmp_path / "events.jsonl", label="flops.run") as events:
        kill_apply_in_round_two(ws, "held")
        running = [c for c in run_containers("held")
                   if docker("inspect", "--format", "{{.State.Running}}", c).strip() == "true"]
        assert len(running) == 3, "the run's actors go on without the reconciler"

        def release() -> None:
            for site in sites:
                (Path(site["data_dir"]) / "dev" / "GO").write_text("go")

        apply_after_release(ws, "held", release)
        created = [e for e in events.events("held") if e.action == "create"]
    assert sorted(e.role for e in created) == ["aggregator", "learner", "learner"], created
    row = ws.status()["held"]
    assert row["phase"] == "trained", row
    assert [r["round"] for r in row["training"]["rounds"]] == [1, 2]
    log = ws.log("held")
    assert log.count(" INFO train round 1/2 ") == 1 and log.count(" INFO train round 2/2 ") == 1
    assert run_containers("held") == []


def test_a_trained_model_image_is_built_pushed_served_and_removed_with_the_project(
    tmp_path: Path, registry: RegistryServer, base_image: str, publish: Any,
) -> None:
    url, commit = publish("served", example_files())
    ws = Workspace(tmp_path / "ws", registry.url, base_image,
                   hosts=learner_sites(tmp_path, {"site-a": ["dev"], "site-b": ["dev"]}))
    steps = "post_training_steps: [build_image_for_trained_model, deploy_trained_model_image]\n"
    ws.sla("served.yaml", sla_text(url, extra=TRAINING + steps))
    try:
        result = ws.run("apply", "--wait", timeout=1200)
        assert result.code == 0, result.stdout + result.stderr + ws.log("served")
        row = ws.status()["served"]
        assert row["phase"] == "trained", row
        run = row["training"]["run"]
        image = row["training"]["model_image"]
        assert image == f"{registry.host}/served-owner/served/trained-model:{commit}-{run}"
        name, tag = image.split("/", 1)[1].rsplit(":", 1)
        assert registry.manifest_exists(name, tag)
        labels = json.loads(docker("image", "inspect", image, "--format",
                                   "{{json .Config.Labels}}"))
        assert labels["flops.run"] == run and labels["flops.best-round"] == str(
            row["training"]["best_round"])
        serving = row["serving"]
        assert serving and serving.startswith("http://127.0.0.1:"), row
        assert httpx.get(f"{serving}/health", timeout=10).status_code == 200
        answer = httpx.post(f"{serving}/invocations", json={"inputs": [[2.0], [3.0]]},
                            timeout=30)
        assert answer.status_code == 200, answer.text
        low, high = answer.json()["predictions"]
        assert low == pytest.approx(5.0, abs=0.5) and high == pytest.approx(7.0, abs=0.5)
        again = ws.run("apply", "--wait")
        assert again.code == 0 and ws.status()["served"]["serving"] == serving  # kept
    finally:
        (ws.desired / "served.yaml").unlink()
        pruned = ws.run("apply")
    assert pruned.code == 0, pruned.stdout + pruned.stderr
    assert docker("ps", "-a", "-q", "--filter", "label=flops.serving=served").split() == []
    assert "model server" in ws.log("served") and "removed" in ws.log("served")


def test_an_sklearn_flops_repository_trains_on_parquet_and_its_model_is_built_and_served(
    tmp_path: Path, registry: RegistryServer, base_image: str, publish: Any,
) -> None:
    """The sklearn repository in the FLOps layout (conda.yaml, flops_utils), each learner
    host with its own MNIST-shaped Parquet data under the tag mnist: trained by the
    reconciler, its model an image in the registry, served, answering a scoring request
    for 28x28 images."""
    files = {p.relative_to(SKLEARN_REPO).as_posix(): p.read_text()
             for p in sorted(SKLEARN_REPO.rglob("*")) if p.is_file()
             and "__pycache__" not in p.parts}
    url, commit = publish("digits", files)
    sites = learner_sites(tmp_path, {"site-a": ["mnist"], "site-b": ["mnist"]})
    for seed, site in enumerate(sites):
        write_mnist_parquet(Path(site["data_dir"]) / "mnist" / "part-0.parquet", rows=200,
                            seed=seed)
    ws = Workspace(tmp_path / "ws", registry.url, base_image, hosts=sites)
    steps = "post_training_steps: [build_image_for_trained_model, deploy_trained_model_image]\n"
    ws.sla("digits.yaml", sla_text(url, extra=TRAINING.replace("[dev]", "[mnist]") + steps))
    try:
        result = ws.run("apply", "--wait", timeout=1800)
        assert result.code == 0, result.stdout + result.stderr + ws.log("digits")
        row = ws.status()["digits"]
        assert row["phase"] == "trained", row
        training = row["training"]
        assert [r["round"] for r in training["rounds"]] == [1, 2]
        assert training["rounds"][-1]["accuracy"] > 0.5, training  # 10 easy classes
        log = ws.log("digits")
        assert log.count(" INFO train round 1/2 ") == 1 and log.count(" INFO train round 2/2 ") == 1
        import mlflow.sklearn
        import numpy as np

        classifier = mlflow.sklearn.load_model(training["model"])
        assert classifier.predict(np.zeros((2, 28 * 28))).shape == (2,)

        image = training["model_image"]
        assert image == f"{registry.host}/digits-owner/digits/trained-model:{commit}-" \
            f"{training['run']}"
        name, tag = image.split("/", 1)[1].rsplit(":", 1)
        assert registry.manifest_exists(name, tag)
        serving = row["serving"]
        assert httpx.get(f"{serving}/health", timeout=10).status_code == 200
        answer = httpx.post(f"{serving}/invocations",
                            json={"inputs": [[0.0] * (28 * 28), [255.0] * (28 * 28)]},
                            timeout=30)
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert len(predictions) == 2 and all(0 <= int(p) <= 9 for p in predictions), predictions
    finally:
        (ws.desired / "digits.yaml").unlink()
        pruned = ws.run("apply")
    assert pruned.code == 0, pruned.stdout + pruned.stderr
    assert docker("ps", "-a", "-q", "--filter", "label=flops.serving=digits").split() == []
