"""The conda environment file: where it is, its YAML with line numbers, and how one conda match
spec becomes a pip requirement.

Decision: the file is composed into YAML nodes (PyYAML's pure-Python SafeLoader) and then
constructed, so every entry of `dependencies:` and of its `pip:` list keeps the line it was
written on, and every message about it can name that line. The file is untrusted: it is read
through `repofiles` (a regular file inside the repository, at most 1 MiB), and the composer
refuses YAML aliases (`*name`, also what merge keys `<<: *name` need) instead of expanding
them, more than `MAX_YAML_DEPTH` nested collections and more than `MAX_YAML_NODES` values, so
neither an alias bomb nor 500 nested `[` can cost more than the bytes of the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .limits import MAX_DEPENDENCY_FILE_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES
from .problems import Problem
from .repofiles import UnsafeFile, present, read_bytes
from .requirements import canonical_name

CONDA_FILES = ("conda.yaml", "conda.yml", "environment.yml", "environment.yaml")
# conda names whose pip distribution has another name.
CONDA_TO_PIP_NAMES = {"pytorch": "torch", "py-xgboost": "xgboost"}
# conda-only packages (CUDA runtimes, compiler runtimes, variant selectors): pip has nothing
# by these names that would do the same. Not listed on purpose: mkl, which PyPI does carry.
CONDA_ONLY = frozenset({
    "cudatoolkit", "cuda-toolkit", "cudnn", "nccl", "pytorch-cuda", "cpuonly", "nomkl",
    "libgcc", "libgcc-ng", "libstdcxx-ng", "libgomp", "_libgcc_mutex", "_openmp_mutex",
})
_CONDA_SPEC = re.compile(
    r"^(?:(?P<channel>[^\s:]+)::)?(?P<name>[A-Za-z0-9_][A-Za-z0-9._-]*)\s*(?P<rest>.*)$"
)
_VERSION = re.compile(r"^[0-9A-Za-z.*+!_-]+$")
# `\s*(?:,\s*)?`, not `\s*,?\s*`: the same strings, but one way to match each run of spaces
# (the other form backtracks exponentially on `==1  ==1  ... x`).
_OPERATOR_SPEC = re.compile(r"^(?:(?:==|!=|>=|<=|~=|>|<)\s*[0-9A-Za-z.*+!_-]+\s*(?:,\s*)?)+$")
_CHANNEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")


@dataclass(frozen=True)
class CondaDocument:
    """A parsed conda file: its data, and the line of each `dependencies` entry.

    `lines` maps `(i,)` to the line of `dependencies[i]` and `(i, j)` to the line of
    `dependencies[i].pip[j]` (1-based).
    """

    name: str
    data: Any
    lines: dict[tuple[int, ...], int] = field(default_factory=dict)

    def channels(self) -> list[str]:
        """The `channels:` list (strings only; `nodefaults` is a switch, not a channel)."""
        value = self.data.get("channels") if isinstance(self.data, dict) else None
        if not isinstance(value, list):
            return []
        return [c.strip() for c in value if isinstance(c, str) and c.strip() != "nodefaults"]


def safe_channel(channel: str) -> bool:
    """A channel name or URL that can be passed to conda on a command line as one word."""
    return bool(_CHANNEL.match(channel))


def find_conda_file(repo_dir: Path) -> str | None:
    """The name of the repository's conda environment file, in order of preference (a link
    counts wherever it points: reading it says what is wrong with it)."""
    for name in CONDA_FILES:
        if present(repo_dir, name):
            return name
    return None


class _Refused(Exception):
    """YAML the builder does not compose, with the line where it starts."""

    def __init__(self, line: int, message: str, hint: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message
        self.hint = hint


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases and bounds nesting and size while composing, before
    any node is built (the parser and scanner are not recursive; the composer is)."""

    def __init__(self, stream: str, name: str) -> None:
        super().__init__(stream)
        self.name = name
        self.depth = 0
        self.nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(line, f"{self.name} uses YAML aliases (line {line})",
                           "write the list out: the builder does not expand YAML aliases "
                           "(*name) or merge keys (<<: *name)")
        self.nodes += 1
        if self.nodes > MAX_YAML_NODES:
            raise _Refused(line, f"{self.name} holds more than {MAX_YAML_NODES} YAML values "
                           f"(line {line})", f"list fewer entries in {self.name}")
        if self.depth >= MAX_YAML_DEPTH:
            raise _Refused(line, f"{self.name} nests collections more than {MAX_YAML_DEPTH} "
                           f"levels deep (line {line})",
                           "a conda file needs four levels (the file, dependencies, a pip "
                           "entry, its list): write it flat")
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def read_conda(repo_dir: Path, name: str) -> tuple[CondaDocument | None, Problem | None]:
    """The parsed file, or a problem: `repo` when the file cannot be read safely, else
    `dependencies` pointing at what is wrong inside it."""
    try:
        raw = read_bytes(repo_dir, name, MAX_DEPENDENCY_FILE_BYTES, "dependency files")
        text = raw.decode("utf-8")
    except UnsafeFile as exc:
        return None, exc.problem()
    except UnicodeDecodeError as exc:
        return None, Problem(
            "dependencies", name, f"{name} is not UTF-8 text ({exc.reason})",
            f"save {name} as UTF-8",
        )
    return parse_conda(name, text)


def parse_conda(name: str, text: str) -> tuple[CondaDocument | None, Problem | None]:
    """The document of a conda file's text, or a `dependencies` problem with its line."""
    try:
        node, data = _load(text, name)
    except _Refused as exc:
        return None, Problem("dependencies", name, exc.message, exc.hint, exc.line)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return None, Problem(
            "dependencies", name, f"{name} is not valid YAML: {reason}",
            f"fix the YAML syntax of {name}"
            + (f" near line {line}" if line is not None else "")
            + " (check indentation and that list items start with '- ')",
            line,
        )
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        # A value the constructor cannot build (a 5,000-digit integer, the 31st of February).
        return None, Problem(
            "dependencies", name, f"{name} cannot be read: {type(exc).__name__}: {exc}",
            f"write {name} as a plain list of package specs",
        )
    return CondaDocument(name, data, _dependency_lines(node)), None


def _load(text: str, name: str) -> tuple[yaml.Node | None, Any]:
    """The root node and the constructed document (the reader checks the characters as it is
    created, so creating it can fail too)."""
    loader = _BoundedLoader(text, name)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()


def _mapping_value(node: yaml.Node, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    found = None
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            found = value_node  # the last one wins, as in the constructed mapping
    return found


def _dependency_lines(root: yaml.Node | None) -> dict[tuple[int, ...], int]:
    lines: dict[tuple[int, ...], int] = {}
    dependencies = _mapping_value(root, "dependencies") if root is not None else None
    if not isinstance(dependencies, yaml.SequenceNode):
        return lines
    for index, item in enumerate(dependencies.value):
        lines[(index,)] = item.start_mark.line + 1
        pip = _mapping_value(item, "pip")
        if isinstance(pip, yaml.SequenceNode):
            for sub, entry in enumerate(pip.value):
                lines[(index, sub)] = entry.start_mark.line + 1
    return lines


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
