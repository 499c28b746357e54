"""The builder's platforms (issue 13): which platform builds from what under which tag, the
check before building, the manifest list, and a two-platform build on a fake engine."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from builder_support import MODEL_MANAGER, FakeEngine, build_request, commit_all, write_repo

from reconciler.builder import run as run_module
from reconciler.builder.engine import EngineError
from reconciler.builder.index import CHILD_TYPES, Child, manifest_list
from reconciler.builder.platforms import check_emulated, targets
from reconciler.builder.problems import StageFailure
from reconciler.builder.run import run
from reconciler.protocol.request import PlatformImages, parse_request

ARM = {"linux/arm64": {"base_image": "flops-base:bookworm-arm64"}}


def request_for(tmp_path: Path, **fields: Any) -> dict[str, Any]:
    repo = write_repo(tmp_path, {"model_manager.py": MODEL_MANAGER,
                                 "conda.yaml": "dependencies:\n  - pip:\n    - numpy\n"})
    return build_request(repo, commit_all(repo), **fields)


def test_one_native_platform_builds_as_always(tmp_path: Path) -> None:
    (target,) = targets(parse_request(json.dumps(request_for(tmp_path))), "linux/amd64", "base")
    assert target.native and target.build_platform is None and target.suffix == ""
    assert target.tag("r/learner:c") == "r/learner:c" and target.dockerfile_key("learner") == \
        "learner"


def test_two_platforms_tag_each_and_take_the_configured_base(tmp_path: Path) -> None:
    req = parse_request(json.dumps(request_for(
        tmp_path, platforms=["linux/amd64", "linux/arm64"], platform_images=ARM, push=True)))
    native, arm = targets(req, "linux/amd64", "flops-base:bookworm")
    assert (native.base_image, native.build_platform) == ("flops-base:bookworm", None)
    assert (arm.base_image, arm.build_platform) == ("flops-base:bookworm-arm64", "linux/arm64")
    assert arm.tag("r/learner:c") == "r/learner:c-linux-arm64"
    assert native.tag("r/learner:c") == "r/learner:c-linux-amd64"


def test_an_unconfigured_platform_fails_naming_it_and_the_fix(tmp_path: Path) -> None:
    req = parse_request(json.dumps(request_for(
        tmp_path, platforms=["linux/amd64", "linux/riscv64"], platform_images=ARM, push=True)))
    with pytest.raises(StageFailure) as caught:
        targets(req, "linux/amd64", "base")
    assert "linux/riscv64" in caught.value.message
    assert '[images.platforms] "linux/riscv64"' in caught.value.hint
    assert "buildx" not in caught.value.message + caught.value.hint


def test_two_platforms_without_a_registry_fail(tmp_path: Path) -> None:
    req = parse_request(json.dumps(request_for(
        tmp_path, platforms=["linux/amd64", "linux/arm64"], platform_images=ARM)))
    with pytest.raises(StageFailure, match='registry "local"'):
        targets(req, "linux/amd64", "base")


def test_the_request_checks_platform_images() -> None:
    ok = {"linux/arm64": {"base_image": "b:1", "python_images": {"3.11": "p:3.11"}}}
    base = build_request(Path("/r"), "a" * 40, platform_images=ok, registry_url="http://r:5000")
    parsed = parse_request(json.dumps(base))
    assert parsed.platform_images == {"linux/arm64": PlatformImages(
        base_image="b:1", python_images={"3.11": "p:3.11"})}
    for bad in ({"arm64": {"base_image": "b"}}, {"linux/arm64": {"base_image": "b c"}},
                {"linux/arm64": {"base_image": "b", "python_images": {"x": "p"}}}):
        with pytest.raises(ValueError, match="platform_images"):
            parse_request(json.dumps({**base, "platform_images": bad}))
    with pytest.raises(ValueError, match="registry_url"):
        parse_request(json.dumps({**base, "registry_url": "ftp://x"}))


class PlatformEngine(FakeEngine):
    """A fake amd64 engine that also holds an arm64 base image and can (or cannot) run it."""

    def __init__(self, runs_arm: bool = True, arm_base_says: str = "linux/arm64") -> None:
        super().__init__()
        self.runs_arm = runs_arm
        self.arm_base_says = arm_base_says
        self.platforms: list[tuple[str, str | None]] = []  # (tag, build platform)
        self.probed: list[tuple[str, str]] = []

    def image_platform(self, ref: str) -> str | None:
        return self.arm_base_says if "arm64" in ref else "linux/amd64"

    def runs(self, image: str, platform: str) -> None:
        self.probed.append((image, platform))
        if not self.runs_arm:
            raise EngineError("exec /bin/sh: exec format error")

    def build(self, context: Any, tag: str, dockerfile_path: str, labels: dict[str, str],
              **options: Any) -> tuple[str, list[str]]:
        self.platforms.append((tag, options.get("platform")))
        return super().build(context, tag, dockerfile_path, labels, **options)


def build(tmp_path: Path, engine: PlatformEngine, monkeypatch: pytest.MonkeyPatch,
          **fields: Any) -> tuple[int, list[dict[str, Any]], list[Any]]:
    published: list[Any] = []

    def publish(url: str, repository: str, tag: str, pushed: list[tuple[str, str]]) -> str:
        published.append((url, repository, tag, list(pushed)))
        return "sha256:" + "1" * 64
    monkeypatch.setattr(run_module, "publish_index", publish)
    out = io.StringIO()
    req = request_for(tmp_path, push=True, registry_url="http://127.0.0.1:5000", **fields)
    code = run(json.dumps(req), out, engine_factory=lambda: engine)
    return code, [json.loads(line) for line in out.getvalue().splitlines()], published


def test_a_two_platform_build_builds_pushes_and_publishes_each_role(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = PlatformEngine()
    code, events, published = build(tmp_path, engine, monkeypatch,
                                    platforms=["linux/amd64", "linux/arm64"], platform_images=ARM)
    result = events[-1]
    assert code == 0, result
    assert engine.probed == [("flops-base:bookworm-arm64", "linux/arm64")]
    built = {(tag.rsplit(":", 1)[0].rsplit("/", 1)[1] + tag[-12:], platform)
             for tag, platform in engine.platforms if not tag.startswith("flops-runtime:")}
    assert built == {("learner-linux-amd64", None), ("aggregator-linux-amd64", None),
                     ("learner-linux-arm64", "linux/arm64"),
                     ("aggregator-linux-arm64", "linux/arm64")}
    runtime = [p for tag, p in engine.platforms if tag.startswith("flops-runtime:")]
    assert runtime == [None, "linux/arm64"]  # one FL runtime image per platform
    assert len(engine.pushed) == 4
    assert [(repo.rsplit("/", 1)[1], [p for p, _ in members])
            for _, repo, _, members in published] == [
        ("learner", ["linux/amd64", "linux/arm64"]),
        ("aggregator", ["linux/amd64", "linux/arm64"])]
    assert result["digests"] == {"learner": "sha256:" + "1" * 64,
                                 "aggregator": "sha256:" + "1" * 64}
    assert set(result["platform_digests"]["learner"]) == {"linux/amd64", "linux/arm64"}
    assert "build:learner linux/arm64" in result["timings"]
    assert "index:aggregator" in result["timings"] and "platforms" in result["timings"]
    stages = [e for e in events if e["type"] == "stage" and e.get("platform") == "linux/arm64"]
    assert {e["stage"] for e in stages} >= {"runtime", "build:learner", "push:learner"}


def test_an_engine_that_cannot_run_the_platform_fails_before_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = PlatformEngine(runs_arm=False)
    code, events, _ = build(tmp_path, engine, monkeypatch,
                            platforms=["linux/amd64", "linux/arm64"], platform_images=ARM)
    error = events[-1]["error"]
    assert code == 1 and error["stage"] == "platforms"
    assert "cannot run linux/arm64 programs" in error["message"]
    assert "qemu-user-static" in error["hint"] and "--platforms linux/arm64" in error["hint"]
    assert engine.platforms == []  # nothing was built


def test_an_unconfigured_platform_fails_in_stage_platforms_before_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = PlatformEngine()
    code, events, _ = build(tmp_path, engine, monkeypatch,
                            platforms=["linux/amd64", "linux/riscv64"], platform_images=ARM)
    error = events[-1]["error"]
    assert code == 1 and error["stage"] == "platforms" and "linux/riscv64" in error["message"]
    assert engine.platforms == [] and engine.probed == []


def test_a_base_image_of_the_wrong_platform_is_named(tmp_path: Path) -> None:
    engine = PlatformEngine(arm_base_says="linux/amd64")
    req = parse_request(json.dumps(request_for(
        tmp_path, platforms=["linux/arm64"], platform_images=ARM)))
    (target,) = targets(req, "linux/amd64", "base")
    with pytest.raises(StageFailure) as caught:
        check_emulated(engine, target, target.base_image)
    assert "is a linux/amd64 image" in caught.value.message
    assert "docker import" in caught.value.hint


def test_one_emulated_platform_builds_under_the_normal_tag_without_an_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = PlatformEngine()
    code, events, published = build(tmp_path, engine, monkeypatch, platforms=["linux/arm64"],
                                    platform_images=ARM)
    assert code == 0 and published == []
    tags = [tag for tag, p in engine.platforms if not tag.startswith("flops-runtime:")]
    assert tags == list(events[-1]["images"].values())  # the normal names
    assert {p for _, p in engine.platforms} == {"linux/arm64"}


def test_the_manifest_list_names_each_platform() -> None:
    document = json.loads(manifest_list([
        Child("linux/amd64", "sha256:a", 10, CHILD_TYPES[0]),
        Child("linux/arm/v7", "sha256:b", 11, CHILD_TYPES[0]),
    ]))
    assert document["mediaType"] == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert [m["platform"] for m in document["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm", "os": "linux", "variant": "v7"}]
    assert [(m["digest"], m["size"]) for m in document["manifests"]] == [
        ("sha256:a", 10), ("sha256:b", 11)]
