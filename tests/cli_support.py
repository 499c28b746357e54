"""Running the real `reconciler` command as a subprocess in a temporary workspace
(``<tmp>/desired``, ``<tmp>/state``, ``<tmp>/reconciler.toml``), for the CLI tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

VALID = "ml_repo_url: https://example.org/owner/repo.git\nml_model_flavor: sklearn\n"


def command(tmp_path: Path, *args: str) -> list[str]:
    config = tmp_path / "reconciler.toml"
    if not config.exists():
        config.write_text('registry = "local"\n')
    return [
        sys.executable, "-m", "reconciler", "--desired", str(tmp_path / "desired"),
        "--state", str(tmp_path / "state"), "--config", str(config), *args,
    ]


def reconciler(
    tmp_path: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, **(env or {})}
    return subprocess.run(command(tmp_path, *args), capture_output=True, text=True,
                          timeout=120, env=environ)
