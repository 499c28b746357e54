"""The model carrier on real parts: the reconciler pushes a model directory to a real registry
v2 server through its API, and the builder's code takes it back out through the real Docker
engine (pull, archive of /model, unpack): the same files, links still links, and nothing left
in the engine. Pushing the same model again makes the same manifest.
"""

from __future__ import annotations

import os
from pathlib import Path

from support import RegistryServer, run

from integration.conftest import DockerCleanup
from reconciler.builder.engine import Engine
from reconciler.builder.model_carrier import fetch_model
from reconciler.edges.model_carrier import push_model_carrier


def tree(root: Path) -> dict[str, str]:
    return {path.relative_to(root).as_posix(): (
        f"-> {os.readlink(path)}" if path.is_symlink()
        else "dir" if path.is_dir() else path.read_bytes().hex()[:64] + str(path.stat().st_size))
        for path in sorted(root.rglob("*"))}


def test_a_model_pushed_as_a_carrier_comes_out_of_the_engine_unchanged(
    tmp_path: Path, registry: RegistryServer, docker_cleanup: DockerCleanup,
) -> None:
    docker_cleanup.add_image_prefix(registry.host)
    model = tmp_path / "model"
    (model / "data").mkdir(parents=True)
    (model / "MLmodel").write_text("flavors:\n  python_function: {}\n")
    (model / "data" / "weights.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    os.symlink("../MLmodel", model / "data" / "MLmodel-link")
    ref = f"{registry.host}/acme/demo/trained-model-files:{'c' * 40}-run1"

    digest = push_model_carrier(registry.url, ref, model, "linux/amd64", timeout=30)
    assert digest.startswith("sha256:")
    assert push_model_carrier(registry.url, ref, model, "linux/amd64", timeout=30) == digest
    assert registry.manifest_exists("acme/demo/trained-model-files", f"{'c' * 40}-run1")

    out = tmp_path / "builder" / "model"
    entries = fetch_model(Engine.from_env(), ref, out)
    assert tree(out) == tree(model) and entries == len(tree(model)) + 1
    left = run(["docker", "image", "ls", "--quiet", ref]).stdout.split()
    assert left == []  # the builder removes the carrier it pulled
