"""Smoke test of the integration fixtures against the real parts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from support import (
    BUILDER_LABEL,
    DockerSnapshot,
    GitDaemon,
    RegistryServer,
    docker_image_exists,
    git,
    leftover_resources,
    remove_resources,
    run,
)

FilesHelper = Callable[..., dict[str, str]]


def test_registry_answers_v2(registry: RegistryServer) -> None:
    resp = httpx.get(f"{registry.url}/v2/", timeout=5)
    assert resp.status_code == 200
    assert registry.url == f"http://{registry.host}"
    assert registry.host.startswith("127.0.0.1:")


def test_pushed_image_is_seen_by_manifest_exists(
    registry: RegistryServer, base_image: str, docker_cleanup: object
) -> None:
    ref = f"{registry.host}/smoke/base:1"
    assert not registry.manifest_exists("smoke/base", "1")
    run(["docker", "tag", base_image, ref])
    try:
        run(["docker", "push", ref], timeout=300)
        assert registry.manifest_exists("smoke/base", "1")
        assert not registry.manifest_exists("smoke/base", "2")
        assert not registry.manifest_exists("smoke/other", "1")
    finally:
        run(["docker", "image", "rm", ref])
    assert not docker_image_exists(ref)
    assert docker_image_exists(base_image)


def test_git_remote_serves_work_repo(
    git_remote: GitDaemon, flops_ml_repo_files: FilesHelper
) -> None:
    files = flops_ml_repo_files("sklearn", extra_deps=["numpy"])
    repo = git_remote.make_ml_repo("acme/mnist-sklearn", files)
    assert repo.url == f"git://127.0.0.1:{git_remote.port}/acme/mnist-sklearn.git"
    assert (repo.work / ".git").is_dir()
    assert repo.bare.is_dir() and not (repo.bare / ".git").exists()

    listing = run(["git", "ls-remote", repo.url]).stdout
    refs = {ref: sha for sha, ref in (line.split("\t") for line in listing.splitlines())}
    assert refs["refs/heads/main"] == repo.commit
    assert refs["HEAD"] == repo.commit

    new_sha = repo.push_commit({"extra.txt": "x\n"}, message="second")
    assert new_sha != refs["HEAD"]
    listing = run(["git", "ls-remote", repo.url, "refs/heads/main"]).stdout
    assert listing.split("\t")[0] == new_sha
    assert git(["show", f"{new_sha}:model_manager.py"], cwd=repo.bare).startswith('"""')


def test_same_files_give_same_commit(
    git_remote: GitDaemon, flops_ml_repo_files: FilesHelper
) -> None:
    a = git_remote.make_ml_repo("a/repo", flops_ml_repo_files())
    b = git_remote.make_ml_repo("b/repo", flops_ml_repo_files())
    c = git_remote.make_ml_repo("c/repo", flops_ml_repo_files(drop="data_manager.py"))
    assert a.commit == b.commit != c.commit


def test_ml_repo_files_are_a_working_model(
    flops_ml_repo_files: FilesHelper, tmp_path: Path
) -> None:
    files = flops_ml_repo_files()
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    script = (
        "from model_manager import ModelManager\n"
        "m = ModelManager(); m.set_model_data()\n"
        "before = m.evaluate_model()[0]\n"
        "n = m.fit_model(); loss, acc, k = m.evaluate_model()\n"
        "m.set_model_parameters(m.get_model_parameters())\n"
        "assert n == 32 and k == 8 and loss < before, (n, k, loss, before)\n"
        "print('ok')\n"
    )
    out = run(["python3", "-c", script], cwd=tmp_path).stdout
    assert out.strip() == "ok"


def test_compose_plugin(compose_plugin: str) -> None:
    assert compose_plugin.split(".")[0] in {"2", "v2"}
    out = run(["docker", "compose", "version"]).stdout
    assert "Docker Compose version" in out


def test_leftover_detection_sees_builder_and_test_resources(base_image: str) -> None:
    before = DockerSnapshot.take()
    project = f"flops-infra-smoke-{os.getpid()}"
    builder = run(
        [
            "docker",
            "create",
            "--label",
            BUILDER_LABEL,
            "--label",
            f"com.docker.compose.project={project}",
            base_image,
            "true",
        ]
    ).stdout.strip()
    # The builder's compose network carries only compose's label, not the builder's.
    network = run(
        ["docker", "network", "create", "--label", f"com.docker.compose.project={project}", project]
    ).stdout.strip()
    volume = run(["docker", "volume", "create", "--label", "flops.test=1"]).stdout.strip()
    try:
        found_builder, found_test = leftover_resources(before)
        assert found_builder["container"] == {builder}
        assert found_builder["network"] == {network}
        assert found_test["volume"] == {volume}
        assert not found_test.get("container") and not found_test.get("network")
    finally:
        remove_resources({"container": {builder}, "network": {network}, "volume": {volume}})
    found_builder, found_test = leftover_resources(before)
    assert not any(found_builder.values()) and not any(found_test.values())


def _pytest_without_engine(ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rs",
            f"{__file__}::test_compose_plugin",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_missing_engine_skips_locally_and_fails_under_ci() -> None:
    local = _pytest_without_engine(ci=False)
    assert local.returncode == 0 and "1 skipped" in local.stdout, local.stdout
    assert "no Docker engine" in local.stdout
    ci = _pytest_without_engine(ci=True)
    assert ci.returncode == 1 and "1 error" in ci.stdout, ci.stdout
    assert "integration prerequisite missing under CI" in ci.stdout
