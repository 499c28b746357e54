"""The base image of the FL-actor images: the python image map and the conda-capable base
(reconciler.builder.baseimage, through plan_dependencies)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.builder.deps import ImageOptions, plan_dependencies

PYTHON_IMAGES = {"3.10": "reg.example/py:3.10", "3.11": "reg.example/py:3.11"}
MAP = ImageOptions(python_images=PYTHON_IMAGES)


def repo(tmp_path: Path, *deps: str) -> Path:
    lines = ["name: fl", "channels:", "  - conda-forge", "dependencies:"]
    lines += [f"  - {d}" for d in deps]
    (tmp_path / "conda.yaml").write_text("\n".join(lines) + "\n")
    return tmp_path


@pytest.mark.parametrize(
    ("pin", "image"),
    [("python=3.10", "reg.example/py:3.10"), ("python==3.10.*", "reg.example/py:3.10"),
     ("python 3.10", "reg.example/py:3.10"), ("python>=3.10,<3.11", "reg.example/py:3.10"),
     ("python=3.10.12", "reg.example/py:3.10"), ("python=3.11", "reg.example/py:3.11"),
     ("python~=3.11.4", "reg.example/py:3.11")],
)
def test_the_python_pin_selects_its_image(tmp_path: Path, pin: str, image: str) -> None:
    plan = plan_dependencies(repo(tmp_path, pin, "numpy"), MAP)
    assert plan.ok, plan.problems
    assert plan.base_image == image
    [note] = [n for n in plan.notes if "pins" in n.message]
    assert note.level == "INFO"
    assert note.message.startswith(f"conda.yaml:5 pins {pin}: the images build from {image}")


def test_a_pin_allowing_several_versions_takes_the_newest_and_says_so(tmp_path: Path) -> None:
    plan = plan_dependencies(repo(tmp_path, "python>=3.9"), MAP)
    assert plan.base_image == "reg.example/py:3.11"
    assert any("it also allows 3.10: the newest configured is used" in n.message
               for n in plan.notes)


@pytest.mark.parametrize("pin", ["python=3.9", "python>=3.12", "python<3.10"])
def test_a_pin_without_an_image_is_an_error_naming_pin_and_versions(
    tmp_path: Path, pin: str
) -> None:
    plan = plan_dependencies(repo(tmp_path, pin, "numpy"), MAP)
    [problem] = plan.problems
    assert (problem.category, problem.file, problem.line) == ("dependencies", "conda.yaml", 5)
    assert f"the python pin {pin!r} matches none of the configured python images " \
           "(3.10, 3.11)" in problem.message
    assert "[images.python]" in problem.hint
    assert plan.base_image is None
    assert plan.requirements == {"learner": [], "aggregator": []}


def test_an_unreadable_pin_with_a_map_is_an_error(tmp_path: Path) -> None:
    plan = plan_dependencies(repo(tmp_path, "python 3.10|3.11"), MAP)
    [problem] = plan.problems
    assert "cannot read the python pin 'python 3.10|3.11'" in problem.message


def test_no_pin_keeps_the_default_base(tmp_path: Path) -> None:
    plan = plan_dependencies(repo(tmp_path, "numpy"), MAP)
    assert plan.ok
    assert plan.base_image is None
    assert any("no python pin" in n.message for n in plan.notes)


@pytest.mark.parametrize("options", [None, ImageOptions(), ImageOptions(python_images={})])
def test_without_a_map_the_pin_is_recorded_not_enforced(
    tmp_path: Path, options: ImageOptions | None
) -> None:
    plan = plan_dependencies(repo(tmp_path, "python=3.9"), options)
    assert plan.ok
    assert (plan.base_image, plan.python_pin) == (None, "3.9")
    assert any("the pin is recorded, not enforced" in n.message for n in plan.notes)


def test_python_pinned_twice_differently_is_an_error(tmp_path: Path) -> None:
    plan = plan_dependencies(repo(tmp_path, "python=3.10", "python=3.11"))
    [problem] = plan.problems
    assert "python is pinned twice: conda.yaml:5 says 'python=3.10' and conda.yaml:6" \
        in problem.message


# conda-only packages


def test_conda_only_packages_without_a_conda_base_are_an_error_listing_them(
    tmp_path: Path,
) -> None:
    plan = plan_dependencies(repo(tmp_path, "numpy", "cudatoolkit=11.8", "conda-forge::cudnn"))
    [problem] = plan.problems
    assert problem.category == "dependencies"
    assert problem.message == ("conda-only packages cannot be installed with pip: "
                               "cudatoolkit=11.8 (conda.yaml:6), conda-forge::cudnn "
                               "(conda.yaml:7)")
    assert "conda_base_image" in problem.hint
    assert plan.conda_packages == []


def test_conda_only_packages_install_with_conda_on_the_conda_base(tmp_path: Path) -> None:
    options = ImageOptions(python_images=PYTHON_IMAGES, conda_base_image="reg.example/conda:1")
    plan = plan_dependencies(repo(tmp_path, "python=3.10", "pytorch=2.1", "cudatoolkit=11.8"),
                             options)
    assert plan.ok, plan.problems
    assert plan.base_image == "reg.example/conda:1"  # the conda base wins over the python map
    assert plan.conda_packages == ["python=3.10", "cudatoolkit=11.8"]
    assert plan.conda_channels == ["conda-forge"]
    assert plan.requirements["learner"] == ["torch==2.1.*"]
    repair = plan.repair_diffs[-1]
    assert repair.diff == (
        "- cudatoolkit=11.8  # conda.yaml:7 (pip cannot install it)",
        "+ cudatoolkit=11.8  # installed with conda from .flops/conda-packages.txt",
    )
    assert any(n.level == "INFO" and "conda-capable base reg.example/conda:1" in n.message
               for n in plan.notes)


def test_a_channel_that_is_not_one_word_is_refused(tmp_path: Path) -> None:
    (tmp_path / "conda.yaml").write_text(
        "channels: ['x; rm -rf /']\ndependencies:\n  - cudnn\n"
    )
    plan = plan_dependencies(tmp_path, ImageOptions(conda_base_image="conda:1"))
    [problem] = plan.problems
    assert "is not a plain channel name" in problem.message
