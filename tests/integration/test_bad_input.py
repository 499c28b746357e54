"""Bad input, one case per test: the bad project ends `invalid` or `failed` with a one-line
cause in `status` and in its observer log, and a valid project in the same pass still reaches
`ready` (checked in the registry)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from integration.harness import (
    REMOVES_REGISTRY_IMAGES,
    Publish,
    Workspace,
    builder_leftovers,
    sla_text,
)

pytestmark = REMOVES_REGISTRY_IMAGES


@dataclass(frozen=True)
class Case:
    id: str
    file_name: str
    phase: str
    cause: str  # a phrase the one-line cause must contain
    text: Callable[[Publish, Callable[..., dict[str, str]], Path], str]


def _repo(files_change: Callable[[dict[str, str]], dict[str, str]], marker: str) -> Callable[
    [Publish, Callable[..., dict[str, str]], Path], str
]:
    def make(publish: Publish, ml_files: Callable[..., dict[str, str]], tmp: Path) -> str:
        url, _ = publish(f"bad-{marker}", files_change(ml_files(marker=marker)))
        return sla_text(url)

    return make


def _without(*names: str) -> Callable[[dict[str, str]], dict[str, str]]:
    return lambda files: {k: v for k, v in files.items() if k not in names}


def _drop_method(files: dict[str, str]) -> dict[str, str]:
    changed = dict(files)
    changed["model_manager.py"] = changed["model_manager.py"].replace(
        "def evaluate_model", "def evaluate_it"
    )
    return changed


def _static(text: str) -> Callable[[Publish, Callable[..., dict[str, str]], Path], str]:
    return lambda publish, ml_files, tmp: text


CASES = [
    Case("malformed-yaml", "bad.yaml", "invalid", "malformed YAML",
         _static("ml_repo_url: [unclosed\nml_model_flavor: sklearn\n")),
    Case("wrong-type", "bad.yaml", "invalid", "training_configuration.training_rounds",
         _static(sla_text("https://example.org/o/r.git",
                          extra="training_configuration:\n  training_rounds: many\n"))),
    Case("unknown-key", "bad.yaml", "invalid", "did you mean `ml_model_flavor`",
         _static("ml_repo_url: https://example.org/o/r.git\nml_model_flavour: sklearn\n")),
    Case("no-url", "bad.yaml", "invalid", "missing required key `ml_repo_url`",
         _static("ml_model_flavor: sklearn\n")),
    Case("unsupported-flavor", "bad.yaml", "invalid", "ml_model_flavor",
         _static(sla_text("https://example.org/o/r.git", flavor="caffe"))),
    Case("bad-file-name", "Bad Name.yaml", "invalid", "not a valid project name",
         _static(sla_text("https://example.org/o/r.git"))),
    Case("ext-scheme", "bad.yaml", "invalid", "remote-helper",
         _static(sla_text("ext::sh -c touch% /tmp/pwned"))),
    Case("ref-option", "bad.yaml", "invalid", "git option",
         _static(sla_text("https://example.org/o/r.git",
                          extra="ml_repo_ref: --upload-pack=touch /tmp/pwned\n"))),
    Case("newline-yaml-value", "bad.yaml", "invalid", "ml_repo_ref",
         _static(sla_text("https://example.org/o/r.git",
                          extra='ml_repo_ref: "main\\n    privileged: true\\nx: y"\n'))),
    Case("repo-does-not-exist", "bad.yaml", "failed", "does not exist",
         lambda publish, ml_files, tmp: sla_text(str(tmp / "no-such-repo"))),
    Case("no-model-manager", "bad.yaml", "failed", "model_manager.py",
         _repo(_without("model_manager.py"), "nomm")),
    Case("no-conda-yaml", "bad.yaml", "failed", "conda.yaml",
         _repo(_without("conda.yaml"), "noconda")),
    Case("missing-method", "bad.yaml", "failed", "evaluate_model",
         _repo(_drop_method, "nomethod")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_harms_no_other_project(
    case: Case, tmp_path: Path, registry: Any, base_image: str,
    publish: Publish, ml_files: Callable[..., dict[str, str]],
) -> None:
    ws = Workspace(tmp_path / "ws", registry.url, base_image)
    good_url, good_commit = publish(f"good-{case.id}", ml_files(marker=f"good-{case.id}"))
    ws.sla("good.yaml", sla_text(good_url))
    ws.sla(case.file_name, case.text(publish, ml_files, tmp_path))

    result = ws.run("apply", "--wait")
    assert result.code == 1, result.stdout + result.stderr

    rows = ws.status()
    good = rows.pop("good")
    assert good["phase"] == "ready", good
    name, tag = good["images"]["learner"].split("/", 1)[1].rsplit(":", 1)
    assert tag == good_commit and registry.manifest_exists(name, tag)

    (bad,) = rows.values()
    assert bad["phase"] == case.phase, bad
    assert case.cause in bad["error"], bad["error"]
    assert "\n" not in bad["error"]
    assert case.file_name in bad["error"] or case.phase == "failed"
    log = Path(bad["observer_log"]).read_text()
    error_lines = [line for line in log.splitlines() if " ERROR " in line]
    assert error_lines and any(case.cause in line for line in error_lines), log
    assert builder_leftovers() == []
