"""What the builder's unit tests share: a git repository made from files, and a build request
like the one the reconciler renders (with the shipped templates), for the builder run
in-process or as `python -m reconciler.builder`."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import IO, Any

from reconciler.builder import protocol
from reconciler.builder.checks import REQUIRED_METHODS
from reconciler.builder.engine import Engine, EngineError, EngineUnreachable
from reconciler.builder.run import run

RUNTIME_DOCKERFILE = "FROM base AS actor-base\nFROM actor-base AS runtime\n"
MODEL_MANAGER = "class ModelManager:\n" + "".join(
    f"    def {m}(self):\n        pass\n" for m in REQUIRED_METHODS
)
ACTOR_DOCKERFILE = "FROM base AS runtime\nFROM runtime AS learner\nFROM learner AS aggregator\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    ).stdout.strip()


def write_repo(root: Path, files: dict[str, str]) -> Path:
    """A directory holding ``files`` (relative path -> text)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def commit_all(repo: Path) -> str:
    """Make ``repo`` (a directory of files) a git repository with one commit; its id."""
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "fixture")
    return git(repo, "rev-parse", "HEAD")


def no_engine() -> Engine:
    raise AssertionError("a repository that fails its checks never reaches the engine")


def run_builder(repo: Path, **fields: Any) -> tuple[int, str]:
    """Commit ``repo`` and run the builder on it in-process (no engine: it must fail before
    building); its exit code and stdout."""
    out = io.StringIO()
    code = run(json.dumps(build_request(repo, commit_all(repo), **fields)), out,
               engine_factory=no_engine)
    return code, out.getvalue()


def check_repo_command(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`reconciler check-repo REPO` as a user runs it (a subprocess)."""
    config = repo.parent / "reconciler.toml"
    config.write_text('registry = "local"\n')
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "--config", str(config), "check-repo", str(repo),
         *args], capture_output=True, text=True, timeout=60, cwd=repo.parent,
    )


def build_request(repo: Path, commit: str, **fields: Any) -> dict[str, Any]:
    """A valid request to build ``repo`` at ``commit``; ``fields`` replace or add keys."""
    return {
        "project": "demo", "build_key": "k1", "repo_url": str(repo),
        "source_url": "https://example.org/acme/demo.git", "commit": commit, "ref": None,
        "flavor": "sklearn", "platforms": ["linux/amd64"], "use_devel_base_images": False,
        "images": {r: f"127.0.0.1:5000/acme/demo/{r}:{commit}" for r in protocol.ROLES},
        "push": False,
        "dockerfiles": dict.fromkeys(protocol.ROLES, ACTOR_DOCKERFILE),
        "runtime_dockerfile": RUNTIME_DOCKERFILE,
        "labels": {"org.opencontainers.image.revision": commit},
        "builder_version": "0.1.0",
        **fields,
    }


MLMODEL = """\
flavors:
  python_function:
    loader_module: mlflow.pyfunc.model
    python_model: python_model.pkl
    code: code
mlflow_version: 3.17.2
"""
LEARNER_IMAGE = "127.0.0.1:5000/acme/demo/learner:" + "c" * 40
MODEL_DOCKERFILE = "FROM base\nCOPY runtime/ /opt/flops/runtime/\nCOPY model/ /flops/model/\n"


def write_model(model_dir: Path, mlmodel: str = MLMODEL) -> Path:
    """A model directory as the aggregator saves one (what the builder reads of it: MLmodel)."""
    write_repo(model_dir, {"MLmodel": mlmodel, "python_model.pkl": "pickle",
                           "code/model_manager.py": "class ModelManager: ...\n"})
    return model_dir


def model_request(model_dir: Path, **fields: Any) -> dict[str, Any]:
    """A valid trained-model request for the model in ``model_dir``; ``fields`` replace keys."""
    commit = "c" * 40
    return {
        "kind": "trained-model", "project": "demo", "build_key": "run-1",
        "repo_url": "https://example.org/acme/demo.git",
        "source_url": "https://example.org/acme/demo.git", "commit": commit,
        "images": {"trained-model": f"127.0.0.1:5000/acme/demo/trained-model:{commit}-run1"},
        "push": False, "labels": {"flops.run": "run1"}, "builder_version": "0.1.0",
        "model_from": LEARNER_IMAGE, "model_dir": str(model_dir),
        "model_dockerfile": MODEL_DOCKERFILE,
        **fields,
    }


class FakeEngine(Engine):
    """Records builds and pushes; `fail` names the operation that raises."""

    def __init__(self, fail: str = "") -> None:
        super().__init__("unix:///nonexistent.sock")
        self.fail = fail
        self.builds: list[tuple[str, str, dict[str, str], list[str]]] = []
        self.runtime_builds: list[str] = []  # runtime images built, by tag
        self.contexts: dict[str, dict[str, bytes]] = {}
        self.tar_members: dict[str, list[tarfile.TarInfo]] = {}
        self.pushed: list[str] = []
        self.images: set[str] = set()  # runtime images that exist; base images always do
        self.options: dict[str, dict[str, Any]] = {}  # tag -> build_args, target, network...

    def platform(self) -> str:
        return "linux/amd64"

    def image_id(self, ref: str) -> str | None:
        if ref.startswith("flops-runtime:") and ref not in self.images:
            return None
        return f"sha256:{abs(hash(ref)):064d}"[:71]

    def build(self, context: bytes | IO[bytes], tag: str, dockerfile_path: str,
              labels: dict[str, str], **options: Any) -> tuple[str, list[str]]:
        self.options[tag] = options
        if isinstance(context, bytes):
            context = io.BytesIO(context)
        context.seek(0)
        with tarfile.open(fileobj=context) as tar:
            self.tar_members[tag] = tar.getmembers()
            names = tar.getnames()
            files = {m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
                     for m in tar.getmembers() if m.isfile()}
        self.contexts[tag] = files
        if tag.startswith("flops-runtime:"):
            self.runtime_builds.append(tag)
            self.images.add(tag)
            return "sha256:" + "e" * 64, []
        self.builds.append((tag, dockerfile_path, labels, names))
        if self.fail == "build":
            raise EngineError(f"building {tag} failed: pip exited 1", ["Step 2/5", "boom"])
        return f"sha256:{len(self.builds):064d}", []

    def push(self, ref: str, **_: Any) -> str:
        if self.fail == "push":
            raise EngineError(f"pushing {ref} failed: connection refused", ["denied"])
        if self.fail == "unreachable":
            raise EngineUnreachable("no Docker engine at unix:///x")
        self.pushed.append(ref)
        return f"sha256:{'d' * 63}{len(self.pushed)}"
