"""Which top-level modules the repository's Python code imports, found with `ast`.

Decision: every `*.py` file of the tree is parsed, never imported, so the scan is safe on
untrusted code; hidden directories (`.git`, `.venv`, `.flops`), `__pycache__` and installed
packages (`site-packages`) are skipped, and a file that does not parse is skipped too (the
structure check reports model_manager.py's syntax; other files are the user's business).
The scan is bounded: symlinked directories are not entered, files are read through `repofiles`
(a link out of the tree, a FIFO or a file over 512 KiB is skipped), and it stops after 2,000
files or 8 MiB of source, saying so (`ImportScan.limited`) instead of pretending it read all.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .limits import MAX_SCANNED_BYTES, MAX_SCANNED_FILES, MAX_SOURCE_FILE_BYTES, size_text
from .repofiles import UnsafeFile, read_bytes

_SKIPPED_DIRS = frozenset({"__pycache__", "site-packages", "node_modules"})


@dataclass(frozen=True)
class ImportScan:
    """Where the module is first imported (`path:line`), or None; and, when the scan did not
    parse every Python file, why (None when it did)."""

    where: str | None
    limited: str | None = None


def _python_files(repo_dir: Path) -> Iterator[str]:
    """Relative names of the tree's `*.py` files, sorted per directory; os.walk does not
    enter symlinked directories."""
    for root, dirs, files in os.walk(repo_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS)
        base = Path(root).relative_to(repo_dir)
        for name in sorted(files):
            if name.endswith(".py"):
                yield (base / name).as_posix()


def _imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name.split(".")[0] for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module.split(".")[0]]
    return []


def _first_import(source: bytes, name: str, module: str) -> int | None:
    try:
        tree = ast.parse(source, filename=name)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    lines = [
        node.lineno for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom) and module in _imported(node)
    ]
    return min(lines) if lines else None


def find_import(repo_dir: Path, module: str) -> ImportScan:
    """The first import of `module` (or a submodule of it) in the tree, within the bounds."""
    files = total = skipped = 0
    for name in _python_files(repo_dir):
        if files >= MAX_SCANNED_FILES or total >= MAX_SCANNED_BYTES:
            return ImportScan(None, f"the import scan stopped after {files} Python files "
                              f"({size_text(total)}; it reads at most {MAX_SCANNED_FILES} files "
                              f"or {size_text(MAX_SCANNED_BYTES)})")
        try:
            source = read_bytes(repo_dir, name, MAX_SOURCE_FILE_BYTES, "Python files")
        except UnsafeFile:
            skipped += 1
            continue
        files += 1
        total += len(source)
        line = _first_import(source, name, module)
        if line is not None:
            return ImportScan(f"{name}:{line}")
    if skipped:
        return ImportScan(None, f"the import scan skipped {skipped} Python file"
                          f"{'s' if skipped > 1 else ''} (symlinks out of the repository, "
                          f"special files or files over {size_text(MAX_SOURCE_FILE_BYTES)})")
    return ImportScan(None)


@dataclass(frozen=True)
class ImportedName:
    """One name the code takes from a package: ``from <module> import <name>`` (``name``
    None for ``import <module>``), where it is written."""

    file: str
    line: int
    module: str
    name: str | None


def names_imported_from(repo_dir: Path, package: str) -> list[ImportedName]:
    """Every absolute import of ``package`` or its submodules in the tree (within the scan's
    bounds; files that do not parse are skipped)."""
    found: list[ImportedName] = []
    files = total = 0
    for name in _python_files(repo_dir):
        if files >= MAX_SCANNED_FILES or total >= MAX_SCANNED_BYTES:
            break
        try:
            source = read_bytes(repo_dir, name, MAX_SOURCE_FILE_BYTES, "Python files")
            tree = ast.parse(source, filename=name)
        except (UnsafeFile, SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        files += 1
        total += len(source)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [ImportedName(name, node.lineno, alias.name, None)
                          for alias in node.names
                          if alias.name.split(".")[0] == package]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                    and node.module.split(".")[0] == package:
                found += [ImportedName(name, node.lineno, node.module, alias.name)
                          for alias in node.names]
    return found
