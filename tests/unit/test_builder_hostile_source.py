"""Deep or huge Python source (issue 9, items 4 and 5): a 10 KB `1+1+...+1`, a 20,000-deep
attribute chain, a 10 MB model_manager.py, a 3,000-class inheritance chain, thousands of names
imported from data_manager. Each is a `repo` problem (or no problem), never a crash: the
builder's result says `repo` (counted as an attempt) and `check-repo` exits 1, not 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from builder_support import MODEL_MANAGER, check_repo_command, run_builder, write_repo

from reconciler.builder.checks import check_structure
from reconciler.builder.deps import plan_dependencies
from reconciler.builder.limits import MAX_SHOWN_NAMES, MAX_SOURCE_FILE_BYTES

CONDA = "dependencies: [numpy]\n"
DEEP = {
    "a 10 KB 1+1+...+1": "x = " + "1+" * 5000 + "1\n",
    "a 20,000-deep attribute chain": "x = " + "a." * 20000 + "b\n",
}


def build(repo: Path) -> dict[str, Any]:
    """The builder's result for the committed repository (it fails before any engine call)."""
    code, out = run_builder(repo)
    assert code == 1
    result: dict[str, Any] = json.loads(out.splitlines()[-1])
    return result


@pytest.mark.parametrize("source", DEEP.values(), ids=DEEP.keys())
def test_deep_model_manager_source_is_a_repo_problem_everywhere(
    tmp_path: Path, source: str
) -> None:
    repo = write_repo(tmp_path / "repo", {"model_manager.py": MODEL_MANAGER + source,
                                         "conda.yaml": CONDA})
    [problem] = check_structure(repo)
    assert (problem.category, problem.file) == ("repo", "model_manager.py")
    assert problem.message == ("model_manager.py nests expressions too deeply to be parsed "
                               "(RecursionError)")
    checked = check_repo_command(repo)
    assert checked.returncode == 1, checked.stderr
    assert "model_manager.py nests expressions too deeply" in checked.stdout
    error = build(repo)["error"]
    assert (error["category"], error["stage"]) == ("repo", "check")


def test_deep_data_manager_source_is_a_problem_in_data_manager(tmp_path: Path) -> None:
    repo = write_repo(tmp_path, {
        "model_manager.py": "from data_manager import DataManager\n" + MODEL_MANAGER,
        "data_manager.py": "class DataManager: pass\n" + DEEP["a 10 KB 1+1+...+1"],
        "conda.yaml": CONDA,
    })
    [problem] = check_structure(repo)
    assert (problem.category, problem.file) == ("repo", "data_manager.py")


def test_a_10_mb_model_manager_is_refused_by_its_size_without_being_parsed(
    tmp_path: Path
) -> None:
    body = "".join(f"x{i} = [{i}, {i + 1}]\n" for i in range(600_000))  # ~10 MB
    repo = write_repo(tmp_path / "repo", {"model_manager.py": MODEL_MANAGER + body,
                                         "conda.yaml": CONDA})
    [problem] = check_structure(repo)
    assert problem.category == "repo"
    assert problem.message.startswith("model_manager.py is 1")
    assert problem.message.endswith("MiB; the builder reads Python files up to 512 KiB")
    checked = check_repo_command(repo)
    assert checked.returncode == 1, checked.stderr


def test_a_file_just_under_the_cap_is_parsed(tmp_path: Path) -> None:
    padding = "# " + "x" * 70 + "\n"
    body = padding * ((MAX_SOURCE_FILE_BYTES - len(MODEL_MANAGER)) // len(padding))
    repo = write_repo(tmp_path, {"model_manager.py": MODEL_MANAGER + body, "conda.yaml": CONDA})
    assert (repo / "model_manager.py").stat().st_size <= MAX_SOURCE_FILE_BYTES
    assert check_structure(repo) == []


def test_a_3000_class_inheritance_chain_is_followed_without_recursion(tmp_path: Path) -> None:
    chain = "".join(f"class C{i}(C{i - 1}):\n    pass\n" for i in range(1, 3000))
    source = MODEL_MANAGER.replace("ModelManager", "C0") + chain + \
        "class ModelManager(C2999):\n    pass\n"
    repo = write_repo(tmp_path, {"model_manager.py": source, "conda.yaml": CONDA})
    assert check_structure(repo) == []


def test_thousands_of_missing_data_manager_names_are_counted_not_listed(tmp_path: Path) -> None:
    names = ", ".join(f"Name{i}" for i in range(5000))
    defined = "".join(f"class Other{i}: pass\n" for i in range(5000))
    repo = write_repo(tmp_path, {
        "model_manager.py": f"from data_manager import ({names})\n" + MODEL_MANAGER,
        "data_manager.py": defined, "conda.yaml": CONDA,
    })
    problems = check_structure(repo)
    assert len(problems) == MAX_SHOWN_NAMES + 1
    assert problems[-1].message == (f"data_manager.py does not define {5000 - MAX_SHOWN_NAMES} "
                                    "more names imported by model_manager.py")


def test_a_deep_file_elsewhere_does_not_stop_the_import_scan(tmp_path: Path) -> None:
    repo = write_repo(tmp_path, {
        "model_manager.py": MODEL_MANAGER, "requirements.txt": "torch==2.2.0\n",
        "a_deep.py": DEEP["a 10 KB 1+1+...+1"], "b_train.py": "import torchvision\n",
    })
    plan = plan_dependencies(repo)
    assert plan.requirements["learner"] == ["torch==2.2.0", "torchvision==0.17.*"]
