"""The FLOps repository contract, checked statically (DESIGN §1 stage 3): model_manager.py
defines ModelManager with the six methods, data_manager.py defines what model_manager.py takes
from it (datamanager.py), and a dependency file (conda.yaml or requirements.txt) exists and
parses. Every problem names the file and, where there is one, the class, method and line.

Decision: user code is only parsed with `ast`, never imported or executed, so checking an
untrusted repository is safe and needs none of its dependencies. The price: a `ModelManager`
whose methods come from outside model_manager.py cannot be verified, so the contract is that
the methods are defined in that file (in the class, or in a base class defined there too).
Every file is read through `repofiles` (only regular files inside the repository, with a size
cap), and looking for a misplaced file walks at most three levels without entering symlinked
directories.
"""

from __future__ import annotations

import ast
import difflib
import os
from pathlib import Path

from .conda import CONDA_FILES, find_conda_file, read_conda
from .datamanager import check_data_manager
from .problems import Problem, exhausted
from .repofiles import present
from .runtime_imports import check_runtime_imports
from .source import parse, top_level

MODEL_MANAGER_FILE = "model_manager.py"
REQUIREMENTS_FILE = "requirements.txt"
MODEL_MANAGER_CLASS = "ModelManager"
REQUIRED_METHODS = (
    "set_model_data",
    "get_model",
    "get_model_parameters",
    "set_model_parameters",
    "fit_model",
    "evaluate_model",
)
_METHODS_TEXT = ", ".join(REQUIRED_METHODS)
_DEFINE_HINT = (
    f"define class {MODEL_MANAGER_CLASS} in {MODEL_MANAGER_FILE} with the methods {_METHODS_TEXT}"
)


def check_structure(repo_dir: Path) -> list[Problem]:
    """Every way the repository breaks the FLOps structure contract; empty when it is fine."""
    try:
        return (_check_model_manager(repo_dir) + check_runtime_imports(repo_dir)
                + _check_dependency_files(repo_dir))
    except (RecursionError, MemoryError) as exc:
        return [exhausted(exc)]


def _check_model_manager(repo_dir: Path) -> list[Problem]:
    if not present(repo_dir, MODEL_MANAGER_FILE):
        hint = (f"add {MODEL_MANAGER_FILE} at the repository root, defining class "
                f"{MODEL_MANAGER_CLASS} with the methods {_METHODS_TEXT}")
        elsewhere = _found_elsewhere(repo_dir, MODEL_MANAGER_FILE)
        if elsewhere:
            hint = f"move {elsewhere} to the repository root (FLOps imports it from there)"
        return [
            Problem("repo", MODEL_MANAGER_FILE, f"{MODEL_MANAGER_FILE} is missing at the "
                    "repository root", hint)
        ]
    tree, problem = parse(repo_dir, MODEL_MANAGER_FILE)
    if problem is not None or tree is None:
        return [problem] if problem is not None else []
    return _check_class(tree) + check_data_manager(repo_dir, tree)


def _check_class(tree: ast.Module) -> list[Problem]:
    statements = top_level(tree)
    classes = {n.name: n for n in statements if isinstance(n, ast.ClassDef)}
    cls = classes.get(MODEL_MANAGER_CLASS)
    if cls is None:
        return [_missing_class(statements, classes)]
    methods = _methods(cls, classes, set())
    functions = {
        n.name: n.lineno
        for n in statements
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    problems = []
    for method in REQUIRED_METHODS:
        if method in methods:
            problems += _check_signature(methods[method], method)
            continue
        hint = f"add 'def {method}(self, ...)' to class {MODEL_MANAGER_CLASS}"
        if method in functions:
            hint = (f"{method} is a module-level function (line {functions[method]}); "
                    f"indent it into class {MODEL_MANAGER_CLASS} and give it a 'self' parameter")
        problems.append(
            Problem("repo", MODEL_MANAGER_FILE,
                    f"class {MODEL_MANAGER_CLASS} has no method {method}", hint, cls.lineno)
        )
    return problems


def _check_signature(node: ast.AST | None, method: str) -> list[Problem]:
    """A required method that cannot take the instance: FLOps calls it as `manager.method()`."""
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return []
    static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)
    if static or node.args.posonlyargs or node.args.args or node.args.vararg:
        return []
    return [Problem(
        "repo", MODEL_MANAGER_FILE,
        f"method {MODEL_MANAGER_CLASS}.{method} takes no 'self' parameter",
        f"write it as 'def {method}(self, ...)' in class {MODEL_MANAGER_CLASS}", node.lineno,
    )]


def _missing_class(statements: list[ast.stmt], classes: dict[str, ast.ClassDef]) -> Problem:
    message = f"{MODEL_MANAGER_FILE} does not define class {MODEL_MANAGER_CLASS}"
    for node in statements:
        if isinstance(node, ast.ImportFrom | ast.Import) and any(
            (alias.asname or alias.name.split(".")[-1]) == MODEL_MANAGER_CLASS
            for alias in node.names
        ):
            return Problem(
                "repo", MODEL_MANAGER_FILE,
                f"{message} (it imports it at line {node.lineno}, which cannot be checked "
                "without running code)",
                f"define class {MODEL_MANAGER_CLASS} in {MODEL_MANAGER_FILE} itself, "
                f"with the methods {_METHODS_TEXT}",
                node.lineno,
            )
    close = difflib.get_close_matches(MODEL_MANAGER_CLASS, list(classes), n=1, cutoff=0.6)
    if close:
        return Problem("repo", MODEL_MANAGER_FILE, f"{message}; it defines class {close[0]}",
                       f"rename class {close[0]} to {MODEL_MANAGER_CLASS} (the name is "
                       "case-sensitive)", classes[close[0]].lineno)
    return Problem("repo", MODEL_MANAGER_FILE, message, _DEFINE_HINT)


def _methods(
    cls: ast.ClassDef, classes: dict[str, ast.ClassDef], seen: set[str]
) -> dict[str, ast.AST]:
    """Names defined in the class body (-> their node), plus those of bases defined in the
    same module; the class's own definitions win over its bases' (depth first, as before,
    but with a stack: a chain of 5,000 classes must not exhaust Python's)."""
    names: dict[str, ast.AST] = {}
    pending = [cls]
    while pending:
        current = pending.pop()
        if current.name in seen:
            continue
        seen.add(current.name)
        for name, node in _own_names(current).items():
            names.setdefault(name, node)
        pending.extend(
            classes[base.id] for base in reversed(current.bases)
            if isinstance(base, ast.Name) and base.id in classes and base.id not in seen
        )
    return names


def _own_names(cls: ast.ClassDef) -> dict[str, ast.AST]:
    names: dict[str, ast.AST] = {}
    for node in cls.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            names.update((t.id, node) for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
    return names


def _check_dependency_files(repo_dir: Path) -> list[Problem]:
    """A conda file or a requirements.txt must exist; a conda file must parse."""
    name = find_conda_file(repo_dir)
    if name is None:
        if present(repo_dir, REQUIREMENTS_FILE):
            return []
        names = "/".join(CONDA_FILES)
        hint = ("add conda.yaml at the repository root with a 'dependencies:' list "
                f"(conda packages and a 'pip:' sub-list), or a {REQUIREMENTS_FILE}")
        elsewhere = _found_elsewhere(repo_dir, *CONDA_FILES, REQUIREMENTS_FILE)
        if elsewhere:
            hint = f"move {elsewhere} to the repository root"
        return [Problem("repo", CONDA_FILES[0],
                        f"conda.yaml is missing at the repository root (looked for {names} "
                        f"and {REQUIREMENTS_FILE})", hint)]
    _document, problem = read_conda(repo_dir, name)
    return [problem] if problem is not None else []


def _found_elsewhere(repo_dir: Path, *names: str) -> str | None:
    """A file with one of these names one to three levels deeper (shallowest first, then in
    the order of `names`, then by path), for the hint. Only names are compared: nothing is
    read, hidden directories (`.git`, `.venv`) are skipped and symlinked directories are not
    entered (os.walk's default)."""
    found: dict[tuple[int, int], list[str]] = {}
    for root, dirs, files in os.walk(repo_dir):
        relative = Path(root).relative_to(repo_dir)
        depth = len(relative.parts)
        dirs[:] = [d for d in dirs if not d.startswith(".")] if depth < 3 else []
        if depth == 0:
            continue
        for rank, name in enumerate(names):
            if name in files:
                found.setdefault((depth, rank), []).append((relative / name).as_posix())
    if not found:
        return None
    return min(found[min(found)])
