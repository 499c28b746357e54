"""The DataManager half of the FLOps structure contract: what model_manager.py takes from
data_manager.py must be defined there.

Decision: the check follows the imports, not a fixed rule. Only when model_manager.py imports
data_manager (`from data_manager import DataManager`, or `import data_manager` and then
`data_manager.DataManager`) must data_manager.py exist and bind every name taken from it;
a repository that loads its data another way is not forced to have a DataManager. At most
`MAX_SHOWN_NAMES` missing names are reported one by one (with a rename suggestion each), then
one problem counts the rest: suggestions cost a comparison with every name the file defines.
"""

from __future__ import annotations

import ast
import difflib
from pathlib import Path

from .limits import MAX_SHOWN_NAMES
from .problems import Problem
from .repofiles import present
from .source import bound_names, parse, top_level

MODULE = "data_manager"
DATA_MANAGER_FILE = f"{MODULE}.py"
MODEL_MANAGER_FILE = "model_manager.py"


def _taken(tree: ast.Module) -> tuple[int | None, list[tuple[str, int]]]:
    """The first line importing data_manager, and (name, line) of every name taken from it."""
    first: int | None = None
    names: list[tuple[str, int]] = []
    aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == MODULE:
            first = node.lineno if first is None else min(first, node.lineno)
            names += [(a.name, node.lineno) for a in node.names if a.name != "*"]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == MODULE or alias.name.startswith(MODULE + "."):
                    first = node.lineno if first is None else min(first, node.lineno)
                    if alias.name == MODULE:
                        aliases.add(alias.asname or MODULE)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and not node.attr.startswith("__")):
            names.append((node.attr, node.lineno))
    return first, sorted(set(names), key=lambda item: (item[1], item[0]))


def check_data_manager(repo_dir: Path, model_tree: ast.Module) -> list[Problem]:
    """Problems with what model_manager.py imports from data_manager; empty when fine."""
    first, names = _taken(model_tree)
    if first is None:
        return []
    shown = DATA_MANAGER_FILE
    package = f"{MODULE}/__init__.py"
    if not present(repo_dir, shown) and present(repo_dir, package):
        shown = package
    if not present(repo_dir, shown):
        wanted = ", ".join(dict.fromkeys(name for name, _line in names)) or "the module"
        return [Problem(
            "repo", MODEL_MANAGER_FILE,
            f"{MODEL_MANAGER_FILE} imports {MODULE} at line {first}, but {DATA_MANAGER_FILE} "
            "is missing at the repository root",
            f"add {DATA_MANAGER_FILE} at the repository root defining {wanted} (or remove the "
            "import)", first,
        )]
    tree, problem = parse(repo_dir, shown)
    if problem is not None or tree is None:
        return [problem] if problem is not None else []
    statements = top_level(tree)
    defined = bound_names(statements)
    if defined is None:
        return []
    classes = {n.name: n.lineno for n in statements if isinstance(n, ast.ClassDef)}
    problems: list[Problem] = []
    reported: set[str] = set()
    missing = [(name, line) for name, line in names if name not in defined]
    for name, line in missing:
        if name in reported:
            continue
        if len(reported) == MAX_SHOWN_NAMES:
            rest = len({n for n, _line in missing} - reported)
            problems.append(Problem(
                "repo", shown, f"{shown} does not define {rest} more names imported by "
                f"{MODEL_MANAGER_FILE}", f"define them in {shown} or remove the imports",
            ))
            break
        reported.add(name)
        hint = f"define {name} in {shown}" + (" (class DataManager with the methods your "
                                               "ModelManager calls)" if name == "DataManager"
                                               else "")
        where: int | None = None
        close = difflib.get_close_matches(name, list(classes) or list(defined), n=1, cutoff=0.6)
        if close:
            where = classes.get(close[0], defined.get(close[0]))
            hint = f"rename {close[0]} to {name} in {shown} (names are case-sensitive)"
        problems.append(Problem(
            "repo", shown,
            f"{shown} does not define {name} (imported by {MODEL_MANAGER_FILE} at line {line})",
            hint, where,
        ))
    return problems
