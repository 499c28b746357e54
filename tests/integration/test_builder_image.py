"""The image-builder image: built from this project's own files, on the configured base."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

from integration.harness import Workspace, docker


def test_build_builder_makes_a_stamped_image_that_runs_the_builder(
    tmp_path: Path, base_image: str
) -> None:
    image = f"flops-builder-test:{uuid.uuid4().hex[:12]}"
    ws = Workspace(tmp_path / "ws", "local", base_image)
    ws.config.write_text(ws.config.read_text().replace(
        "[builder]\n", f'[builder]\nimage = "{image}"\n'))
    try:
        result = ws.run("build-builder")
        assert result.code == 0, result.stdout + result.stderr
        labels = json.loads(docker("image", "inspect", image, "--format",
                                   "{{json .Config.Labels}}"))
        assert labels["flops.builder-version"]
        assert len(labels["flops.builder-digest"]) == 16
        # Without a request the program must say so as a failed result event, not crash.
        run = subprocess.run(["docker", "run", "--rm", image], capture_output=True, text=True)
        assert run.returncode == 1
        assert '"type":"result"' in run.stdout and '"ok":false' in run.stdout
    finally:
        docker("image", "rm", "--force", image)

