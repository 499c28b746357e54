"""The dependency rules, applied to the collected entries: merging packages listed twice,
the python pin, torchvision next to torch, and mlflow for the learner only when its code
imports it.

Decision: a rule never drops or invents a version silently: a merge keeps the one requirement
both entries agree on, torchvision is pinned only from a known torch series, an unpinned mlflow
is kept as is with a warning, and anything else that disagrees is a problem naming both lines.
"""

from __future__ import annotations

from pathlib import Path

from .imports import ImportScan, find_import
from .problems import Problem
from .protocol import ROLES
from .repairs import BOTH_ROLES, Repair, added, kept, removed
from .requirements import Entry, is_option, parse_requirement
from .versions import TORCHVISION_FOR_TORCH, series_text, single_series

# Packages the learner does not need: it does not track experiments, the aggregator does.
LEARNER_DROPS = frozenset({"mlflow", "mlflow-skinny"})


def merge(entries: list[Entry]) -> tuple[list[Entry], list[Repair], list[Problem]]:
    """One entry per package and environment; merges recorded, disagreements reported.

    Linear: the one merged entry of each (name, marker) is found by its key, not by a search.
    """
    merged: list[Entry] = []
    position: dict[tuple[str, str], int] = {}
    repairs: list[Repair] = []
    problems: list[Problem] = []
    for entry in entries:
        new = entry.requirement
        key = (new.name, new.marker) if new is not None else None
        index = position.get(key) if key is not None else None
        if new is None or key is None or index is None:
            if key is not None:
                position[key] = len(merged)
            merged.append(entry)
            continue
        other = merged[index]
        old = other.requirement
        assert old is not None  # only entries with a requirement have a position
        if new.same_as(old) or new.bare or old.bare:
            keep, drop = (entry, other) if old.bare and not new.bare else (other, entry)
            merged[index] = keep
            repairs.append(Repair(
                ROLES, f"{BOTH_ROLES}: merged {new.name}, listed twice ({other.origin} and "
                f"{entry.origin}); installs {keep.text}",
                (removed(drop.written, drop.origin), kept(keep.written, keep.origin)),
            ))
        else:
            problems.append(Problem(
                "dependencies", entry.file,
                f"{new.name} is listed twice with different requirements: {other.origin} "
                f"says {other.written!r} and {entry.origin} says {entry.written!r}",
                f"keep one entry for {new.name} with the version you tested and delete the "
                f"other (to combine ranges write them in one line, e.g. {new.name}>=1.0,<2)",
                entry.line,
            ))
    return merged, repairs, problems


def python_pin(entries: list[Entry]) -> tuple[Entry | None, list[Problem]]:
    """The python pin (None when unpinned) and a problem when it is pinned twice differently."""
    pins = [e for e in entries if e.requirement is None or not e.requirement.bare]
    problems = [
        Problem("dependencies", e.file, f"python is pinned twice: {pins[0].origin} says "
                f"{pins[0].written!r} and {e.origin} says {e.written!r}",
                "keep one python pin and delete the other", e.line)
        for e in pins[1:]
        if e.requirement is None or pins[0].requirement is None
        or not e.requirement.same_as(pins[0].requirement)
    ]
    return (pins[0] if pins else None), problems


def display_pin(python: Entry | None) -> str | None:
    """`python=3.10` -> "3.10"; `python>=3.9` -> ">=3.9"; what the user reads as the pin."""
    if python is None:
        return None
    if python.requirement is None:
        return python.written
    spec = python.requirement.specifier
    if spec.startswith("==") and "," not in spec:
        return spec[2:].removesuffix(".*")
    return spec


def torchvision(
    repo_dir: Path, merged: list[Entry]
) -> tuple[tuple[Entry, Repair] | None, list[str]]:
    """torchvision to add when the code imports it and torch comes without it, and a warning
    when the import scan could not read every Python file."""
    names = {e.requirement.name: e for e in merged if e.requirement is not None}
    torch = names.get("torch")
    if torch is None or "torchvision" in names:
        return None, []
    scan = find_import(repo_dir, "torchvision")
    if scan.where is None:
        return None, [f"{scan.limited}; torchvision was not added: if your code imports it, list "
                      "it next to torch"] if scan.limited else []
    where = scan.where
    series = single_series(torch.requirement.clauses) if torch.requirement else None
    match = TORCHVISION_FOR_TORCH.get(series) if series is not None else None
    if match is not None and series is not None:
        text = f"torchvision=={match}.*"
        why = f"torchvision {match} is the series built for torch {series_text(series)}"
    elif series is not None:
        text = "torchvision"
        why = (f"unpinned: no torchvision series is known to this builder for torch "
               f"{series_text(series)}; pin torchvision yourself")
    else:
        text = "torchvision"
        why = "unpinned: torch is not pinned to one minor version"
    entry = Entry(text, text, "(added)", None, "", parse_requirement(text))
    repair = Repair(
        ROLES, f"{BOTH_ROLES}: added {text} ({where} imports torchvision; {torch.written} "
        f"({torch.origin}) comes without it; {why})",
        (added(text, f"imported at {where}; {why}"),),
    )
    return (entry, repair), []


def roles(
    merged: list[Entry], repo_dir: Path
) -> tuple[dict[str, list[str]], list[Repair], list[str]]:
    """Per-role requirement lines, the learner's mlflow repairs, unpinned-mlflow warnings.

    mlflow goes from the learner only when no module of the repository imports it: a
    `model_manager.py` that does `import mlflow` (e.g. for autolog) needs it to start.
    """
    learner: list[str] = []
    repairs: list[Repair] = []
    warnings: list[str] = []
    scan: ImportScan | None = None
    for entry in merged:
        requirement = entry.requirement
        if requirement is None or requirement.name not in LEARNER_DROPS:
            learner.append(entry.text)
            continue
        scan = scan or find_import(repo_dir, "mlflow")
        if scan.where is not None:
            learner.append(entry.text)
            repairs.append(Repair(
                ("learner",), f"learner: kept {entry.text} ({scan.where} imports mlflow, so "
                "the learner needs it to start)",
                (kept(entry.written, entry.origin),),
            ))
        else:
            unsure = f"; {scan.limited}" if scan.limited else ""
            repairs.append(Repair(
                ("learner",), f"learner: removed {entry.text} (no module of the repository "
                f"imports mlflow{unsure}; the aggregator keeps it)",
                (removed(entry.written, entry.origin),
                 added("(removed for the learner; the aggregator keeps it)")),
            ))
        if not requirement.pinned:
            warnings.append(
                f"{entry.written} ({entry.origin}) is not pinned: the images get whatever "
                f"{requirement.name} release is newest at build time; pin the version you "
                f"tested, e.g. {requirement.name}==<version>"
            )
    requirements = {
        "learner": _installable(learner),
        "aggregator": _installable([e.text for e in merged]),
    }
    return requirements, repairs, warnings


def _installable(lines: list[str]) -> list[str]:
    """Options alone (e.g. --index-url) make pip fail: no requirement, no file content."""
    return lines if any(not is_option(line) for line in lines) else []
