"""Which top-level modules the repository's Python code imports, found with `ast`.

Decision: every `*.py` file of the tree is parsed, never imported, so the scan is safe on
untrusted code; hidden directories (`.git`, `.venv`, `.flops`), `__pycache__` and installed
packages (`site-packages`) are skipped, and a file that does not parse is skipped too (the
structure check reports model_manager.py's syntax; other files are the user's business).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

_SKIPPED_DIRS = frozenset({"__pycache__", "site-packages", "node_modules"})


def _python_files(repo_dir: Path) -> list[Path]:
    found: list[Path] = []
    for root, dirs, files in os.walk(repo_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS)
        found.extend(Path(root) / name for name in sorted(files) if name.endswith(".py"))
    return found


def _imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name.split(".")[0] for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module.split(".")[0]]
    return []


def find_import(repo_dir: Path, module: str) -> str | None:
    """`path:line` of the first import of `module` (or a submodule of it), or None."""
    for path in _python_files(repo_dir):
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError):
            continue
        lines = sorted(
            node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom) and module in _imported(node)
        )
        if lines:
            return f"{path.relative_to(repo_dir).as_posix()}:{lines[0]}"
    return None
