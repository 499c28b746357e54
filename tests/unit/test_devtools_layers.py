"""The import rules between layers hold (reconciler/devtools/layers.py), and the check finds
an import that breaks a rule, relative imports included."""

from __future__ import annotations

import subprocess
import sys

from reconciler.devtools.layers import ROOT, Rule, violations


def test_every_import_rule_holds() -> None:
    assert violations() == []


def test_a_broken_rule_is_found_with_its_file_and_line() -> None:
    found = violations((Rule("reconciler.control", forbidden=("reconciler.core.transitions",)),))
    assert any(line.startswith("reconciler/control/runner.py:") and
               "imports reconciler.core.transitions" in line for line in found)


def test_relative_imports_are_resolved() -> None:
    found = violations((Rule("reconciler.builder.run", only=("yaml",)),))
    assert any("reconciler.builder.run imports reconciler.builder.protocol" in line
               for line in found)


def test_the_check_runs_as_a_module() -> None:
    done = subprocess.run([sys.executable, "-m", "reconciler.devtools.layers"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout
    assert "every import rule holds" in done.stdout
