"""Dependency planning from conda.yaml (reconciler.builder.deps)."""

from __future__ import annotations

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


def test_mlflow_is_dropped_for_the_learner_only(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, conda("python=3.10", "pip", pip=("mlflow==2.9.2", "numpy==1.26")))
    plan = plan_dependencies(repo)
    assert plan.ok
    assert plan.requirements["learner"] == ["numpy==1.26"]
    assert plan.requirements["aggregator"] == ["mlflow==2.9.2", "numpy==1.26"]
    expected = ("learner: removed mlflow==2.9.2 (the learner does not track experiments; "
                "the aggregator keeps it)")
    assert plan.repairs == [expected]
    assert plan.role_repairs == {"learner": [expected], "aggregator": []}


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


def test_a_package_in_both_lists_keeps_the_pip_entry(tmp_path: Path) -> None:
    plan = plan_dependencies(repo_with(tmp_path, conda("numpy=1.24", pip=("numpy==1.26.4",))))
    assert plan.requirements["aggregator"] == ["numpy==1.26.4"]
    assert plan.repairs == ["learner and aggregator: dropped conda's numpy=1.24 in favour of the "
                            "pip section's entry for numpy (listed twice)"]


def test_conda_only_packages_are_removed_and_renamed_ones_translated(tmp_path: Path) -> None:
    plan = plan_dependencies(
        repo_with(tmp_path, conda("pytorch=2.1", "torchvision", "cudatoolkit=11.8"))
    )
    assert plan.requirements["learner"] == ["torch==2.1.*", "torchvision"]
    assert any("installs conda package pytorch with pip as torch" in r for r in plan.repairs)
    assert any("removed conda-only package cudatoolkit=11.8" in r for r in plan.repairs)
    assert plan.warnings == []


def test_torch_without_torchvision_is_a_warning(tmp_path: Path) -> None:
    plan = plan_dependencies(repo_with(tmp_path, conda(pip=("torch==2.1.0",))))
    assert plan.requirements["learner"] == ["torch==2.1.0"]
    assert len(plan.warnings) == 1
    assert "torchvision" in plan.warnings[0]


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
