"""Record real builder output streams for the fake backend (tests/unit/fake_backend.py).

Each stream is what the build runner read from a real builder: the reconciler's own request
(``builder_spec``), deployed by the real compose backend on the local Docker engine, and read
back with ``backend.output(follow=True)`` (``docker logs --timestamps``). One JSON object a
line: ``{"stream": "stdout"|"stderr", "line": str, "at": ISO-8601}``, then a last line
``{"exit_code": N}``. Run it again after a change to the wire protocol (needs Docker, the
compose plugin and ``flops-base:bookworm``)::

    PYTHONPATH=.:tests python tests/data/builder_streams/record.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from support import flops_ml_repo_files, make_ml_repo, remove_images_by_prefix

from reconciler.core.build_request import builder_spec
from reconciler.core.project import DesiredProject
from reconciler.core.render import make_environment, render_compose, render_request
from reconciler.core.sla import parse_sla
from reconciler.edges.compose_backend import ComposeBackend
from reconciler.edges.settings import load_config, template_dirs

HERE = Path(__file__).resolve().parent
BASE_IMAGE = "flops-base:bookworm"
# name -> (files of the ML repository, what the stream shows)
VARIANTS: dict[str, tuple[dict[str, str], str]] = {
    "success": (flops_ml_repo_files(), "both images built, no repairs"),
    "repo-failure": (flops_ml_repo_files(drop="model_manager.py"),
                     "the check stage fails: no model_manager.py"),
    "build-failure": (flops_ml_repo_files(extra_deps=["mlflow==2.9.2", "flops-missing==1.0"]),
                      "a repair (mlflow off the learner), then pip fails in build:learner"),
}


def record(name: str, files: dict[str, str], work: Path) -> list[dict[str, object]]:
    root = work / name
    repo_name = f"{name}-owner/{name}"
    make_ml_repo(root / "work", repo_name, {**files, "MARKER": f"{name}\n"},
                 bare_dir=root / "remotes")
    url = str(root / "remotes" / f"{repo_name}.git")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root / "work" / repo_name,
                            capture_output=True, text=True, check=True).stdout.strip()
    config_file = root / "reconciler.toml"
    config_file.write_text(f'registry = "local"\nallow_file_repos = true\n[builder]\n'
                           f'base_image = "{BASE_IMAGE}"\n[images]\n'
                           f'base_image = "{BASE_IMAGE}"\n')
    config = load_config(config_file, environ={})
    templates = template_dirs(None)
    env = make_environment(templates)
    project = DesiredProject(name, str(root / f"{name}.yaml"), parse_sla(
        {"ml_repo_url": url, "ml_model_flavor": "sklearn"}, allow_file_repos=True))
    backend = ComposeBackend(config, lambda builder: root / "builds" / builder, templates)
    host = backend.pick_host(print)
    spec = builder_spec(project, commit, config, host, env,
                        builder_image=backend.builder_image(host, print))
    builder = backend.deploy(host, spec.name, render_compose(env, spec), render_request(spec))
    try:
        lines: list[dict[str, object]] = [
            {"stream": output.stream, "line": output.line, "at": output.at}
            for output in backend.output(builder, follow=True)]
        lines.append({"exit_code": backend.wait(builder)})
    finally:
        backend.remove(host, spec.name, stop_timeout=0)
        remove_images_by_prefix(f"flops.local/{name}-owner/")
    return lines


def write(path: Path, lines: Iterable[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines),
                    encoding="utf-8")


def main(names: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="flops-record-") as tmp:
        for name in names or list(VARIANTS):
            files, about = VARIANTS[name]
            lines = record(name, files, Path(tmp))
            write(HERE / f"{name}.jsonl", lines)
            print(f"{name}: {len(lines)} lines ({about})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
