"""Our implementation of ``flops_utils``, the module that FLOps ML repositories import.

FLOps ML repositories (``model_manager.py``, ``data_manager.py``) import a handful of names
from ``flops_utils``; the FL-actor images carry this package so those repositories run
unchanged. The API names are a contract to match (see ``actors/README.md``); the code is
ours. ``PROVIDED`` (read from ``provided.json``, which stays readable with the standard
library alone) lists every public name we provide, per module, so that ``check-repo`` can
name any other ``flops_utils`` import a repository uses before a build.
"""

from __future__ import annotations

import json
from pathlib import Path

PROVIDED_FILE = Path(__file__).with_name("provided.json")


def _load_provided() -> dict[str, frozenset[str]]:
    raw = json.loads(PROVIDED_FILE.read_text(encoding="utf-8"))
    return {module: frozenset(names) for module, names in raw["modules"].items()}


PROVIDED: dict[str, frozenset[str]] = _load_provided()
