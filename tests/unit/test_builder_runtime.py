"""The FL runtime in the images (reconciler.builder.runtime, runtime_image, runtime_imports):
what goes into .flops/runtime, what the aggregator adds, the runtime image's name, and the
check of what a repository imports from flops_utils."""

from __future__ import annotations

from pathlib import Path

import pytest
from builder_support import FakeEngine

from reconciler.builder.checks import check_structure
from reconciler.builder.runtime import (
    actors_dir,
    aggregator_extra,
    load_runtime,
    provided_names,
)
from reconciler.builder.runtime_image import (
    IN_PLACE_ARG,
    IN_PLACE_STAGE,
    ensure_runtime_image,
    runtime_image_ref,
)
from reconciler.builder.runtime_imports import check_runtime_imports
from reconciler.core.render import make_environment, render_runtime_dockerfile
from reconciler.edges.settings import template_dirs

ROOT = Path(__file__).resolve().parents[2]


def test_the_runtime_is_this_projects_actors_folder_byte_for_byte() -> None:
    runtime = load_runtime()
    assert actors_dir() == ROOT / "actors"
    assert runtime.files["flops_actor/learner.py"] == (ROOT / "actors/flops_actor/learner.py"
                                                       ).read_bytes()
    assert "flops_utils/provided.json" in runtime.files
    assert not any("__pycache__" in name for name in runtime.files)
    assert any(line.startswith("flwr==") for line in runtime.requirements)
    assert any(line.startswith("datasets==3.") for line in runtime.requirements)
    assert [line.split("==")[0] for line in runtime.aggregator_requirements] == ["mlflow-skinny"]


@pytest.mark.parametrize(
    ("lines", "uninstall"),
    [
        (["numpy==1.26"], []),
        (["MLflow==2.12.1", "numpy"], ["mlflow-skinny"]),  # the repository's own mlflow
        (["mlflow-skinny>=2"], []),  # the same distribution: pip upgrades or keeps it
    ],
)
def test_a_repository_mlflow_replaces_the_runtimes_mlflow_skinny(
    lines: list[str], uninstall: list[str]
) -> None:
    assert load_runtime().uninstall_before(lines) == uninstall


def test_the_aggregator_adds_the_lines_the_learner_went_without() -> None:
    assert aggregator_extra(["numpy==1.26"], ["mlflow==2.12.1", "numpy==1.26"]) == [
        "mlflow==2.12.1"]
    assert aggregator_extra(["a", "b"], ["a", "b"]) == []


def test_the_runtime_image_is_named_by_base_dockerfile_and_pins_and_built_once() -> None:
    runtime = load_runtime()
    ref = runtime_image_ref("sha256:1", "FROM a", runtime)
    assert ref.startswith("flops-runtime:") and len(ref.split(":")[1]) == 16
    assert ref == runtime_image_ref("sha256:1", "FROM a", runtime)
    assert len({ref, runtime_image_ref("sha256:2", "FROM a", runtime),
                runtime_image_ref("sha256:1", "FROM b", runtime)}) == 3
    engine = FakeEngine()
    first, built = ensure_runtime_image(engine, "base", "FROM base AS actor-base\n", runtime,
                                        ca_bundle="PEM")
    assert built and engine.runtime_builds == [first]
    files = engine.contexts[first]
    assert set(files) == {".flops/Dockerfile.runtime", ".flops/ca-bundle.pem",
                          ".flops/requirements-runtime-image.txt"}
    pins = files[".flops/requirements-runtime-image.txt"].decode().splitlines()
    assert pins == list(runtime.image_requirements)
    assert any(pin.startswith("mlflow-skinny==") for pin in pins)
    again, built = ensure_runtime_image(engine, "base", "FROM base AS actor-base\n", runtime,
                                        ca_bundle="another bundle")
    assert (again, built) == (first, False)  # the CA decides how, not what: the same image
    assert engine.runtime_builds == [first]


def test_without_site_settings_the_runtime_installs_in_place_with_them_in_a_side_stage(
) -> None:
    runtime = load_runtime()
    dockerfile = render_runtime_dockerfile(make_environment(template_dirs(None)),
                                           base_image="base")
    plain, proxied = FakeEngine(), FakeEngine()
    ref, _ = ensure_runtime_image(plain, "base", dockerfile, runtime)
    assert plain.options[ref]["target"] == IN_PLACE_STAGE
    assert plain.options[ref]["build_args"] == {IN_PLACE_ARG: "1"}
    secret = {"HTTPS_PROXY": "http://user:secret@proxy:3128"}
    same, _ = ensure_runtime_image(proxied, "base", dockerfile, runtime, build_args=secret)
    assert same == ref  # one Dockerfile, one key: either image serves every site
    assert proxied.options[ref]["target"] is None  # the last stage: the side stage's copy
    assert proxied.options[ref]["build_args"] == {**secret, IN_PLACE_ARG: "0"}
    stages = [line.split()[-1] for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert stages.index(IN_PLACE_STAGE) < stages.index("runtime-install") < stages.index(
        "runtime")  # the in-place stage comes before (the classic builder stops at a target)
    in_place = dockerfile.split(f"AS {IN_PLACE_STAGE}")[1].split("FROM ")[0]
    assert "ARG PIP_INDEX_URL" not in in_place and "HTTPS_PROXY" not in in_place


MODEL_MANAGER = """\
from flops_utils.ml_repo_templates import ModelManagerTemplate
import flops_utils.logging
from flops_utils import ml_repo_building_blocks
from flops_utils.ml_repo_building_blocks import load_dataset, load_everything
from flops_utils.secret_sauce import magic
"""


def test_flops_utils_names_we_do_not_provide_are_repository_problems(tmp_path: Path) -> None:
    (tmp_path / "model_manager.py").write_text(MODEL_MANAGER)
    (tmp_path / "helpers").mkdir()
    (tmp_path / "helpers" / "x.py").write_text("import flops_utils.mqtt_topics\n")
    problems = check_runtime_imports(tmp_path)
    assert [(p.category, p.file, p.line) for p in problems] == [
        ("repo", "model_manager.py", 4), ("repo", "model_manager.py", 5),
        ("repo", "helpers/x.py", 1)]
    assert problems[0].message == (
        "imports load_everything from flops_utils.ml_repo_building_blocks, which these images "
        "do not provide (flops_utils.ml_repo_building_blocks provides DataError, load_dataset)")
    assert "secret_sauce" in problems[1].message
    assert "imports flops_utils.mqtt_topics, a module of flops_utils these images do not " \
           "provide" in problems[2].message
    # The structure check (the builder's `check` stage and check-repo) reports them too.
    assert {p.line for p in check_structure(tmp_path) if p.file == "model_manager.py"} >= {4, 5}


def test_every_name_public_flops_repositories_import_is_provided() -> None:
    provided = provided_names()
    for module, name in [("flops_utils.ml_repo_templates", "ModelManagerTemplate"),
                         ("flops_utils.ml_repo_templates", "DataManagerTemplate"),
                         ("flops_utils.ml_repo_building_blocks", "load_dataset"),
                         ("flops_utils.flops_learner_files_wrapper", "load_ml_data"),
                         ("flops_utils.logging", "logger")]:
        assert name in provided[module], (module, name)
