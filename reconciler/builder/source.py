"""The user's Python source, parsed and never run: syntax problems with their line, the
module-level statements, and the names a module binds.

Decision: "module level" includes the bodies of top-level `if` and `try` blocks (the usual
`try: import x except ImportError: ...` guards), because those run on import too. The source
is untrusted: it is read through `repofiles` (a regular file inside the repository, at most
512 KiB), and a parse that runs out of stack or memory (a 10 KB `1+1+...+1`) is a `repo`
problem like a syntax error, never a crash.
"""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

from .limits import MAX_SOURCE_FILE_BYTES
from .problems import Problem
from .repofiles import UnsafeFile, read_bytes


def parse(repo_dir: Path, name: str) -> tuple[ast.Module | None, Problem | None]:
    """The syntax tree of the repository's file `name`, or a `repo` problem naming the file
    (and the line, for a syntax error)."""
    try:
        source = read_bytes(repo_dir, name, MAX_SOURCE_FILE_BYTES, "Python files")
    except UnsafeFile as exc:
        return None, exc.problem()
    return parse_source(source, name)


def parse_source(source: bytes, name: str) -> tuple[ast.Module | None, Problem | None]:
    """The module's syntax tree, or a `repo` problem naming the file and the line."""
    try:
        return ast.parse(source, filename=name), None
    except SyntaxError as exc:
        return None, Problem("repo", name, f"syntax error: {exc.msg}",
                             f"fix the Python syntax of {name} at line {exc.lineno}", exc.lineno)
    except ValueError as exc:  # e.g. null bytes in the source
        return None, Problem("repo", name, f"cannot be parsed: {exc}",
                             f"make {name} a plain UTF-8 Python source file")
    except RecursionError:
        return None, Problem("repo", name, f"{name} nests expressions too deeply to be parsed "
                             "(RecursionError)", f"split the long expressions and deeply nested "
                             f"code of {name} into smaller pieces")
    except MemoryError:
        return None, Problem("repo", name, f"{name} is too large to be parsed (MemoryError)",
                             f"split {name} into smaller modules")


def top_level(tree: ast.Module) -> list[ast.stmt]:
    """Module-level statements, including those inside top-level if/try blocks."""
    found: list[ast.stmt] = []
    pending: deque[ast.stmt] = deque(tree.body)  # popleft: linear in the statements
    while pending:
        node = pending.popleft()
        found.append(node)
        if isinstance(node, ast.If):
            pending.extend(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            pending.extend(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                pending.extend(handler.body)
    return found


def _target_names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Tuple | ast.List):
        return [name for element in target.elts for name in _target_names(element)]
    return []


def bound_names(statements: list[ast.stmt]) -> dict[str, int] | None:
    """Name -> line of every module-level binding; None when the module can bind names that
    cannot be seen statically (`from x import *`, a module `__getattr__`)."""
    names: dict[str, int] = {}
    for node in statements:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name == "__getattr__":
                return None
            names.setdefault(node.name, node.lineno)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for name in _target_names(target):
                    names.setdefault(name, node.lineno)
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            for name in _target_names(node.target):
                names.setdefault(name, node.lineno)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.name == "*":
                    return None
                names.setdefault(alias.asname or alias.name.split(".")[0], node.lineno)
    return names
