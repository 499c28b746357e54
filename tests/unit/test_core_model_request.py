"""A trained model's image build, decided purely: its reference, its labels, its request and the
rendered Dockerfile (reconciler/core/model_request.py, templates/Dockerfile.model.j2)."""

from __future__ import annotations

import json
import math

from reconciler.core.model_request import (
    trained_model_labels,
    trained_model_ref,
    trained_model_request,
)
from reconciler.core.render import make_environment, render_model_dockerfile
from reconciler.edges.settings import template_dirs

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LEARNER = f"flops.local/owner/repo/learner:{COMMIT}"


def test_the_reference_is_the_learner_images_with_role_and_run() -> None:
    ref = trained_model_ref("flops.local", "https://github.com/Owner/Repo.git", COMMIT, "AbC123")
    assert ref == f"flops.local/owner/repo/trained-model:{COMMIT}-abc123"
    scp = trained_model_ref("127.0.0.1:5000", "git@github.com:o/r.git", COMMIT, "r1")
    assert scp == f"127.0.0.1:5000/o/r/trained-model:{COMMIT}-r1"


def test_the_labels_name_the_source_the_run_and_its_metrics() -> None:
    labels = trained_model_labels(source_url="https://github.com/o/r.git", commit=COMMIT,
                                  run="r1", best_round=2, accuracy=0.875, loss=math.nan,
                                  build_key="k")
    assert labels["org.opencontainers.image.source"] == "https://github.com/o/r.git"
    assert labels["org.opencontainers.image.revision"] == COMMIT
    assert (labels["flops.run"], labels["flops.best-round"]) == ("r1", "2")
    assert (labels["flops.accuracy"], labels["flops.loss"]) == ("0.875", "")
    assert labels["flops.build-key"] == "k"
    assert "flops.build-key" not in trained_model_labels(
        source_url="u", commit=COMMIT, run="r", best_round=None, accuracy=None, loss=None)


def test_the_dockerfile_starts_from_the_learner_image_and_serves_the_model() -> None:
    text = render_model_dockerfile(make_environment(template_dirs(None)), base_image=LEARNER)
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[0] == f"FROM {LEARNER}"
    assert "COPY model/ /flops/model/" in lines and "COPY runtime/ /opt/flops/runtime/" in lines
    assert "EXPOSE 8080" in lines
    assert lines[-1] == 'CMD ["python3", "-m", "flops_actor.serve"]'
    # Its one RUN step loads the model as the server will; nothing is fetched.
    assert [line for line in lines if line.startswith(("RUN", "ARG"))] == [
        'RUN ["python3", "-m", "flops_actor.serve", "--check"]']
    # The health check is exec form: a JSON array, a python3 one-liner asking /health.
    check = next(line for line in lines if line.strip().startswith("CMD [\"python3\", \"-c\""))
    argv = json.loads(check.strip().removeprefix("CMD "))
    assert argv[:2] == ["python3", "-c"] and "/health" in argv[2]
    compile(argv[2], "healthcheck", "exec")


def test_the_request_is_a_trained_model_build_without_site_settings() -> None:
    env = make_environment(template_dirs(None))
    request = trained_model_request(
        env, project="demo", source_url="https://github.com/o/r.git", commit=COMMIT,
        learner_image=LEARNER, image=f"flops.local/o/r/trained-model:{COMMIT}-r1",
        labels={"flops.run": "r1"}, push=False, build_key="r1")
    assert request.kind == "trained-model"
    assert request.images == {"trained-model": f"flops.local/o/r/trained-model:{COMMIT}-r1"}
    assert request.model_from == LEARNER and request.model_dir == "/flops/model"
    assert request.model_dockerfile == render_model_dockerfile(env, base_image=LEARNER)
    assert request.push is False and request.labels == {"flops.run": "r1"}
    assert request.build_args == {} and request.ca_bundle == ""
