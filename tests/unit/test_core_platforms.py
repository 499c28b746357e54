"""Which platforms a site can build (issue 13): the pure check before a builder starts, the
configuration of [images.platforms], and how a platform's stages read in the observer log."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from reconciler.core.config import Config, PlatformImages
from reconciler.core.events import event_lines, outcome_of
from reconciler.core.platforms import platform_images, platform_of, unbuildable

URL = "http://127.0.0.1:5000"


def config(**images: object) -> Config:
    return Config.model_validate({"registry": URL, "images": images})


def test_a_platform_is_a_base_image_or_a_table() -> None:
    cfg = config(platforms={"linux/arm64": "base:arm64",
                            "linux/s390x": {"base_image": "base:s390x",
                                            "python": {"3.11": "py:s390x"}}})
    assert cfg.images.platforms["linux/arm64"] == PlatformImages(base_image="base:arm64")
    assert cfg.images.platforms["linux/s390x"].python == {"3.11": "py:s390x"}
    assert platform_images(cfg)["linux/s390x"].python_images == {"3.11": "py:s390x"}
    with pytest.raises(ValidationError, match="is not a platform"):
        config(platforms={"arm64": "base:arm64"})
    with pytest.raises(ValidationError, match="base_image"):
        config(platforms={"linux/arm64": {"python": {}}})


def test_the_hosts_own_platform_needs_no_configuration() -> None:
    assert unbuildable(config(), ["linux/amd64"], "linux/amd64", "local") is None
    assert unbuildable(config(), ["linux/arm64"], "linux/arm64", "pi") is None
    problem = unbuildable(config(), ["linux/arm64"], "linux/amd64", "local")
    assert problem is not None and "cannot build linux/arm64 on image-builder host local" \
        in problem and "its own platform is linux/amd64" in problem


def test_every_platform_not_configured_is_named() -> None:
    cfg = config(platforms={"linux/arm64": "base:arm64"})
    both = ["linux/amd64", "linux/arm64"]
    assert unbuildable(cfg, both, "linux/amd64", "local") is None
    problem = unbuildable(cfg, [*both, "linux/riscv64"], "linux/amd64", "local") or ""
    assert "cannot build linux/riscv64 " in problem and "linux/arm64" not in problem
    assert '[images.platforms] "linux/riscv64"' in problem and "buildx" not in problem


def test_more_than_one_platform_needs_a_registry_url() -> None:
    cfg = Config.model_validate({"images": {"platforms": {"linux/arm64": "base:arm64"}}})
    problem = unbuildable(cfg, ["linux/amd64", "linux/arm64"], "linux/amd64", "local") or ""
    assert 'registry = "local"' in problem and "set registry to a URL" in problem
    assert unbuildable(cfg, ["linux/arm64"], "linux/amd64", "local") is None  # one: fine


def test_engine_architectures_read_as_platforms() -> None:
    assert platform_of("linux", "x86_64") == "linux/amd64"
    assert platform_of("linux", "aarch64") == "linux/arm64"
    assert platform_of("", "riscv64") == "linux/riscv64"


def test_a_platforms_stages_and_digests_reach_the_log() -> None:
    end = {"type": "stage", "stage": "build:learner", "platform": "linux/arm64",
           "state": "end", "seconds": 83.2}
    (line,) = event_lines(end)
    assert (line.stage, line.message) == ("build:learner", "linux/arm64 finished in 83.2s")
    result = {"type": "result", "ok": True, "images": {"learner": "r/l:c"},
              "digests": {"learner": "sha256:i"},
              "platform_digests": {"learner": {"linux/amd64": "sha256:a",
                                               "linux/arm64": "sha256:b"}}}
    outcome = outcome_of(result)
    assert outcome.platform_digests == {"learner": {"linux/amd64": "sha256:a",
                                                    "linux/arm64": "sha256:b"}}
    messages = [line.message for line in event_lines(result)]
    assert "image learner r/l:c (sha256:i)" in messages
    assert "image learner r/l:c linux/arm64 (sha256:b)" in messages
    assert outcome_of({**result, "platform_digests": ["junk"]}).platform_digests == {}
