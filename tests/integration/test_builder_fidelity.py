"""Stage 3 through real builds: dependency repairs land in the images and their labels, a
code-only commit reuses the dependency layer, a package the base image has is upgraded in
place, and dependency problems fail before building. Dependencies come from a package index
the test serves (fake pure-Python wheels)."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from support import GitDaemon, RegistryServer, run

from integration.harness import (
    REMOVES_REGISTRY_IMAGES,
    MlFiles,
    PackageIndex,
    Publish,
    Workspace,
    docker,
    ensure_test_runtime,
    sla_text,
)

pytestmark = REMOVES_REGISTRY_IMAGES


def site(tmp_path: Path, registry: RegistryServer, base_image: str, index: PackageIndex,
         extra: str = "") -> Workspace:
    ws = Workspace(tmp_path / "ws", registry.url, base_image)
    ws.build["pip_index_url"] = index.url
    ws.write_config()
    ws.config.write_text(ws.config.read_text() + extra)
    return ws


def python_says(image: str, code: str) -> str:
    return docker("run", "--rm", "--entrypoint", "python3", image, "-c", code).strip()


def test_repairs_are_applied_labelled_and_logged(
    tmp_path: Path, registry: RegistryServer, base_image: str, publish: Publish,
    ml_files: MlFiles, package_index: PackageIndex,
) -> None:
    for name, version in (("mlflow", "2.9.2"), ("torch", "2.1.0"), ("torchvision", "0.16.0")):
        package_index.add(name, version)
    files = ml_files(marker="repairs", extra_deps=["mlflow==2.9.2", "torch==2.1.0"])
    files["vision.py"] = "import torchvision\n\nTRANSFORMS = torchvision\n"
    url, _ = publish("repairs", files)
    ws = site(tmp_path, registry, base_image, package_index)
    ws.sla("repairs.yaml", sla_text(url, flavor="pytorch"))
    result = ws.run("apply", "--wait")
    assert result.code == 0, result.stdout + ws.log("repairs")
    images = ws.status()["repairs"]["images"]

    # The repository's mlflow is removed for the learner (no module imports it), which
    # keeps the runtime's mlflow-skinny; the aggregator gets the repository's mlflow, which
    # replaces the runtime's mlflow-skinny (one `mlflow` module, never two distributions).
    probe = ("import importlib.metadata as m, torchvision\n"
             "def v(name):\n"
             "    try: return m.version(name)\n"
             "    except m.PackageNotFoundError: return '-'\n"
             "print(v('mlflow'), v('mlflow-skinny') != '-', torchvision.VERSION)")
    assert python_says(images["learner"], probe) == "- True 0.16.0"
    assert python_says(images["aggregator"], probe) == "2.9.2 False 0.16.0"

    labels = json.loads(docker("image", "inspect", images["learner"], "--format",
                               "{{json .Config.Labels}}"))
    repairs = json.loads(labels["flops.repairs"])
    mlflow = next(r for r in repairs if "mlflow" in r["summary"])
    assert any(line.startswith("- mlflow==2.9.2") for line in mlflow["diff"])
    assert any("torchvision" in r["summary"] for r in repairs)

    # State and `status --json` keep the repairs with their diffs (the label holds the
    # learner's share of them) and the base image: none chosen, no python map is configured.
    recorded = ws.record("repairs")
    row = ws.status()["repairs"]
    for kept in (recorded, row):
        assert [r for r in kept["repair_diffs"] if "learner" in r["roles"]] == repairs
        assert [r["summary"] for r in kept["repair_diffs"]] == kept["repairs"]
        assert kept["base_image"] is None

    log = ws.log("repairs").splitlines()
    warn = next(i for i, line in enumerate(log)
                if " WARN dependencies " in line and "mlflow" in line)
    assert log[warn + 1].startswith("    - mlflow==2.9.2"), log[warn:warn + 3]


def test_a_code_only_commit_reuses_the_dependency_layer(
    tmp_path: Path, registry: RegistryServer, base_image: str, git_remote: GitDaemon,
    ml_files: MlFiles, package_index: PackageIndex,
) -> None:
    package_index.add("flops-testdep", "1.0")
    repo = git_remote.make_ml_repo(
        "layers-owner/layers", ml_files(marker="layers", extra_deps=["flops-testdep==1.0"]))
    ws = site(tmp_path, registry, base_image, package_index)
    # Pinned to the first commit: a one-shot apply would otherwise follow the branch.
    ws.sla("cold.yaml", sla_text(repo.url, extra=f"ml_repo_ref: {repo.commit}\n"))
    assert ws.run("apply", "--wait").code == 0, ws.log("cold")
    code = (repo.work / "model_manager.py").read_text()
    repo.push_commit({"model_manager.py": code + "\n# tuned\n"})
    ws.sla("warm.yaml", sla_text(repo.url))  # resolves the new HEAD: a code-only change
    assert ws.run("apply", "--wait").code == 0, ws.log("warm")
    rows = ws.status()
    assert rows["cold"]["commit"] != rows["warm"]["commit"]

    def layers(ref: str) -> list[str]:
        out = docker("image", "inspect", ref, "--format", "{{json .RootFS.Layers}}")
        return list(json.loads(out))

    cold = layers(rows["cold"]["images"]["learner"])
    warm = layers(rows["warm"]["images"]["learner"])
    # Everything up to the dependency install is shared; only the code layer differs.
    assert cold[:-1] == warm[:-1] and cold[-1] != warm[-1]
    print(f"\nbuild:learner cold {rows['cold']['timings']['build:learner']:.2f}s, "
          f"code-only {rows['warm']['timings']['build:learner']:.2f}s")


def test_a_package_the_base_image_has_is_upgraded_in_place(
    tmp_path: Path, registry: RegistryServer, base_image: str, publish: Publish,
    ml_files: MlFiles, package_index: PackageIndex, docker_cleanup: Any,
) -> None:
    # The site's base has flops-basepkg 1.0 installed with pip (a module of its own, `legacy`,
    # comes with 1.0 only); the project pins 2.0. The dependencies are installed in a stage of
    # their own and copied into the image, which must not keep 1.0's files beside 2.0's.
    package_index.add("flops-basepkg", "1.0", {"flops_basepkg": 'VERSION = "1.0"\n',
                                               "legacy": "OLD = True\n"})
    package_index.add("flops-basepkg", "2.0")
    name = f"flops-test-pipbase-{uuid.uuid4().hex[:12]}"
    docker_cleanup.add_image_prefix(f"{name}:")
    context = tmp_path / "pip-base"
    context.mkdir()
    wheel = "flops_basepkg-1.0-py3-none-any.whl"
    shutil.copy(package_index.root / "simple" / "flops-basepkg" / wheel, context / wheel)
    (context / "Dockerfile").write_text(
        f"FROM {base_image}\nCOPY {wheel} /tmp/\n"
        f"RUN PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --no-index /tmp/{wheel} "
        f"&& rm /tmp/{wheel}\n")
    run(["docker", "build", "--quiet", "--tag", f"{name}:latest", str(context)],
        env={"DOCKER_BUILDKIT": "0"}, timeout=300)
    pip_base = f"{name}:latest"
    assert python_says(pip_base, "import legacy, flops_basepkg; print(flops_basepkg.VERSION)") \
        == "1.0"

    url, _ = publish("upgrade", ml_files(marker="upgrade", extra_deps=["flops-basepkg==2.0"]))
    ensure_test_runtime(pip_base)  # from PyPI: the site's index here has only the test's
    ws = site(tmp_path, registry, pip_base, package_index)
    ws.sla("upgrade.yaml", sla_text(url))
    result = ws.run("apply", "--wait")
    assert result.code == 0, result.stdout + result.stderr + ws.log("upgrade")
    probe = ("import importlib.metadata as m, importlib.util as u, flops_basepkg; "
             "print(flops_basepkg.VERSION, u.find_spec('legacy') is not None, sorted("
             "d.version for d in m.distributions() if d.metadata['Name'] == 'flops-basepkg'))")
    for ref in ws.status()["upgrade"]["images"].values():
        assert python_says(ref, probe) == "2.0 False ['2.0']", ref


def test_conflicting_pins_and_an_unmatched_python_pin_fail_before_building(
    tmp_path: Path, registry: RegistryServer, base_image: str, publish: Publish,
    ml_files: MlFiles, package_index: PackageIndex,
) -> None:
    conflict_url, _ = publish("conflict", ml_files(
        marker="conflict", extra_deps=["flops-testdep==1.0", "flops_testdep==2.0"]))
    pinned_url, _ = publish("pinned", ml_files(marker="pinned"))  # conda.yaml pins 3.11
    ws = site(tmp_path, registry, base_image, package_index,
              extra=f'[images.python]\n"3.9" = "{base_image}"\n')
    ws.sla("conflict.yaml", sla_text(conflict_url))
    ws.sla("pinned.yaml", sla_text(pinned_url))
    assert ws.run("apply", "--wait").code == 1
    rows = ws.status()
    conflict, pinned = rows["conflict"], rows["pinned"]
    assert conflict["phase"] == "failed" and conflict["error"].startswith("dependencies:")
    assert "flops-testdep==1.0" in conflict["error"] and "flops_testdep==2.0" in conflict["error"]
    assert pinned["phase"] == "failed" and "3.11" in pinned["error"] and "3.9" in pinned["error"]
    for project in ("conflict", "pinned"):
        assert " INFO build:learner started" not in ws.log(project)
