"""Edits to the rendered FL-actor Dockerfile (reconciler.builder.dockerfile)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.builder.dockerfile import (
    CONDA_HOOK,
    base_image,
    has_stage,
    with_base_image,
    with_conda_hook,
)
from reconciler.core.render import make_environment, render_actor_dockerfile

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"

RENDERED = (
    "# FL-actor image (learner); FROM in a comment is not a FROM line\n"
    "FROM python:3.11-slim\n\nENV FLOPS_ROLE=learner\nRUN echo FROM x\n"
)


# The shape of the shipped template: one stage from the base image, two from that stage.
STAGED = (
    "# FL-actor image (learner)\n"
    "FROM python:3.11-slim AS actor-base\nENV FLOPS_ROLE=learner\n\n"
    "FROM actor-base AS deps\nARG PIP_INDEX_URL\nRUN pip install --root /r -r req.txt\n\n"
    "FROM Actor-Base\nCOPY --from=deps /r/ /\nCOPY . /app\n"
)


def test_the_image_of_the_from_line_is_replaced() -> None:
    text = with_base_image(RENDERED, "reg.example/py:3.10")
    assert text.splitlines()[1] == "FROM reg.example/py:3.10"
    assert text.splitlines()[0] == RENDERED.splitlines()[0]
    assert "RUN echo FROM x" in text
    assert base_image(text) == "reg.example/py:3.10"


def test_every_stage_from_an_image_gets_the_base() -> None:
    two = "FROM base:1 AS deps\nRUN pip install x\n\nFROM base:1\nCOPY --from=deps /r /\n"
    text = with_base_image(two, "reg.example/py:3.10")
    assert text == two.replace("base:1", "reg.example/py:3.10")
    assert base_image(text) == "reg.example/py:3.10"


def test_stages_from_an_earlier_stage_or_scratch_are_left_alone() -> None:
    text = with_base_image(STAGED + "FROM scratch AS empty\n", "reg.example/py:3.10")
    froms = [line for line in text.splitlines() if line.startswith("FROM")]
    # Stage names are case-insensitive, as Docker treats them: "Actor-Base" is the stage.
    assert froms == ["FROM reg.example/py:3.10 AS actor-base", "FROM actor-base AS deps",
                     "FROM Actor-Base", "FROM scratch AS empty"]
    assert text.replace("reg.example/py:3.10", "python:3.11-slim") == STAGED + (
        "FROM scratch AS empty\n")


def test_an_image_named_like_a_later_stage_is_an_image() -> None:
    text = with_base_image("FROM deps AS base\nFROM base AS deps\nFROM deps\n", "b:2")
    assert text == "FROM b:2 AS base\nFROM base AS deps\nFROM deps\n"


def test_flags_and_the_stage_name_are_kept() -> None:
    text = with_base_image("  from --platform=linux/amd64 base:1 AS build\n", "b@sha256:ab")
    assert text == "  from --platform=linux/amd64 b@sha256:ab AS build\n"


@pytest.mark.parametrize("image", ["a b", "x\nRUN rm -rf /", "", "-flag"])
def test_only_an_image_reference_is_written(image: str) -> None:
    with pytest.raises(ValueError):
        with_base_image(RENDERED, image)


@pytest.mark.parametrize("dockerfile", ["RUN true\n", "FROM scratch\nCOPY x /\n"])
def test_a_dockerfile_without_a_stage_from_an_image_is_refused(dockerfile: str) -> None:
    with pytest.raises(ValueError):
        with_base_image(dockerfile, "a:b")
    with pytest.raises(ValueError):
        with_conda_hook(dockerfile)
    assert base_image(dockerfile) is None


def test_the_conda_hook_follows_the_from_line() -> None:
    text = with_conda_hook(RENDERED)
    lines = text.splitlines()
    assert lines[1] == "FROM python:3.11-slim"
    assert text.index(CONDA_HOOK) > text.index("FROM python")
    assert text.index(CONDA_HOOK) < text.index("ENV FLOPS_ROLE")
    assert "--file /tmp/flops/conda-packages.txt" in CONDA_HOOK


def test_the_conda_hook_goes_into_the_stage_the_others_start_from() -> None:
    text = with_conda_hook(STAGED)
    assert text.count(CONDA_HOOK) == 1
    assert text.index("FROM python:3.11-slim AS actor-base") < text.index(CONDA_HOOK)
    assert text.index(CONDA_HOOK) < text.index("ENV FLOPS_ROLE")  # before any other step


def test_every_stage_from_an_image_gets_the_conda_hook() -> None:
    two = "FROM base:1 AS deps\nRUN pip install x\n\nFROM base:1\nCOPY --from=deps /r /\n"
    text = with_conda_hook(two)
    assert text.count(CONDA_HOOK) == 2
    first, second = (i for i, line in enumerate(text.splitlines()) if line.startswith("FROM"))
    lines = text.splitlines()
    assert lines[first + 2] == lines[second + 2] == CONDA_HOOK.splitlines()[0]


def test_a_template_that_installs_conda_packages_itself_gets_no_hook() -> None:
    template = RENDERED + "COPY .flops/conda-packages.txt /tmp/\n"
    assert with_conda_hook(template) == template


def test_the_shipped_template_gets_the_base_and_the_hook_once_in_its_first_stage() -> None:
    rendered = render_actor_dockerfile(make_environment([TEMPLATES]), flavor="sklearn",
                                       base_image="python:3.11-slim", isolate=True)
    text = with_conda_hook(with_base_image(rendered, "reg.example/micromamba:1.5"))
    froms = [line for line in text.splitlines() if line.startswith("FROM")]
    assert froms[0] == "FROM reg.example/micromamba:1.5 AS runtime"
    assert all("micromamba" not in line for line in froms[1:])
    assert base_image(text) == "reg.example/micromamba:1.5"
    assert text.count(CONDA_HOOK) == 1
    assert text.index(froms[0]) < text.index(CONDA_HOOK) < text.index(froms[1])
    assert has_stage(text, "learner") and has_stage(text, "Aggregator")
    assert not has_stage(text, "trainer")
