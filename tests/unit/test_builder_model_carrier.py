"""A trained model that reaches the builder as a carrier image (``model_carrier``, a swarm
builder): the engine's archive of ``/model`` unpacked into the model directory, entry by entry
and within bounds, then built as a copied-in model is. The archives here are the reconciler's
own carrier layers (``edges/model_carrier.write_layer_tar``) and hostile hand-made ones.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import IO, Any

import pytest
from builder_support import FakeEngine, model_request, write_model

from reconciler.builder import model_carrier, protocol
from reconciler.builder.engine import EngineError
from reconciler.builder.model_carrier import unpack_model
from reconciler.builder.problems import StageFailure
from reconciler.builder.run import run
from reconciler.edges.model_carrier import write_layer_tar

CARRIER = "127.0.0.1:5000/acme/demo/trained-model-files:run1"


def layer_of(model_dir: Path) -> io.BytesIO:
    out = io.BytesIO()
    write_layer_tar(model_dir, out)
    return out


def hostile(*entries: tuple[str, bytes | None, str]) -> io.BytesIO:
    """A tar of (name, content, link target): a file when content is bytes, a symbolic link
    to the target when it is None."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, content, link in entries:
            info = tarfile.TarInfo(name)
            if content is None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    out.seek(0)
    return out


def files_under(root: Path) -> dict[str, str]:
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        found[rel] = f"-> {os.readlink(path)}" if path.is_symlink() else (
            "dir" if path.is_dir() else path.read_text())
    return found


def test_the_carrier_layer_unpacks_to_the_same_directory(tmp_path: Path) -> None:
    model = write_model(tmp_path / "model")
    (model / "artifacts").mkdir()
    os.symlink("../MLmodel", model / "artifacts" / "MLmodel-link")
    entries = unpack_model(layer_of(model), tmp_path / "out")
    assert files_under(tmp_path / "out") == files_under(model)
    assert entries == len(files_under(model)) + 1  # and model/ itself


def test_the_carrier_layer_is_the_same_for_the_same_model(tmp_path: Path) -> None:
    model = write_model(tmp_path / "model")
    first = layer_of(model).getvalue()
    os.utime(model / "MLmodel", (1, 1))  # times are not in the layer
    assert layer_of(model).getvalue() == first
    os.mkfifo(model / "pipe")  # neither is anything but files, directories and links
    assert layer_of(model).getvalue() == first


@pytest.mark.parametrize(("entries", "named"), [
    ((("model/../../etc/cron.d/x", b"boom", ""),), "outside its model/ directory"),
    ((("/model/x", b"boom", ""),), "outside its model/ directory"),
    ((("other/x", b"boom", ""),), "outside its model/ directory"),
    ((("model/a", b"one", ""), ("model/a", b"two", "")), "is in it twice"),
    # a link made first could carry a later file out of the directory; links come last, so
    # the file makes a real directory and the link then finds its name taken
    ((("model/a", None, "/etc"), ("model/a/passwd", b"boom", "")), "is in it twice"),
])
def test_an_archive_that_breaks_a_rule_is_refused(
    tmp_path: Path, entries: tuple[tuple[str, bytes | None, str], ...], named: str,
) -> None:
    with pytest.raises(StageFailure) as raised:
        unpack_model(hostile(*entries), tmp_path / "out")
    assert raised.value.category == "build" and named in raised.value.message
    assert not (tmp_path / "etc").exists()
    assert not any(p.is_file() and p.read_bytes() == b"boom" and "out" not in p.parts
                   for p in tmp_path.rglob("*"))


def test_links_stay_links_and_are_never_followed(tmp_path: Path) -> None:
    unpack_model(hostile(("model/MLmodel", b"x", ""), ("model/evil", None, "/etc/passwd")),
                 tmp_path / "out")
    assert os.readlink(tmp_path / "out" / "evil") == "/etc/passwd"


def test_an_archive_beyond_the_bounds_is_refused(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_carrier, "MAX_MODEL_ENTRIES", 3)
    many = hostile(*((f"model/f{i}", b"x", "") for i in range(5)))
    with pytest.raises(StageFailure, match="more than 3 entries"):
        unpack_model(many, tmp_path / "a")
    monkeypatch.setattr(model_carrier, "MAX_MODEL_BYTES", 10)
    with pytest.raises(StageFailure, match="more than 10 bytes"):
        unpack_model(hostile(("model/big", b"x" * 11, "")), tmp_path / "b")


class CarrierEngine(FakeEngine):
    """An engine whose registry holds one carrier image (the layer of ``model``)."""

    def __init__(self, model: Path | None, fail_pull: str = "") -> None:
        super().__init__()
        self.layer = layer_of(model).getvalue() if model is not None else b""
        self.fail_pull = fail_pull
        self.calls: list[str] = []

    def pull(self, ref: str) -> None:
        self.calls.append(f"pull {ref}")
        if self.fail_pull:
            raise EngineError(self.fail_pull)

    def copy_from_image(self, image: str, path: str, out: IO[bytes], limit: int) -> None:
        self.calls.append(f"copy {image} {path}")
        out.write(self.layer)

    def remove_image(self, ref: str) -> None:
        self.calls.append(f"remove {ref}")


def build(request: dict[str, Any], engine: FakeEngine) -> tuple[int, list[Any]]:
    out = io.StringIO()
    code = run(json.dumps(request), out, engine_factory=lambda: engine)
    return code, [protocol.decode(line) for line in out.getvalue().splitlines()]


def test_a_model_from_a_carrier_is_built_as_a_copied_one(tmp_path: Path) -> None:
    engine = CarrierEngine(write_model(tmp_path / "trained"))
    model_dir = tmp_path / "builder" / "model"
    code, events = build(model_request(model_dir, model_carrier=CARRIER), engine)
    assert code == 0, events
    assert engine.calls == [f"pull {CARRIER}", f"copy {CARRIER} /model", f"remove {CARRIER}"]
    assert files_under(model_dir) == files_under(tmp_path / "trained")
    messages = [e["message"] for e in events if e["type"] == "log"]
    assert f"model unpacked from {CARRIER} (5 entries)" in messages
    (_tag, _path, _labels, names), = engine.builds
    assert "model/MLmodel" in names and "model/code/model_manager.py" in names


def test_a_carrier_the_engine_cannot_pull_is_infrastructure(tmp_path: Path) -> None:
    engine = CarrierEngine(None, fail_pull="manifest unknown")
    code, events = build(model_request(tmp_path / "model", model_carrier=CARRIER), engine)
    error = events[-1]["error"]
    assert code == 1 and (error["category"], error["stage"]) == ("infrastructure", "model")
    assert f"cannot take the model out of {CARRIER}: manifest unknown" in error["message"]
    assert "must reach that registry" in error["hint"]
    assert engine.calls[-1] == f"remove {CARRIER}" and engine.builds == []
