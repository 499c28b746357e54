"""Reading the dependency files: every entry of the conda file (its conda dependencies and
its `pip:` list) and of requirements files, each with the file and line it came from.

Decision: reading is separate from deciding. The collector only records what the files say
(plus the problems that make an entry unusable, and the inlining of `-r` includes, which
changes where a line lives); every merge and role rule works on its output (rules.py).
Files are read through `repofiles` (regular files inside the repository, at most 1 MiB each);
`-r` includes nest at most 10 deep and 50 files in all, and a file already inlined is not read
again, so a diamond of includes costs each file once.
"""

from __future__ import annotations

import posixpath
import reprlib
from pathlib import Path
from typing import Any

from .conda import CONDA_ONLY, CondaDocument, conda_to_pip
from .limits import MAX_DEPENDENCY_FILE_BYTES, MAX_INCLUDE_DEPTH, MAX_INCLUDED_FILES
from .problems import Problem
from .protocol import ROLES
from .repairs import BOTH_ROLES, Repair, added, removed
from .repofiles import UnsafeFile, present, read_bytes, real_name
from .requirements import Entry, logical_lines, parse_requirement, pip_name

_SHOWN = reprlib.Repr()  # a YAML value in a message: its start, never the whole structure
_SHOWN.maxstring = _SHOWN.maxother = 80
_SHOWN.maxlevel = 2


class Collector:
    """Reads every dependency entry with its origin; records problems and inlining repairs."""

    def __init__(self, repo_dir: Path) -> None:
        self.repo_dir = repo_dir
        self.entries: list[Entry] = []
        self.python: list[Entry] = []
        self.conda_only: list[Entry] = []
        self.repairs: list[Repair] = []
        self.problems: list[Problem] = []
        self.included: set[str] = set()

    def problem(self, file: str, message: str, hint: str, line: int | None = None) -> None:
        self.problems.append(Problem("dependencies", file, message, hint, line))

    def conda(self, doc: CondaDocument) -> None:
        data = {} if doc.data is None else doc.data
        if not isinstance(data, dict):
            self.problem(doc.name, f"{doc.name} must be a mapping with a 'dependencies:' key, "
                         f"not a {type(data).__name__}",
                         "start the file with 'name: <env>' and 'dependencies:' lines")
            return
        dependencies = data.get("dependencies") or []
        if not isinstance(dependencies, list):
            self.problem(doc.name, f"'dependencies' in {doc.name} must be a list, not a "
                         f"{type(dependencies).__name__}",
                         "write each dependency on its own line starting with '- '")
            return
        for index, entry in enumerate(dependencies):
            line = doc.lines.get((index,))
            if isinstance(entry, str) and entry.strip():
                self.conda_dependency(doc.name, index, line, entry.strip())
            elif isinstance(entry, dict) and set(entry) == {"pip"}:
                self.pip_section(doc, index, entry["pip"])
            else:
                shown = _SHOWN.repr(entry)
                self.problem(doc.name, f"dependencies[{index}] is {shown}: expected a package "
                             "spec such as 'numpy=1.26' or a 'pip:' list",
                             "write conda packages as strings and pip packages under a single "
                             "'pip:' key", line)

    def conda_dependency(self, file: str, index: int, line: int | None, spec: str) -> None:
        where = f"dependencies[{index}]"
        try:
            conda_name, requirement = conda_to_pip(spec)
        except ValueError as exc:
            if spec.lower().startswith("python") and pip_name(spec) == "python":
                self.python.append(Entry(spec, spec, file, line, where))  # read by the base
                return
            self.problem(file, f"{where}: cannot translate conda spec {spec!r} to pip ({exc})",
                         f"write it as a pip requirement under the 'pip:' list of {file}", line)
            return
        entry = Entry(requirement, spec, file, line, where, parse_requirement(requirement))
        if conda_name == "python":
            self.python.append(entry)
        elif conda_name in CONDA_ONLY:
            self.conda_only.append(Entry(spec, spec, file, line, where))
        elif conda_name != "pip":
            name = pip_name(requirement) or conda_name
            if name != conda_name:
                self.repairs.append(Repair(
                    ROLES, f"{BOTH_ROLES}: installs conda package {conda_name} with pip as {name}",
                    (removed(spec, entry.origin), added(requirement, f"pip's name for {spec}")),
                ))
            self.entries.append(entry)

    def pip_section(self, doc: CondaDocument, index: int, items: Any) -> None:
        if not isinstance(items, list):
            self.problem(doc.name, f"dependencies[{index}].pip must be a list of requirement "
                         "strings", "write the pip section as 'pip:' followed by lines like "
                         "'  - numpy==1.26.4'", doc.lines.get((index,)))
            return
        for sub, item in enumerate(items):
            line = doc.lines.get((index, sub))
            if not isinstance(item, str) or not item.strip():
                shown = _SHOWN.repr(item)
                self.problem(doc.name, f"dependencies[{index}].pip[{sub}] is {shown}, not a "
                             "requirement string", "each pip entry must be a string such as "
                             "'numpy==1.26.4'", line)
                continue
            self.pip_line(item.strip(), Entry(item.strip(), item.strip(), doc.name, line,
                                              f"dependencies[{index}].pip[{sub}]"), (doc.name,))

    def pip_line(self, line: str, at: Entry, chain: tuple[str, ...]) -> None:
        option, _, argument = line.partition(" ")
        if option in ("-r", "--requirement") or line.startswith("--requirement="):
            target = line.split("=", 1)[1] if line.startswith("--requirement=") else argument
            self.include(target.strip(), at, chain)
        elif option in ("-e", "--editable") or line == "." or line.startswith(("./", "../", "/")):
            self.problem(at.file, f"pip requirement {line!r} refers to the repository itself, "
                         "which is not in the image yet when dependencies are installed",
                         "list the packages it needs instead of an editable or local-path "
                         "install", at.line)
        elif not line.startswith("#"):
            self.entries.append(Entry(line, line, at.file, at.line, at.where,
                                      parse_requirement(line)))

    def include(self, target: str, at: Entry, chain: tuple[str, ...]) -> None:
        relative = posixpath.normpath(posixpath.join(posixpath.dirname(at.file), target))
        outside = posixpath.isabs(relative) or relative == ".." or relative.startswith("../")
        if not target or outside or not present(self.repo_dir, relative):
            self.problem(at.file, f"{at.origin} includes {target!r} (-r), which is not a file "
                         "in the repository", f"commit {target} or list its requirements in "
                         f"{at.file}", at.line)
            return
        try:
            name = real_name(self.repo_dir, relative)
        except UnsafeFile as exc:
            self.problems.append(Problem("repo", at.file, f"{at.origin} includes {target!r} "
                                         f"(-r): {exc.message}", exc.hint, at.line))
            return
        if name in chain:
            return
        if name in self.included:
            self.repairs.append(Repair(
                ROLES, f"{BOTH_ROLES}: {name} is included (-r) more than once; its "
                "requirements are inlined once", (removed(at.written, at.origin),),
            ))
            return
        if len(chain) > MAX_INCLUDE_DEPTH or len(self.included) >= MAX_INCLUDED_FILES:
            self.problem(at.file, f"{at.origin} includes {target!r} (-r) beyond the builder's "
                         f"limits ({MAX_INCLUDE_DEPTH} levels of -r, {MAX_INCLUDED_FILES} "
                         "included files)", "list the requirements in fewer files", at.line)
            return
        self.included.add(name)
        start = len(self.entries)
        self.read_requirements(name, (*chain, name))
        self.repairs.append(Repair(
            ROLES, f"{BOTH_ROLES}: inlined the requirements of {name} (included with -r)",
            (removed(at.written, at.origin),
             *(added(e.text, e.origin) for e in self.entries[start:])),
        ))

    def read_requirements(self, name: str, chain: tuple[str, ...]) -> None:
        try:
            raw = read_bytes(self.repo_dir, name, MAX_DEPENDENCY_FILE_BYTES, "dependency files")
            text = raw.decode("utf-8")
        except UnsafeFile as exc:
            self.problems.append(exc.problem())
            return
        except UnicodeDecodeError as exc:
            self.problem(name, f"{name} is not UTF-8 text ({exc.reason})", f"save {name} as UTF-8")
            return
        for number, line in logical_lines(text):
            self.pip_line(line, Entry(line, line, name, number), chain)
