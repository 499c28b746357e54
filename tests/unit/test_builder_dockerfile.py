"""Edits to the rendered FL-actor Dockerfile (reconciler.builder.dockerfile)."""

from __future__ import annotations

import pytest

from reconciler.builder.dockerfile import (
    CONDA_HOOK,
    base_image,
    with_base_image,
    with_conda_hook,
)

RENDERED = (
    "# FL-actor image (learner); FROM in a comment is not a FROM line\n"
    "FROM python:3.11-slim\n\nENV FLOPS_ROLE=learner\nRUN echo FROM x\n"
)


def test_only_the_first_from_image_is_replaced() -> None:
    text = with_base_image(RENDERED + "FROM second AS other\n", "reg.example/py:3.10")
    assert text.splitlines()[1] == "FROM reg.example/py:3.10"
    assert text.splitlines()[0] == RENDERED.splitlines()[0]
    assert "RUN echo FROM x" in text and "FROM second AS other" in text
    assert base_image(text) == "reg.example/py:3.10"


def test_flags_and_the_stage_name_are_kept() -> None:
    text = with_base_image("  from --platform=linux/amd64 base:1 AS build\n", "b@sha256:ab")
    assert text == "  from --platform=linux/amd64 b@sha256:ab AS build\n"


@pytest.mark.parametrize("image", ["a b", "x\nRUN rm -rf /", "", "-flag"])
def test_only_an_image_reference_is_written(image: str) -> None:
    with pytest.raises(ValueError):
        with_base_image(RENDERED, image)


def test_a_dockerfile_without_from_is_refused() -> None:
    with pytest.raises(ValueError):
        with_base_image("RUN true\n", "a:b")


def test_the_conda_hook_follows_the_from_line() -> None:
    text = with_conda_hook(RENDERED)
    lines = text.splitlines()
    assert lines[1] == "FROM python:3.11-slim"
    assert text.index(CONDA_HOOK) > text.index("FROM python")
    assert text.index(CONDA_HOOK) < text.index("ENV FLOPS_ROLE")
    assert "--file /tmp/flops/conda-packages.txt" in CONDA_HOOK


def test_a_template_that_installs_conda_packages_itself_gets_no_hook() -> None:
    template = RENDERED + "COPY .flops/conda-packages.txt /tmp/\n"
    assert with_conda_hook(template) == template
