"""The FLOps structure contract as the builder checks it (reconciler.builder.checks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.builder.checks import REQUIRED_METHODS, check_structure
from reconciler.builder.review import review_repository

CONDA = "name: fl\ndependencies:\n  - python=3.11\n  - pip:\n    - numpy==1.26.4\n"


def model_manager(methods: tuple[str, ...] = REQUIRED_METHODS, cls: str = "ModelManager") -> str:
    body = "".join(f"    def {m}(self, *args):\n        return None\n\n" for m in methods)
    return f"import os\n\n\nclass {cls}:\n" + (body or "    pass\n")


def make_repo(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_a_complete_repository_has_no_problems(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"model_manager.py": model_manager(), "conda.yaml": CONDA})
    assert check_structure(repo) == []


def test_missing_model_manager_names_the_file_the_class_and_every_method(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"conda.yaml": CONDA})
    [problem] = check_structure(repo)
    assert problem.category == "repo"
    assert problem.file == "model_manager.py"
    assert "missing" in problem.message
    assert "ModelManager" in problem.hint
    assert all(method in problem.hint for method in REQUIRED_METHODS)


def test_model_manager_in_a_subdirectory_is_pointed_out(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"src/model_manager.py": model_manager(), "conda.yaml": CONDA})
    [problem] = check_structure(repo)
    assert "move src/model_manager.py to the repository root" in problem.hint


def test_missing_conda_yaml_is_a_repo_problem(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"model_manager.py": model_manager()})
    [problem] = check_structure(repo)
    assert (problem.category, problem.file) == ("repo", "conda.yaml")
    assert "conda.yaml is missing" in problem.message


@pytest.mark.parametrize("name", ["environment.yml", "environment.yaml"])
def test_environment_yml_is_accepted_instead_of_conda_yaml(tmp_path: Path, name: str) -> None:
    repo = make_repo(tmp_path, {"model_manager.py": model_manager(), name: CONDA})
    assert check_structure(repo) == []


def test_malformed_conda_yaml_is_a_dependencies_problem_with_a_line(tmp_path: Path) -> None:
    bad = "name: fl\ndependencies:\n  - numpy\n  - pip: [a, b\n"
    repo = make_repo(tmp_path, {"model_manager.py": model_manager(), "conda.yaml": bad})
    [problem] = check_structure(repo)
    assert problem.category == "dependencies"
    assert problem.file == "conda.yaml"
    assert "not valid YAML" in problem.message
    assert problem.line is not None and problem.line >= 4


def test_missing_class_is_reported_with_the_methods_to_define(tmp_path: Path) -> None:
    source = "def fit_model():\n    pass\n"
    repo = make_repo(tmp_path, {"model_manager.py": source, "conda.yaml": CONDA})
    [problem] = check_structure(repo)
    assert problem.message == "model_manager.py does not define class ModelManager"
    assert "define class ModelManager" in problem.hint
    assert "evaluate_model" in problem.hint


def test_a_misspelt_class_name_suggests_the_rename(tmp_path: Path) -> None:
    source = model_manager(cls="Modelmanager")
    repo = make_repo(tmp_path, {"model_manager.py": source, "conda.yaml": CONDA})
    [problem] = check_structure(repo)
    assert "rename class Modelmanager to ModelManager" in problem.hint


def test_an_imported_model_manager_cannot_be_verified(tmp_path: Path) -> None:
    source = "import sys\nfrom mylib.models import ModelManager\n"
    repo = make_repo(tmp_path, {"model_manager.py": source, "conda.yaml": CONDA})
    [problem] = check_structure(repo)
    assert problem.line == 2
    assert "imports it" in problem.message


@pytest.mark.parametrize("missing", REQUIRED_METHODS)
def test_each_missing_method_is_one_problem_naming_it(tmp_path: Path, missing: str) -> None:
    methods = tuple(m for m in REQUIRED_METHODS if m != missing)
    repo = make_repo(tmp_path, {"model_manager.py": model_manager(methods), "conda.yaml": CONDA})
    [problem] = check_structure(repo)
    assert problem.category == "repo"
    assert problem.message == f"class ModelManager has no method {missing}"
    assert f"def {missing}(self" in problem.hint
    assert problem.line == 4


def test_a_method_written_at_module_level_gets_a_precise_hint(tmp_path: Path) -> None:
    source = model_manager(REQUIRED_METHODS[:-1]) + "\ndef evaluate_model():\n    pass\n"
    repo = make_repo(tmp_path, {"model_manager.py": source, "conda.yaml": CONDA})
    [problem] = check_structure(repo)
    assert "module-level function" in problem.hint
    assert "indent it into class ModelManager" in problem.hint


def test_methods_inherited_from_a_base_class_in_the_same_file_count(tmp_path: Path) -> None:
    source = (
        model_manager(REQUIRED_METHODS[:3], cls="Base")
        + "\n\nclass ModelManager(Base):\n"
        + "".join(f"    def {m}(self):\n        pass\n" for m in REQUIRED_METHODS[3:])
    )
    repo = make_repo(tmp_path, {"model_manager.py": source, "conda.yaml": CONDA})
    assert check_structure(repo) == []


def test_methods_of_a_base_class_from_elsewhere_do_not_count(tmp_path: Path) -> None:
    source = "from lib import Base\n\n\nclass ModelManager(Base):\n    pass\n"
    repo = make_repo(tmp_path, {"model_manager.py": source, "conda.yaml": CONDA})
    problems = check_structure(repo)
    assert [p.message.rsplit(" ", 1)[1] for p in problems] == list(REQUIRED_METHODS)


def test_a_syntax_error_names_file_and_line_and_is_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    source = f"open({str(marker)!r}, 'w')\n\nclass ModelManager:\n    def get_model(self)\n"
    repo = make_repo(tmp_path, {"model_manager.py": source, "conda.yaml": CONDA})
    [problem] = check_structure(repo)
    assert (problem.file, problem.line) == ("model_manager.py", 4)
    assert problem.message.startswith("syntax error")
    assert problem.describe().startswith("model_manager.py:4: syntax error")
    assert not marker.exists()


def test_check_structure_never_imports_user_code(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    source = f"open({str(marker)!r}, 'w')\n" + model_manager()
    repo = make_repo(tmp_path, {"model_manager.py": source, "conda.yaml": CONDA})
    assert check_structure(repo) == []
    assert not marker.exists()


def test_review_reports_a_broken_conda_file_once(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"model_manager.py": model_manager(), "conda.yaml": "a: [\n"})
    review = review_repository(repo)
    assert not review.ok
    assert [p.file for p in review.problems] == ["conda.yaml"]
    assert review.plan is None


def test_review_of_a_good_repository_carries_the_dependency_plan(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"model_manager.py": model_manager(), "conda.yaml": CONDA})
    review = review_repository(repo)
    assert review.ok
    assert review.plan is not None
    assert review.plan.requirements["learner"] == ["numpy==1.26.4"]


def test_a_misspelt_class_name_points_at_its_line(tmp_path: Path) -> None:
    source = model_manager(cls="Modelmanager")
    repo = make_repo(tmp_path, {"model_manager.py": source, "conda.yaml": CONDA})
    [problem] = check_structure(repo)
    assert problem.describe().startswith("model_manager.py:4: model_manager.py does not define")


def test_a_required_method_without_self_names_class_method_and_line(tmp_path: Path) -> None:
    source = model_manager(REQUIRED_METHODS[:-1]) + "    def evaluate_model():\n        pass\n"
    repo = make_repo(tmp_path, {"model_manager.py": source, "conda.yaml": CONDA})
    [problem] = check_structure(repo)
    assert problem.describe() == (
        "model_manager.py:20: method ModelManager.evaluate_model takes no 'self' parameter"
    )
    assert "def evaluate_model(self, ...)" in problem.hint


def test_static_methods_and_star_args_count_as_callable_on_the_instance(tmp_path: Path) -> None:
    source = (model_manager(REQUIRED_METHODS[:-2])
              + "    @staticmethod\n    def fit_model():\n        pass\n\n"
              + "    def evaluate_model(*args):\n        pass\n")
    repo = make_repo(tmp_path, {"model_manager.py": source, "conda.yaml": CONDA})
    assert check_structure(repo) == []


def test_requirements_txt_alone_satisfies_the_dependency_file_rule(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"model_manager.py": model_manager(),
                                "requirements.txt": "numpy==1.26.4\n"})
    assert check_structure(repo) == []


def test_no_dependency_file_at_all_names_both_choices(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"model_manager.py": model_manager()})
    [problem] = check_structure(repo)
    assert "requirements.txt" in problem.message and "requirements.txt" in problem.hint


# DataManager: defined in data_manager.py when model_manager.py imports it


def with_import(line: str) -> str:
    return f"{line}\n" + model_manager()


@pytest.mark.parametrize(
    "import_line",
    ["from data_manager import DataManager", "import data_manager",
     "import data_manager as dm\nX = dm.DataManager"],
)
def test_a_defined_data_manager_passes(tmp_path: Path, import_line: str) -> None:
    repo = make_repo(tmp_path, {
        "model_manager.py": with_import(import_line), "conda.yaml": CONDA,
        "data_manager.py": "try:\n    import numpy\nexcept ImportError:\n    numpy = None\n\n"
                           "class DataManager:\n    pass\n",
    })
    assert check_structure(repo) == []


def test_a_missing_data_manager_file_names_the_import_line(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {
        "model_manager.py": with_import("from data_manager import DataManager"),
        "conda.yaml": CONDA,
    })
    [problem] = check_structure(repo)
    assert problem.describe() == ("model_manager.py:1: model_manager.py imports data_manager at "
                                  "line 1, but data_manager.py is missing at the repository root")
    assert "defining DataManager" in problem.hint


def test_data_manager_without_the_class_is_a_problem_in_data_manager_py(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {
        "model_manager.py": with_import("from data_manager import DataManager"),
        "data_manager.py": "def load():\n    pass\n", "conda.yaml": CONDA,
    })
    [problem] = check_structure(repo)
    assert (problem.category, problem.file) == ("repo", "data_manager.py")
    assert problem.message == ("data_manager.py does not define DataManager (imported by "
                               "model_manager.py at line 1)")
    assert "class DataManager" in problem.hint


def test_module_import_with_attribute_use_is_checked(tmp_path: Path) -> None:
    source = "import data_manager as dm\n" + model_manager() + "\nDM = dm.DataManager\n"
    repo = make_repo(tmp_path, {"model_manager.py": source, "conda.yaml": CONDA,
                                "data_manager.py": "class Datamanager:\n    pass\n"})
    [problem] = check_structure(repo)
    assert problem.describe() == ("data_manager.py:1: data_manager.py does not define "
                                  "DataManager (imported by model_manager.py at line 25)")
    assert "rename Datamanager to DataManager" in problem.hint


def test_an_import_inside_a_method_is_followed_too(tmp_path: Path) -> None:
    source = model_manager().replace(
        "    def get_model(self, *args):\n",
        "    def get_model(self, *args):\n        from data_manager import DataManager\n",
    )
    repo = make_repo(tmp_path, {"model_manager.py": source, "conda.yaml": CONDA,
                                "data_manager.py": "X = 1\n"})
    [problem] = check_structure(repo)
    assert "does not define DataManager (imported by model_manager.py at line 9)" \
        in problem.message


def test_a_syntax_error_in_data_manager_names_its_line(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {
        "model_manager.py": with_import("from data_manager import DataManager"),
        "data_manager.py": "class DataManager:\n    def f(self)\n", "conda.yaml": CONDA,
    })
    [problem] = check_structure(repo)
    assert (problem.file, problem.line) == ("data_manager.py", 2)


def test_without_an_import_data_manager_is_not_required(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"model_manager.py": model_manager(), "conda.yaml": CONDA,
                                "data_manager.py": "def broken(:\n"})
    assert check_structure(repo) == []


def test_a_star_import_in_data_manager_cannot_be_checked_and_passes(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {
        "model_manager.py": with_import("from data_manager import DataManager"),
        "data_manager.py": "from .impl import *\n", "conda.yaml": CONDA,
    })
    assert check_structure(repo) == []


def test_data_manager_is_checked_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    repo = make_repo(tmp_path, {
        "model_manager.py": with_import("from data_manager import DataManager"),
        "data_manager.py": f"open({str(marker)!r}, 'w')\nclass DataManager:\n    pass\n",
        "conda.yaml": CONDA,
    })
    assert check_structure(repo) == []
    assert not marker.exists()
