"""Reading the desired directory: one SLA file per project, each parsed safely and alone.

Decision: a file is data from a possibly careless or hostile author, so it is size-limited,
parsed with the safe (C when present) loader, and rejected when it uses YAML anchors/aliases
(the only way to make a small file expand into a huge tree) or nests deeper than any SLA does
(the C composer and the JSON decoder recurse once per level: a 200 KB file of brackets would
crash the process). Every problem becomes an ``InvalidProject`` for that file alone; reading
never raises for bad content.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from reconciler.core.errors import ConfigError
from reconciler.core.project import Desired, DesiredProject, InvalidProject
from reconciler.core.repo_url import is_local, local_path
from reconciler.core.sla import PROJECT_NAME, SlaError, parse_sla

SUFFIXES = (".yaml", ".yml", ".json")
MAX_BYTES = 256 * 1024
MAX_NODES = 10_000
MAX_DEPTH = 32  # an SLA nests 3 levels deep
# Below this size, with few brackets, a document cannot nest deep enough to hurt the parser,
# so the event pre-scan (a second parse) is only paid for large or bracket-heavy files.
SMALL_DOCUMENT = 8 * 1024
_FastLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_FastLoader):  # type: ignore[valid-type,misc]
    """The safe loader, refusing a key written twice in one mapping (YAML would keep the
    last one silently, so an edit further down could undo one above unnoticed)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[str, int] = {}
        for key_node, _value in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # an SLA's keys are plain words; anything else fails validation
            key, line = str(key_node.value), key_node.start_mark.line + 1
            if key in lines:
                raise SlaError(f"key `{key}` is written twice (lines {lines[key]} and {line}); "
                               "keep one")
            lines[key] = line
        return super().construct_mapping(node, deep)  # type: ignore[no-any-return]


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key written twice in it."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise SlaError(f"key `{key}` is written twice in one object; keep one")
        data[key] = value
    return data
_UNSAFE_NAME = re.compile(r"[^a-z0-9_-]+")


class DesiredDirMissing(ConfigError):
    """The desired directory is not there: an error, never an empty desire (which would
    delete every project)."""


def sla_files(desired_dir: Path) -> list[Path]:
    """Every entry that claims to be an SLA file (by its suffix), whatever it really is:
    `load_file` refuses links out of the directory, directories and FIFOs by name."""
    if not desired_dir.is_dir():
        what = "is not a directory" if desired_dir.exists() else "does not exist"
        raise DesiredDirMissing(
            f"desired directory {desired_dir} {what}; check --desired (or RECONCILER_DESIRED), "
            "or create it: a missing directory is not read as 'no projects'")
    return sorted(
        path
        for path in desired_dir.iterdir()
        if path.suffix in SUFFIXES and not path.name.startswith(".")
    )


def refusal(path: Path) -> str | None:
    """Why ``path`` cannot be read as an SLA file of its directory, or None when it can: it
    must be a regular file there, or a link to a regular file inside the same directory."""
    try:
        info = path.lstat()
    except OSError as error:
        return f"cannot read the file: {error.strerror}"
    if stat.S_ISLNK(info.st_mode):
        try:
            target = path.resolve(strict=True)
        except (OSError, RuntimeError):
            return ("is a symbolic link to nothing (a dangling link); replace it with the SLA "
                    "file itself")
        if target.parent != path.parent.resolve():
            return ("is a symbolic link out of the desired directory; SLA files are read only "
                    "inside it: replace the link with the file itself")
        info = target.stat()
    if stat.S_ISDIR(info.st_mode):
        return "is a directory, not an SLA file; rename it or move it out of desired/"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file (a FIFO, socket or device); only SLA files belong here"
    return None


class FileCache:
    """Parsed SLA files keyed by their stat, so a pass over unchanged files parses nothing.

    A file modified within the last few seconds is always read again: file systems with
    coarse timestamps could otherwise hide a same-size edit made in the same tick.
    """

    TRUST_AFTER = 2.0  # seconds

    def __init__(self) -> None:
        self._entries: dict[str, tuple[tuple[int, int, int, int], Desired]] = {}

    def load(self, path: Path, *, allow_file_repos: bool) -> Desired:
        try:
            info = path.stat()
        except OSError:
            return load_file(path, allow_file_repos=allow_file_repos)
        key = (info.st_mtime_ns, info.st_ctime_ns, info.st_size, info.st_ino)
        cached = self._entries.get(str(path))
        if cached is not None and cached[0] == key:
            return cached[1]
        project = load_file(path, allow_file_repos=allow_file_repos)
        if time.time() - info.st_mtime > self.TRUST_AFTER:
            self._entries[str(path)] = (key, project)
        return project

    def forget_missing(self, present: list[Path]) -> None:
        keep = {str(p) for p in present}
        for name in [n for n in self._entries if n not in keep]:
            del self._entries[name]


def load_desired(
    desired_dir: Path, *, allow_file_repos: bool, cache: FileCache | None = None
) -> dict[str, Desired]:
    files = sla_files(desired_dir)
    if cache is not None:
        cache.forget_missing(files)
        return by_name(cache.load(path, allow_file_repos=allow_file_repos) for path in files)
    return by_name(load_file(path, allow_file_repos=allow_file_repos) for path in files)


def load_committed(
    desired_dir: Path, documents: dict[str, bytes], *, allow_file_repos: bool
) -> dict[str, Desired]:
    """The projects of SLA documents read from git (``--source head``), by file name."""
    return by_name(
        load_file(desired_dir / name, allow_file_repos=allow_file_repos, raw=raw)
        for name, raw in sorted(documents.items())
    )


def by_name(loaded: Iterable[Desired]) -> dict[str, Desired]:
    """Projects by name; two files for one name make that project invalid."""
    projects: dict[str, Desired] = {}
    for project in loaded:
        path = project.sla_file
        twin = projects.get(project.name)
        if twin is not None:
            project = InvalidProject(
                project.name,
                str(path),
                f"{path}: project `{project.name}` is also defined by {twin.sla_file}; "
                "keep one of the two files",
            )
        projects[project.name] = project
    return projects


def load_file(path: Path, *, allow_file_repos: bool, raw: bytes | None = None) -> Desired:
    """One SLA file, read from ``path`` or given as ``raw`` bytes (committed content)."""
    name = path.stem
    if not PROJECT_NAME.match(name):
        return InvalidProject(
            storage_key(name),
            str(path),
            f"{path}: file name `{name}` is not a valid project name; rename the file to "
            "lower-case letters, digits, '-' and '_' (at most 63, starting with a letter "
            "or digit)",
        )
    refused = refusal(path) if raw is None else None
    if refused is not None:
        return InvalidProject(name, str(path), f"{path}: {refused}")
    try:
        data = read_document(path, raw)
        sla = parse_sla(data, allow_file_repos=allow_file_repos)
    except SlaError as error:
        return InvalidProject(name, str(path), f"{path}: {error}")
    if is_local(sla.ml_repo_url):
        absolute = (path.parent / Path(local_path(sla.ml_repo_url)).expanduser()).resolve()
        sla = sla.model_copy(update={"ml_repo_url": str(absolute)})
    return DesiredProject(name, str(path), sla)


def storage_key(name: str) -> str:
    """A safe, collision-free key for a file whose stem is not a valid project name.

    The ``~`` cannot appear in a valid name, so such a key never collides with a real project.
    """
    slug = _UNSAFE_NAME.sub("-", name.lower()).strip("-_")[:40] or "x"
    return f"{slug}~{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def read_document(path: Path, raw: bytes | None = None) -> Any:
    if raw is None:
        try:
            # Non-blocking: a file swapped for a FIFO after `refusal` looked must not hang.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as stream:
                if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                    raise SlaError("is not a regular file; only SLA files belong here")
                raw = stream.read(MAX_BYTES + 1)
        except OSError as error:
            raise SlaError(f"cannot read the file: {error.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise SlaError(f"the file is larger than {MAX_BYTES // 1024} KiB; an SLA is a few lines")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SlaError(f"not UTF-8 text (byte {error.start}); save the file as UTF-8") from None
    if path.suffix == ".json":
        try:
            data = json.loads(text, object_pairs_hook=_unique_pairs)
        except RecursionError:
            raise SlaError(_too_deep()) from None
        except ValueError as error:
            raise SlaError(f"malformed JSON: {error}; fix the syntax") from None
        _reject_shared_nodes(data)
        return data
    try:
        if len(text) > SMALL_DOCUMENT or text.count("[") + text.count("{") > MAX_DEPTH:
            _check_depth(text)
        data = yaml.load(text, Loader=_Loader)
    except RecursionError:
        raise SlaError(_too_deep()) from None
    except yaml.YAMLError as error:
        raise SlaError(f"malformed YAML: {_one_line(error)}; fix the syntax") from None
    _reject_shared_nodes(data)
    return data


def _check_depth(text: str) -> None:
    """Walk the parser's events (no recursion) before anything composes a tree recursively."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise SlaError(_too_deep())
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _too_deep() -> str:
    return f"the document nests deeper than {MAX_DEPTH} levels; an SLA needs 3 at most"


def _reject_shared_nodes(data: Any) -> None:
    """Aliases make the loader reuse one container object; seeing one twice means an alias."""
    seen: set[int] = set()
    stack = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, dict | list):
            continue
        if depth >= MAX_DEPTH:
            raise SlaError(_too_deep())
        if id(node) in seen:
            raise SlaError("YAML anchors and aliases (&, *) are not allowed in an SLA; write "
                           "the values out")
        seen.add(id(node))
        if len(seen) > MAX_NODES:
            raise SlaError(f"the document has more than {MAX_NODES} nested values")
        stack.extend((child, depth + 1) for child in (
            node.values() if isinstance(node, dict) else node
        ))


def _one_line(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{problem}{where}"
