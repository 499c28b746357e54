"""What the repository imports from `flops_utils`, checked against what our runtime provides.

Decision: FLOps ML repositories import `flops_utils`, which the images carry as our own
implementation; a name we do not provide would only fail when a learner starts, rounds into a
training run. So every `flops_utils` import in the tree is compared with the runtime's list of
provided names (`actors/flops_utils/provided.json`) before anything is built, and each one we
do not provide is a `repo` problem naming the file, the line and what is provided instead.
"""

from __future__ import annotations

from pathlib import Path

from .imports import ImportedName, names_imported_from
from .problems import Problem
from .runtime import provided_names

PACKAGE = "flops_utils"


def check_runtime_imports(repo_dir: Path, provided: dict[str, frozenset[str]] | None = None
                          ) -> list[Problem]:
    provided = provided if provided is not None else provided_names()
    return [problem for imported in names_imported_from(repo_dir, PACKAGE)
            if (problem := _problem(imported, provided)) is not None]


def _problem(imported: ImportedName, provided: dict[str, frozenset[str]]) -> Problem | None:
    module, name = imported.module, imported.name
    hint = ("use the names the images provide (README: flops_utils), or keep your own helper "
            "in the repository under another module name")
    if module not in provided:
        parent, _, leaf = module.rpartition(".")
        if parent in provided and leaf in provided[parent]:
            return None  # `import flops_utils.logging`: a provided submodule
        known = ", ".join(sorted(m for m in provided if m != PACKAGE))
        return Problem("repo", imported.file, f"imports {module}, a module of flops_utils "
                       f"these images do not provide (they provide {known})", hint,
                       imported.line)
    if name is None or name == "*" or name in provided[module]:
        return None
    if module == PACKAGE and f"{PACKAGE}.{name}" in provided:
        return None
    names = ", ".join(sorted(provided[module]))
    return Problem("repo", imported.file, f"imports {name} from {module}, which these images "
                   f"do not provide ({module} provides {names})", hint, imported.line)
