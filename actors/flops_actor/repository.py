"""Loads the ML repository's ``ModelManager`` from the repository directory.

The repository lives in ``FLOPS_APP_DIR`` (``/app`` in the images); its modules import each
other as top-level modules (``from data_manager import DataManager``), so that directory
goes first on ``sys.path``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

MODULE = "model_manager"
CLASS = "ModelManager"


class RepositoryError(RuntimeError):
    pass


def model_manager_class(app_dir: Path) -> type[Any]:
    source = app_dir / f"{MODULE}.py"
    if not source.is_file():
        raise RepositoryError(f"no {MODULE}.py in the repository directory {app_dir}")
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    try:
        module = importlib.import_module(MODULE)
    except Exception as exc:  # the repository's import-time code can raise anything
        raise RepositoryError(f"importing {source} failed: {describe(exc)}") from exc
    cls = getattr(module, CLASS, None)
    if not isinstance(cls, type):
        raise RepositoryError(f"{source} does not define class {CLASS}")
    return cls


def new_model_manager(app_dir: Path) -> Any:
    cls = model_manager_class(app_dir)
    try:
        return cls()
    except Exception as exc:
        raise RepositoryError(f"{CLASS}() raised {describe(exc)}") from exc


def code_paths(app_dir: Path) -> list[str]:
    """The repository's top-level modules and packages, which a pickled model may need."""
    found = [p for p in app_dir.glob("*.py") if p.is_file()]
    found += [p for p in app_dir.iterdir() if p.is_dir() and (p / "__init__.py").is_file()]
    return sorted(str(p) for p in found)


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
