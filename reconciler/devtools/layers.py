"""The import rules between the project's layers, checked: ``python -m reconciler.devtools.layers``.

Decision: the rules are data (``RULES``), read from the source with ``ast`` (every import
statement, also those inside functions), so a rule that breaks is found without importing or
running anything. Exit status 0 when every rule holds; otherwise one line per broken import.

- ``reconciler.protocol`` (the wire contract) imports only the standard library;
- ``reconciler.builder`` (inside the builder image) imports only the protocol, the standard
  library and PyYAML;
- ``reconciler.core`` (pure) imports neither edges, control, the workspace, the CLI nor the
  builder;
- ``reconciler.edges`` never imports control, the workspace or the CLI;
- ``reconciler.workspace`` and ``reconciler.control`` never import the CLI;
- ``actors`` (programs inside the FL-actor images) import nothing from ``reconciler``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}


@dataclass(frozen=True)
class Rule:
    """Modules under ``layer`` may not import ``forbidden``; with ``only`` set, they may import
    nothing else than those (prefixes of module names) and the standard library."""

    layer: str
    forbidden: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None


RULES = (
    Rule("reconciler.protocol", only=("reconciler.protocol",)),
    Rule("reconciler.builder", only=("reconciler.builder", "reconciler.protocol", "yaml")),
    Rule("reconciler.core", forbidden=("reconciler.edges", "reconciler.control",
                                       "reconciler.workspace", "reconciler.cli",
                                       "reconciler.builder")),
    Rule("reconciler.edges", forbidden=("reconciler.control", "reconciler.workspace",
                                        "reconciler.cli")),
    Rule("reconciler.workspace", forbidden=("reconciler.control", "reconciler.cli")),
    Rule("reconciler.control", forbidden=("reconciler.cli",)),
    Rule("flops_actor", forbidden=("reconciler",)),
    Rule("flops_utils", forbidden=("reconciler",)),
)
SOURCES = (ROOT / "reconciler", ROOT / "actors")


def module_name(path: Path) -> str:
    """``reconciler/core/plan.py`` -> ``reconciler.core.plan``; ``actors/flops_actor/x.py`` ->
    ``flops_actor.x`` (the actors' folder is their import root)."""
    relative = path.relative_to(ROOT / "actors" if ROOT / "actors" in path.parents else ROOT)
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute name) of everything the file imports: ``from a import b`` is ``a.b``."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[: len(parts) - node.level + 1] if node.level else []
            source = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:  # `from a.b import c` may import the module a.b.c
                yield node.lineno, f"{source}.{alias.name}"


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def violations(rules: tuple[Rule, ...] = RULES) -> list[str]:
    found = []
    for source in SOURCES:
        for path in sorted(source.rglob("*.py")):
            module = module_name(path)
            for rule in rules:
                if not _within(module, (rule.layer,)):
                    continue
                for line, name in imports_of(path):
                    if _within(name, rule.forbidden) or (
                            rule.only is not None and not _within(name, rule.only)
                            and name.split(".")[0] not in STDLIB):
                        where = path.relative_to(ROOT)
                        found.append(f"{where}:{line}: {module} imports {name} "
                                     f"(rule for {rule.layer})")
    return found


def main() -> int:
    found = violations()
    for line in found:
        print(line)
    checked = sum(1 for source in SOURCES for _ in source.rglob("*.py"))
    print(f"{len(found)} broken import rule(s) in {checked} files" if found
          else f"every import rule holds ({checked} files, {len(RULES)} rules)")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
