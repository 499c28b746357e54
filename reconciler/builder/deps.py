"""Dependency planning: conda.yaml -> one pip requirements list per FL-actor role, plus the
repairs made on the way (DESIGN §1 stage 3).

Decision: the FL-actor images install with pip on a plain Python base, so every conda
dependency is translated to a pip requirement (`name=1.2` -> `name==1.2.*`, conda's fuzzy
match) and the `pip:` sub-list is taken as written; each deviation from what the file says
is recorded as a human-readable repair. Pure apart from reading files; never installs anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .problems import Problem

CONDA_FILES = ("conda.yaml", "conda.yml", "environment.yml", "environment.yaml")
ROLES = ("learner", "aggregator")

# Packages the learner does not need: it does not track experiments, the aggregator does.
LEARNER_DROPS = frozenset({"mlflow", "mlflow-skinny"})
# conda names whose pip distribution has another name.
CONDA_TO_PIP_NAMES = {"pytorch": "torch", "py-xgboost": "xgboost"}
# conda-only packages (toolchains, CUDA runtimes, variant selectors): no pip equivalent.
CONDA_ONLY = frozenset(
    {"cudatoolkit", "cuda-toolkit", "cudnn", "pytorch-cuda", "cpuonly", "nomkl", "libgcc-ng"}
)
# Entries that configure the environment rather than naming a dependency.
SKIPPED = frozenset({"pip", "python"})

_CONDA_SPEC = re.compile(
    r"^(?:(?P<channel>[^\s:]+)::)?(?P<name>[A-Za-z0-9_][A-Za-z0-9._-]*)\s*(?P<rest>.*)$"
)
_PIP_NAME = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)")
_VERSION = re.compile(r"^[0-9A-Za-z.*+!_-]+$")
_OPERATOR_SPEC = re.compile(r"^(?:(?:==|!=|>=|<=|~=|>|<)\s*[0-9A-Za-z.*+!_-]+\s*,?\s*)+$")


@dataclass(frozen=True)
class DependencyPlan:
    """What to install per role, and why it differs from conda.yaml."""

    conda_file: str | None
    python_pin: str | None
    requirements: dict[str, list[str]]
    repairs: list[str]
    role_repairs: dict[str, list[str]]
    warnings: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def canonical_name(name: str) -> str:
    """PEP 503 normalized project name: `Scikit_Learn` -> `scikit-learn`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def find_conda_file(repo_dir: Path) -> Path | None:
    """The repository's conda environment file, in order of preference."""
    for name in CONDA_FILES:
        candidate = repo_dir / name
        if candidate.is_file():
            return candidate
    return None


def load_conda(path: Path) -> tuple[Any, Problem | None]:
    """The parsed YAML document, or a `dependencies` problem pointing at the syntax error."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        text = path.read_text(encoding="utf-8")
        return yaml.load(text, Loader=loader), None
    except UnicodeDecodeError as exc:
        return None, Problem(
            "dependencies", path.name, f"{path.name} is not UTF-8 text ({exc.reason})",
            f"save {path.name} as UTF-8",
        )
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return None, Problem(
            "dependencies", path.name, f"{path.name} is not valid YAML: {reason}",
            f"fix the YAML syntax of {path.name}"
            + (f" near line {line}" if line is not None else "")
            + " (check indentation and that list items start with '- ')",
            line,
        )


def conda_to_pip(spec: str) -> tuple[str, str]:
    """(canonical conda name, pip requirement) for one conda match spec.

    `numpy` -> numpy; `numpy=1.26` -> numpy==1.26.*; `numpy=1.26.4=py311_0` -> numpy==1.26.4.*;
    `numpy==1.26.4`, `numpy>=1.2,<2` -> as pip writes them; `numpy 1.26.4` -> numpy==1.26.4;
    `conda-forge::numpy` -> numpy; `pytorch` -> torch. ValueError when untranslatable.
    """
    match = _CONDA_SPEC.match(spec.strip())
    if match is None:
        raise ValueError("not a conda package spec")
    conda_name = canonical_name(match["name"])
    name = CONDA_TO_PIP_NAMES.get(conda_name, match["name"])
    rest = match["rest"].strip()
    if not rest:
        return conda_name, name
    if rest.startswith("=") and not rest.startswith("=="):
        version = rest[1:].split("=", 1)[0].strip()  # drop a build string
        if not _VERSION.match(version):
            raise ValueError(f"unsupported version {version!r}")
        return conda_name, f"{name}=={version.rstrip('*').rstrip('.')}.*"
    if _OPERATOR_SPEC.match(rest):
        if rest.startswith("==") and rest.count("=") > 2:  # `==1.2=build`
            rest = "==" + rest[2:].split("=", 1)[0]
        return conda_name, name + re.sub(r"\s+", "", rest)
    version = rest.split()[0]
    if _VERSION.match(version) and version[0].isdigit():
        if version.endswith("*"):
            return conda_name, f"{name}=={version.rstrip('*').rstrip('.')}.*"
        return conda_name, f"{name}=={version}"
    raise ValueError(f"unsupported version constraint {rest!r}")


def _python_pin(spec: str) -> str | None:
    """`python=3.10` / `python==3.10.*` / `python 3.10` -> "3.10"; `python>=3.9` kept as is."""
    try:
        _name, requirement = conda_to_pip(spec)
    except ValueError:
        return spec.strip()
    pin = requirement.removeprefix("python")
    if not pin:
        return None
    if pin.startswith("==") and "," not in pin:
        return pin[2:].removesuffix(".*")
    return pin


def _pip_name(requirement: str) -> str | None:
    """The project name of a pip requirement line, or None for options and URLs."""
    stripped = requirement.strip()
    if stripped.startswith("-") or "://" in stripped.split(";")[0].split(" @ ")[0]:
        return None
    match = _PIP_NAME.match(stripped)
    return canonical_name(match["name"]) if match else None


def _is_local_path(line: str) -> bool:
    return line == "." or line.startswith(("./", "../", "/"))


def _is_option(line: str) -> bool:
    return line.strip().startswith("-")


class _Planner:
    """Accumulates requirements, repairs and problems while walking conda.yaml."""

    def __init__(self, repo_dir: Path, conda_name: str) -> None:
        self.repo_dir = repo_dir
        self.conda_name = conda_name
        self.python_pin: str | None = None
        self.conda_reqs: list[tuple[str, str, str]] = []  # (canonical name, requirement, spec)
        self.pip_lines: list[str] = []
        self.repairs: list[tuple[tuple[str, ...], str]] = []
        self.warnings: list[str] = []
        self.problems: list[Problem] = []

    def problem(self, message: str, hint: str) -> None:
        self.problems.append(Problem("dependencies", self.conda_name, message, hint))

    def repair(self, roles: tuple[str, ...], text: str) -> None:
        self.repairs.append((roles, f"{' and '.join(roles)}: {text}"))

    def conda_dependency(self, index: int, spec: str) -> None:
        try:
            conda_name, requirement = conda_to_pip(spec)
        except ValueError as exc:
            self.problem(
                f"dependencies[{index}]: cannot translate conda spec {spec!r} to pip ({exc})",
                f"write it as a pip requirement under the 'pip:' list of {self.conda_name}",
            )
            return
        pip_name = _pip_name(requirement) or conda_name
        if conda_name == "python":
            self.python_pin = _python_pin(spec)
            return
        if conda_name in SKIPPED:
            return
        if conda_name in CONDA_ONLY:
            self.repair(ROLES, f"removed conda-only package {spec.strip()} (no pip equivalent)")
            return
        if pip_name != conda_name:
            self.repair(ROLES, f"installs conda package {conda_name} with pip as {pip_name}")
        self.conda_reqs.append((pip_name, requirement, spec.strip()))

    def pip_section(self, index: int, entries: Any) -> None:
        if not isinstance(entries, list):
            self.problem(
                f"dependencies[{index}].pip must be a list of requirement strings",
                "write the pip section as 'pip:' followed by lines like '  - numpy==1.26.4'",
            )
            return
        for sub, entry in enumerate(entries):
            if not isinstance(entry, str) or not entry.strip():
                self.problem(
                    f"dependencies[{index}].pip[{sub}] is {entry!r}, not a requirement string",
                    "each pip entry must be a string such as 'numpy==1.26.4'",
                )
                continue
            self.pip_line(entry.strip(), (self.conda_name,))

    def pip_line(self, line: str, origin: tuple[str, ...]) -> None:
        option, _, argument = line.partition(" ")
        if option in ("-r", "--requirement") or line.startswith("--requirement="):
            target = line.split("=", 1)[1] if line.startswith("--requirement=") else argument
            self.include(target.strip(), origin)
        elif option in ("-e", "--editable") or _is_local_path(line):
            self.problem(
                f"pip requirement {line!r} refers to the repository itself, which is not in "
                "the image yet when dependencies are installed",
                "list the packages it needs instead of an editable or local-path install",
            )
        elif line.startswith("#"):
            return
        else:
            self.pip_lines.append(line)

    def include(self, target: str, origin: tuple[str, ...]) -> None:
        path = (self.repo_dir / target).resolve()
        if self.repo_dir.resolve() not in path.parents or not path.is_file():
            self.problem(
                f"pip section includes {target!r}, which is not a file in the repository",
                f"commit {target} or list its requirements in {self.conda_name}",
            )
            return
        if target in origin:
            return
        self.repair(ROLES, f"inlined the requirements of {target} (included with -r)")
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.split(" #", 1)[0].strip()
            if line:
                self.pip_line(line, (*origin, target))

    def plan(self) -> dict[str, list[str]]:
        pip_names = {_pip_name(line) for line in self.pip_lines} - {None}
        merged: list[str] = []
        for name, requirement, spec in self.conda_reqs:
            if name in pip_names:
                self.repair(
                    ROLES, f"dropped conda's {spec} in favour of the pip section's entry for "
                    f"{name} (listed twice)"
                )
            else:
                merged.append(requirement)
        merged.extend(self.pip_lines)
        names = {_pip_name(line) for line in merged}
        if "torch" in names and "torchvision" not in names:
            self.warnings.append(
                "torch is listed without torchvision; if the model uses torchvision "
                f"(datasets, transforms, models), add it to {self.conda_name}"
            )
        learner: list[str] = []
        for line in merged:
            if _pip_name(line) in LEARNER_DROPS:
                self.repair(
                    ("learner",), f"removed {line} (the learner does not track experiments; "
                    "the aggregator keeps it)"
                )
            else:
                learner.append(line)
        return {"learner": _installable(learner), "aggregator": _installable(merged)}


def _installable(lines: list[str]) -> list[str]:
    """Options alone (e.g. --index-url) make pip fail: no requirement, no file content."""
    return lines if any(not _is_option(line) for line in lines) else []


def plan_dependencies(repo_dir: Path) -> DependencyPlan:
    """Per-role pip requirements from the repository's conda file; problems when it is unusable."""
    path = find_conda_file(repo_dir)
    empty: dict[str, list[str]] = {role: [] for role in ROLES}
    if path is None:
        missing = Problem(
            "repo", CONDA_FILES[0], "conda.yaml is missing at the repository root",
            "add conda.yaml with a 'dependencies:' list (conda packages and a 'pip:' sub-list)",
        )
        return DependencyPlan(None, None, empty, [], {r: [] for r in ROLES}, [], [missing])
    document, problem = load_conda(path)
    if problem is not None:
        return DependencyPlan(path.name, None, empty, [], {r: [] for r in ROLES}, [], [problem])
    planner = _Planner(repo_dir, path.name)
    _walk(document, planner)
    requirements = planner.plan()
    if planner.problems:
        requirements = empty
    return DependencyPlan(
        conda_file=path.name,
        python_pin=planner.python_pin,
        requirements=requirements,
        repairs=[text for _roles, text in planner.repairs],
        role_repairs={r: [t for roles, t in planner.repairs if r in roles] for r in ROLES},
        warnings=planner.warnings,
        problems=planner.problems,
    )


def _walk(document: Any, planner: _Planner) -> None:
    name = planner.conda_name
    if document is None:
        document = {}
    if not isinstance(document, dict):
        planner.problem(
            f"{name} must be a mapping with a 'dependencies:' key, not a {type(document).__name__}",
            "start the file with 'name: <env>' and 'dependencies:' lines",
        )
        return
    dependencies = document.get("dependencies", [])
    if dependencies is None:
        dependencies = []
    if not isinstance(dependencies, list):
        planner.problem(
            f"'dependencies' in {name} must be a list, not a {type(dependencies).__name__}",
            "write each dependency on its own line starting with '- '",
        )
        return
    for index, entry in enumerate(dependencies):
        if isinstance(entry, str) and entry.strip():
            planner.conda_dependency(index, entry)
        elif isinstance(entry, dict) and set(entry) == {"pip"}:
            planner.pip_section(index, entry["pip"])
        else:
            planner.problem(
                f"dependencies[{index}] is {entry!r}: expected a package spec such as "
                "'numpy=1.26' or a 'pip:' list",
                "write conda packages as strings and pip packages under a single 'pip:' key",
            )
