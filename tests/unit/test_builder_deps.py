"""Dependency planning from conda.yaml (reconciler.builder.deps)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.builder.deps import conda_to_pip, plan_dependencies


def repo_with(tmp_path: Path, conda: str, name: str = "conda.yaml") -> Path:
    (tmp_path / name).write_text(conda, encoding="utf-8")
    return tmp_path


def conda(*deps: str, pip: tuple[str, ...] = ()) -> str:
    lines = ["name: fl", "channels: [conda-forge]", "dependencies:"]
    lines += [f"  - {d}" for d in deps]
    if pip:
        lines += ["  - pip:"] + [f"    - {p}" for p in pip]
    return "\n".join(lines) + "\n"


def test_mlflow_is_dropped_for_the_learner_only_when_no_module_imports_it(
    tmp_path: Path,
) -> None:
    repo = repo_with(tmp_path, conda("python=3.10", "pip", pip=("mlflow==2.9.2", "numpy==1.26")))
    (repo / "model_manager.py").write_text("import numpy\n")
    plan = plan_dependencies(repo)
    assert plan.ok
    assert plan.requirements["learner"] == ["numpy==1.26"]
    assert plan.requirements["aggregator"] == ["mlflow==2.9.2", "numpy==1.26"]
    expected = ("learner: removed mlflow==2.9.2 (no module of the repository imports mlflow; "
                "the aggregator keeps it)")
    assert plan.repairs == [expected]
    assert plan.role_repairs == {"learner": [expected], "aggregator": []}


def test_mlflow_stays_in_the_learner_when_the_repository_imports_it(tmp_path: Path) -> None:
    """A FLOps sklearn repository calls mlflow.sklearn.autolog() at module level: without
    mlflow its learner could not even import model_manager.py."""
    repo = repo_with(tmp_path, conda("pip", pip=("mlflow==2.12.1", "scikit-learn")))
    (repo / "model_manager.py").write_text("import numpy\nimport mlflow.sklearn\n")
    plan = plan_dependencies(repo)
    assert plan.requirements["learner"] == plan.requirements["aggregator"] == [
        "mlflow==2.12.1", "scikit-learn"]
    [repair] = plan.repair_diffs
    assert repair.roles == ("learner",)
    assert repair.summary == ("learner: kept mlflow==2.12.1 (model_manager.py:2 imports "
                              "mlflow, so the learner needs it to start)")
    assert repair.diff == ("  mlflow==2.12.1  # conda.yaml:6 (kept)",)


def test_mlflow_skinny_and_a_conda_mlflow_are_dropped_too(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, conda("mlflow=2.9", "scikit-learn", pip=("MLflow_Skinny>=2",)))
    plan = plan_dependencies(repo)
    assert plan.requirements["learner"] == ["scikit-learn"]
    assert plan.requirements["aggregator"] == ["mlflow==2.9.*", "scikit-learn", "MLflow_Skinny>=2"]
    assert len(plan.role_repairs["learner"]) == 2


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("numpy", "numpy"),
        ("numpy=1.26", "numpy==1.26.*"),
        ("numpy=1.26.4=py311h64a7726_0", "numpy==1.26.4.*"),
        ("numpy=1.26.*", "numpy==1.26.*"),
        ("numpy==1.26.4", "numpy==1.26.4"),
        ("numpy>=1.2,<2", "numpy>=1.2,<2"),
        ("numpy >=1.2", "numpy>=1.2"),
        ("numpy 1.26.4", "numpy==1.26.4"),
        ("numpy 1.26*", "numpy==1.26.*"),
        ("conda-forge::numpy=1.26", "numpy==1.26.*"),
        ("pytorch=2.1", "torch==2.1.*"),
    ],
)
def test_conda_specs_become_pip_requirements(spec: str, expected: str) -> None:
    assert conda_to_pip(spec)[1] == expected


@pytest.mark.parametrize("spec", ["numpy 1.2|1.4", "numpy[version='>=1.2']", "=1.2"])
def test_untranslatable_conda_specs_raise(spec: str) -> None:
    with pytest.raises(ValueError):
        conda_to_pip(spec)


@pytest.mark.parametrize(
    ("spec", "pin"),
    [("python=3.10", "3.10"), ("python==3.10.*", "3.10"), ("python 3.10", "3.10"),
     ("python>=3.9", ">=3.9"), ("python", None)],
)
def test_the_python_pin_is_read_and_not_installed(tmp_path: Path, spec: str, pin: str) -> None:
    plan = plan_dependencies(repo_with(tmp_path, conda(spec, "pip", "numpy")))
    assert plan.python_pin == pin
    assert plan.requirements["aggregator"] == ["numpy"]


def test_conda_dependencies_become_pip_requirements_before_the_pip_list(tmp_path: Path) -> None:
    plan = plan_dependencies(repo_with(tmp_path, conda("scikit-learn=1.3", pip=("pandas",))))
    assert plan.requirements["learner"] == ["scikit-learn==1.3.*", "pandas"]
    assert plan.repairs == []


def test_a_package_pinned_differently_in_both_lists_is_an_error_naming_both_lines(
    tmp_path: Path,
) -> None:
    plan = plan_dependencies(repo_with(tmp_path, conda("numpy=1.24", pip=("numpy==1.26.4",))))
    [problem] = plan.problems
    assert (problem.category, problem.file, problem.line) == ("dependencies", "conda.yaml", 6)
    assert "conda.yaml:4 says 'numpy=1.24'" in problem.message
    assert "conda.yaml:6 says 'numpy==1.26.4'" in problem.message
    assert "keep one entry for numpy" in problem.hint
    assert plan.requirements == {"learner": [], "aggregator": []}


def test_renamed_conda_packages_are_translated_with_a_diff(tmp_path: Path) -> None:
    plan = plan_dependencies(repo_with(tmp_path, conda("pytorch=2.1", "torchvision")))
    assert plan.requirements["learner"] == ["torch==2.1.*", "torchvision"]
    [repair] = plan.repair_diffs
    assert repair.summary == ("learner and aggregator: installs conda package pytorch with pip "
                              "as torch")
    assert repair.diff == ("- pytorch=2.1  # conda.yaml:4",
                           "+ torch==2.1.*  # pip's name for pytorch=2.1")


def test_included_requirement_files_are_inlined_and_repaired(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("mlflow==2.9.2  # tracking\n\nflwr==1.5\n")
    plan = plan_dependencies(repo_with(tmp_path, conda(pip=("-r requirements.txt",))))
    assert plan.requirements["learner"] == ["flwr==1.5"]
    assert plan.requirements["aggregator"] == ["mlflow==2.9.2", "flwr==1.5"]
    assert any("inlined the requirements of requirements.txt" in r for r in plan.repairs)


def test_index_options_pass_through_but_options_alone_install_nothing(tmp_path: Path) -> None:
    index = "--index-url http://127.0.0.1:8080/simple"
    plan = plan_dependencies(repo_with(tmp_path, conda(pip=(index, "mlflow"))))
    assert plan.requirements["aggregator"] == [index, "mlflow"]
    assert plan.requirements["learner"] == []


def test_no_dependencies_means_empty_requirements(tmp_path: Path) -> None:
    plan = plan_dependencies(repo_with(tmp_path, "name: fl\n"))
    assert plan.ok
    assert plan.requirements == {"learner": [], "aggregator": []}


def test_environment_yml_is_read_when_there_is_no_conda_yaml(tmp_path: Path) -> None:
    plan = plan_dependencies(repo_with(tmp_path, conda("numpy"), name="environment.yml"))
    assert (plan.conda_file, plan.requirements["learner"]) == ("environment.yml", ["numpy"])


def test_missing_conda_yaml_is_a_repo_problem(tmp_path: Path) -> None:
    plan = plan_dependencies(tmp_path)
    assert [(p.category, p.file) for p in plan.problems] == [("repo", "conda.yaml")]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("dependencies:\n  - numpy\n  - pip: [a, b\n", "not valid YAML"),
        ("- numpy\n- pandas\n", "must be a mapping"),
        ("dependencies: numpy\n", "'dependencies' in conda.yaml must be a list"),
        ("dependencies:\n  - {conda: numpy}\n", "dependencies[0]"),
        ("dependencies:\n  - 3.2\n", "dependencies[0] is 3.2"),
        ("dependencies:\n  - pip: numpy\n", "dependencies[0].pip must be a list"),
        ("dependencies:\n  - pip: [numpy, {a: b}]\n", "dependencies[0].pip[1]"),
        ("dependencies:\n  - numpy 1.2|1.4\n", "cannot translate conda spec"),
        ("dependencies:\n  - pip: [-e .]\n", "refers to the repository itself"),
        ("dependencies:\n  - pip: [-r missing.txt]\n", "not a file in the repository"),
    ],
)
def test_malformed_conda_yaml_is_a_dependencies_problem(
    tmp_path: Path, text: str, fragment: str
) -> None:
    plan = plan_dependencies(repo_with(tmp_path, text))
    assert not plan.ok
    assert [p.category for p in plan.problems] == ["dependencies"]
    assert fragment in plan.problems[0].message
    assert plan.problems[0].hint
    assert plan.requirements == {"learner": [], "aggregator": []}


# requirements.txt, alone and next to conda.yaml


def test_requirements_txt_alone_is_a_dependency_source(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("# deps\nflwr==1.5  # fl\n\nscikit-learn\\\n>=1.3\n")
    plan = plan_dependencies(tmp_path)
    assert plan.ok, plan.problems
    assert (plan.conda_file, plan.sources) == (None, ["requirements.txt"])
    assert plan.requirements["learner"] == ["flwr==1.5", "scikit-learn>=1.3"]


def test_requirements_txt_lines_join_the_conda_pip_list(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("flwr==1.5\n")
    plan = plan_dependencies(repo_with(tmp_path, conda("numpy=1.26", pip=("pandas",))))
    assert plan.sources == ["conda.yaml", "requirements.txt"]
    assert plan.requirements["aggregator"] == ["numpy==1.26.*", "pandas", "flwr==1.5"]
    assert "requirements.txt's lines join conda.yaml's pip list" in plan.notes[0].message


def test_a_requirements_txt_included_with_r_is_not_read_twice(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("flwr==1.5\n")
    plan = plan_dependencies(repo_with(tmp_path, conda(pip=("-r requirements.txt",))))
    assert plan.ok
    assert plan.requirements["learner"] == ["flwr==1.5"]
    assert plan.sources == ["conda.yaml"]
    [repair] = plan.repair_diffs
    assert repair.diff == ("- -r requirements.txt  # conda.yaml:5",
                           "+ flwr==1.5  # requirements.txt:1")


def test_an_identical_pin_in_two_files_is_merged_with_a_diff(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("flwr==1.5\nNumPy == 1.26.4\n")
    plan = plan_dependencies(repo_with(tmp_path, conda(pip=("numpy==1.26.4",))))
    assert plan.ok
    assert plan.requirements["learner"] == ["numpy==1.26.4", "flwr==1.5"]
    [repair] = plan.repair_diffs
    assert repair.roles == ("learner", "aggregator")
    assert "merged numpy, listed twice (conda.yaml:5 and requirements.txt:2)" in repair.summary
    assert repair.diff == ("- NumPy == 1.26.4  # requirements.txt:2",
                           "  numpy==1.26.4  # conda.yaml:5 (kept)")
    assert ("WARN", repair.summary, repair.diff) in [
        (n.level, n.message, n.details) for n in plan.notes
    ]


def test_a_conda_pin_and_the_same_pip_pin_are_one_requirement(tmp_path: Path) -> None:
    plan = plan_dependencies(repo_with(tmp_path, conda("numpy=1.26", pip=("numpy==1.26.*",))))
    assert plan.ok
    assert plan.requirements["learner"] == ["numpy==1.26.*"]


def test_a_bare_name_merges_into_the_pinned_entry_wherever_it_is(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("numpy==1.26.4\n")
    plan = plan_dependencies(repo_with(tmp_path, conda("numpy", "pandas")))
    assert plan.ok
    assert plan.requirements["learner"] == ["numpy==1.26.4", "pandas"]
    [repair] = plan.repair_diffs
    assert repair.diff == ("- numpy  # conda.yaml:4",
                           "  numpy==1.26.4  # requirements.txt:1 (kept)")


def test_conflicting_pins_across_conda_and_requirements_txt_name_both_lines(
    tmp_path: Path,
) -> None:
    (tmp_path / "requirements.txt").write_text("flwr==1.5\ntorch>=2.2\n")
    plan = plan_dependencies(repo_with(tmp_path, conda("pytorch=2.1")))
    [problem] = plan.problems
    assert (problem.file, problem.line) == ("requirements.txt", 2)
    assert problem.describe() == (
        "requirements.txt:2: torch is listed twice with different requirements: conda.yaml:4 "
        "says 'pytorch=2.1' and requirements.txt:2 says 'torch>=2.2'"
    )


def test_entries_for_different_environment_markers_are_independent(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(
        'numpy==1.24.4; python_version < "3.9"\nnumpy==1.26.4; python_version >= "3.9"\n'
    )
    plan = plan_dependencies(tmp_path)
    assert plan.ok
    assert len(plan.requirements["learner"]) == 2


def test_a_second_conda_file_is_reported_as_ignored(tmp_path: Path) -> None:
    (tmp_path / "environment.yml").write_text(conda("pandas"))
    plan = plan_dependencies(repo_with(tmp_path, conda("numpy")))
    assert plan.requirements["learner"] == ["numpy"]
    assert any("environment.yml is ignored: conda.yaml is read" in w for w in plan.warnings)


# mlflow: removed from the learner with a diff, kept and pinned in the aggregator


def test_mlflow_removal_is_a_diff_in_the_notes_and_the_learner_label(tmp_path: Path) -> None:
    plan = plan_dependencies(repo_with(tmp_path, conda(pip=("mlflow==2.9.2", "flwr"))))
    [repair] = plan.repair_diffs
    assert repair.roles == ("learner",)
    assert repair.diff == ("- mlflow==2.9.2  # conda.yaml:5",
                           "+ (removed for the learner; the aggregator keeps it)")
    assert json.loads(plan.label("learner")) == [repair.as_json()]
    assert json.loads(plan.label("aggregator")) == []
    assert plan.warnings == []


@pytest.mark.parametrize("spec", ["mlflow", "mlflow>=2.8"])
def test_an_unpinned_mlflow_is_kept_as_is_with_a_warning(tmp_path: Path, spec: str) -> None:
    plan = plan_dependencies(repo_with(tmp_path, conda(pip=(spec,))))
    assert plan.ok
    assert plan.requirements["aggregator"] == [spec]
    [warning] = plan.warnings
    assert warning.startswith(f"{spec} (conda.yaml:5) is not pinned")
    assert "mlflow==<version>" in warning
    assert ("WARN", warning) in [(n.level, n.message) for n in plan.notes]


def test_a_conda_minor_pin_of_mlflow_counts_as_pinned(tmp_path: Path) -> None:
    plan = plan_dependencies(repo_with(tmp_path, conda("mlflow=2.9")))
    assert plan.requirements["aggregator"] == ["mlflow==2.9.*"]
    assert plan.warnings == []


# torchvision: added when the code imports it and torch comes without it


def with_code(repo: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    return repo


@pytest.mark.parametrize(
    ("torch", "added"),
    [("torch==2.1.0", "torchvision==0.16.*"), ("torch==2.4.*", "torchvision==0.19.*"),
     ("torch>=2.3,<2.4", "torchvision==0.18.*"), ("torch~=2.6.0", "torchvision==0.21.*")],
)
def test_torchvision_is_added_matching_a_pinned_torch(
    tmp_path: Path, torch: str, added: str
) -> None:
    repo = with_code(repo_with(tmp_path, conda(pip=(torch,))),
                     {"models/net.py": "import os\nfrom torchvision import models\n"})
    plan = plan_dependencies(repo)
    assert plan.ok
    assert plan.requirements["learner"] == [torch, added]
    assert plan.requirements["aggregator"] == [torch, added]
    [repair] = plan.repair_diffs
    assert repair.roles == ("learner", "aggregator")
    assert repair.diff[0].startswith(f"+ {added}  # imported at models/net.py:2")
    assert "models/net.py:2 imports torchvision" in repair.summary


def test_torchvision_for_conda_pytorch_is_added_too(tmp_path: Path) -> None:
    repo = with_code(repo_with(tmp_path, conda("pytorch=2.2")), {"m.py": "import torchvision\n"})
    plan = plan_dependencies(repo)
    assert plan.requirements["learner"] == ["torch==2.2.*", "torchvision==0.17.*"]


@pytest.mark.parametrize(
    ("torch", "reason"),
    [("torch", "torch is not pinned to one minor version"),
     ("torch>=2.1", "torch is not pinned to one minor version"),
     ("torch==3.0.0", "no torchvision series is known to this builder for torch 3.0")],
)
def test_torchvision_stays_unpinned_when_torch_names_no_known_series(
    tmp_path: Path, torch: str, reason: str
) -> None:
    repo = with_code(repo_with(tmp_path, conda(pip=(torch,))),
                     {"m.py": "import torchvision.transforms as T\n"})
    plan = plan_dependencies(repo)
    assert plan.requirements["learner"] == [torch, "torchvision"]
    assert reason in plan.repair_diffs[0].summary


def test_no_torchvision_without_an_import_or_without_torch(tmp_path: Path) -> None:
    # torchvision mentioned only in a comment, a string, a non-parsing file, a hidden dir.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    repo = with_code(repo_with(tmp_path / "a", conda(pip=("torch==2.1.0",))), {
        "a.py": "# import torchvision\nx = 'import torchvision'\n",
        "b.py": "import torchvision\ndef (\n",
        ".venv/lib/c.py": "import torchvision\n",
    })
    assert plan_dependencies(repo).requirements["learner"] == ["torch==2.1.0"]
    other = with_code(repo_with(tmp_path / "b", conda(pip=("numpy",))),
                      {"m.py": "import torchvision\n"})
    assert plan_dependencies(other).requirements["learner"] == ["numpy"]


def test_a_listed_torchvision_is_left_alone(tmp_path: Path) -> None:
    repo = with_code(repo_with(tmp_path, conda(pip=("torch==2.1.0", "torchvision==0.16.0"))),
                     {"m.py": "import torchvision\n"})
    plan = plan_dependencies(repo)
    assert plan.requirements["learner"] == ["torch==2.1.0", "torchvision==0.16.0"]
    assert plan.repair_diffs == []
