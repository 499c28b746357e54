"""Bad input, one case per test: the bad project ends `invalid` or `failed` with a one-line
cause in `status` and in its observer log, and a valid project in the same pass still reaches
`ready` (checked in the registry)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import commit_all, git

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


def _alias_bomb(levels: int = 7) -> str:
    """7 levels of 10x YAML aliases: 10**7 package strings once expanded, about 1.2 KB."""
    names = ", ".join(f'"numpy-{i}==1.26.4"' for i in range(10))
    lines = ["name: fl", f"level0: &level0 [{names}]"]
    lines += [f"level{n}: &level{n} [{', '.join([f'*level{n - 1}'] * 10)}]"
              for n in range(1, levels)]
    return "\n".join([*lines, "dependencies:", f"  - pip: *level{levels - 1}"]) + "\n"


def _hostile(files: dict[str, str]) -> dict[str, str]:
    return {**files, "conda.yaml": _alias_bomb(), "requirements.txt": "numpy\n"}


HOSTILE_LOG_BYTES = 64 * 1024  # measured 2-4 KB; the documented bound of one attempt: 2.5 MB
HOSTILE_RECORD_BYTES = 32 * 1024


def test_a_hostile_repository_costs_one_bounded_attempt_and_names_the_problem(
    tmp_path: Path, registry: Any, base_image: str, publish: Publish,
    ml_files: Callable[..., dict[str, str]],
) -> None:
    """The alias bomb that once wrote a 57 MB result line into a 62.7 MB observer log; and
    a root `requirements.txt -> /proc/self/environ` link and a `.flops` link to `/` in the
    same repository: a `repo` or `dependencies` failure that counts as an attempt, a few KB of
    log and record, and nothing written outside the clone."""
    url, _ = publish("hostile", _hostile(ml_files(marker="hostile")))
    work = tmp_path / "published" / "work" / "hostile-owner" / "hostile"
    (work / "requirements.txt").unlink()
    (work / "requirements.txt").symlink_to("/proc/self/environ")
    (work / ".flops").symlink_to("/")
    commit_all(work, "hostile links")
    git(["push", "-q", "origin", "main"], cwd=work)
    ws = Workspace(tmp_path / "ws", registry.url, base_image, extra={"max_attempts": 3})
    ws.sla("hostile.yaml", sla_text(url))
    result = ws.run("apply", "--wait")
    assert result.code == 1, result.stdout + result.stderr
    row = ws.status()["hostile"]
    assert row["phase"] == "failed" and row["attempts"] == 1, row
    assert row["error"].startswith(("repo:", "dependencies:")), row["error"]
    assert "aliases" in row["error"] or "requirements.txt" in row["error"], row["error"]
    log_bytes = Path(row["observer_log"]).stat().st_size
    record_bytes = (ws.state / "projects" / "hostile.json").stat().st_size
    print(f"\nobserver log after one hostile attempt: {log_bytes} bytes; "
          f"record: {record_bytes} bytes")
    assert log_bytes < HOSTILE_LOG_BYTES and record_bytes < HOSTILE_RECORD_BYTES
    assert "HOME=" not in Path(row["observer_log"]).read_text()  # nothing of the environ
    assert builder_leftovers() == []
