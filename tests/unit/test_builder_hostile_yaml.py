"""Hostile YAML and requirement lines (issue 9, item 1 and the regular expressions of item 5):
an alias bomb, merge keys, 500 nested `[`, oversized and unbuildable values, and lines made
to make a backtracking regular expression take forever. Each is the exact reproduction, run
through `check-repo` as a user runs it (a real process) or through the builder's own stages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from builder_support import MODEL_MANAGER, check_repo_command, run_builder, write_repo

from reconciler.builder.checks import check_structure
from reconciler.builder.conda import conda_to_pip
from reconciler.builder.deps import plan_dependencies
from reconciler.builder.limits import MAX_YAML_DEPTH, MAX_YAML_NODES
from reconciler.builder.requirements import logical_lines, parse_requirement

ROOT = Path(__file__).resolve().parents[2]


def alias_bomb(levels: int = 8) -> str:
    """8 levels of 10x aliases: 10**8 package strings once expanded, 1.4 KB on disk."""
    names = ", ".join(f'"numpy-{i}==1.26.4"' for i in range(10))
    lines = ["name: fl", "channels: [conda-forge]", f"level0: &level0 [{names}]"]
    for level in range(1, levels):
        refs = ", ".join([f"*level{level - 1}"] * 10)
        lines.append(f"level{level}: &level{level} [{refs}]")
    lines += ["dependencies:", "  - python=3.11", f"  - pip: *level{levels - 1}"]
    return "\n".join(lines) + "\n"


def make_repo(root: Path, conda: str) -> Path:
    return write_repo(root, {"model_manager.py": MODEL_MANAGER, "conda.yaml": conda})


def build(repo: Path) -> tuple[int, str]:
    """The builder run in-process on the committed repository: exit code and stdout."""
    return run_builder(repo)


def test_the_alias_bomb_is_refused_by_check_repo_with_small_output(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "bomb", alias_bomb())
    assert 1000 < len(alias_bomb()) < 2000
    checked = check_repo_command(repo)
    assert checked.returncode == 1, checked.stderr
    assert len(checked.stdout) < 1000 and not checked.stderr
    assert "conda.yaml:4: conda.yaml uses YAML aliases (line 4)" in checked.stdout
    assert "write the list out" in checked.stdout


def test_the_alias_bomb_fails_the_builder_with_a_small_result(tmp_path: Path) -> None:
    code, stdout = build(make_repo(tmp_path / "bomb", alias_bomb()))
    assert code == 1
    assert len(stdout) < 4096
    result = json.loads(stdout.splitlines()[-1])
    assert result["error"]["category"] == "dependencies"
    assert result["error"]["stage"] == "check"
    assert "uses YAML aliases (line 4)" in result["error"]["message"]


def test_a_merge_key_needs_an_alias_and_is_refused_too(tmp_path: Path) -> None:
    conda = ("base: &base {name: fl}\n<<: *base\ndependencies:\n  - numpy\n")
    [problem] = check_structure(make_repo(tmp_path, conda))
    assert (problem.category, problem.file, problem.line) == ("dependencies", "conda.yaml", 2)
    assert problem.message == "conda.yaml uses YAML aliases (line 2)"


def test_an_anchor_without_an_alias_is_harmless_and_accepted(tmp_path: Path) -> None:
    conda = "dependencies: &deps\n  - numpy==1.26.4\n"
    plan = plan_dependencies(make_repo(tmp_path, conda))
    assert plan.ok and plan.requirements["learner"] == ["numpy==1.26.4"]


def test_500_nested_brackets_are_a_dependencies_problem_not_a_crash(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "deep", "dependencies: " + "[" * 500 + "]" * 500 + "\n")
    [problem] = check_structure(repo)
    assert (problem.category, problem.line) == ("dependencies", 1)
    assert f"more than {MAX_YAML_DEPTH} levels deep" in problem.message
    checked = check_repo_command(repo)
    assert checked.returncode == 1, checked.stderr
    code, stdout = build(repo)
    assert code == 1
    assert json.loads(stdout.splitlines()[-1])["error"]["category"] == "dependencies"


def test_deep_block_indentation_is_bounded_the_same_way(tmp_path: Path) -> None:
    lines = "".join(" " * depth + f"k{depth}:\n" for depth in range(300))
    [problem] = check_structure(make_repo(tmp_path, "dependencies: []\n" + lines))
    assert "levels deep" in problem.message and problem.category == "dependencies"


def test_more_yaml_values_than_the_cap_are_refused(tmp_path: Path) -> None:
    conda = "dependencies: [" + ",".join(["a"] * MAX_YAML_NODES) + "]\n"
    [problem] = check_structure(make_repo(tmp_path, conda))
    assert f"more than {MAX_YAML_NODES} YAML values" in problem.message


def test_a_conda_file_over_1_mib_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    conda = "dependencies:\n" + "  - numpy  # " + "x" * (2 * 1024 * 1024) + "\n"
    [problem] = check_structure(make_repo(tmp_path, conda))
    assert problem.category == "repo"
    assert problem.message == ("conda.yaml is 2.0 MiB; the builder reads dependency files up "
                               "to 1 MiB")


@pytest.mark.parametrize("value", ["1" * 5000, "2020-02-31"])
def test_values_yaml_cannot_construct_are_problems_not_crashes(tmp_path: Path, value: str) -> None:
    [problem] = check_structure(make_repo(tmp_path, f"dependencies: [{value}]\n"))
    assert problem.category == "dependencies"
    assert problem.message.startswith("conda.yaml cannot be read: ValueError")


def test_a_character_yaml_refuses_to_read_is_a_syntax_problem(tmp_path: Path) -> None:
    [problem] = check_structure(make_repo(tmp_path, "dependencies:\n  - numpy\x00\n"))
    assert problem.category == "dependencies"
    assert problem.message == ("conda.yaml is not valid YAML: unacceptable character #x0000: "
                               "special characters are not allowed")


def test_a_huge_non_string_entry_is_shown_by_its_start_only(tmp_path: Path) -> None:
    entry = "{" + ", ".join(f"k{i}: [{', '.join(['v'] * 50)}]" for i in range(1000)) + "}"
    plan = plan_dependencies(make_repo(tmp_path, f"dependencies:\n  - {entry}\n"))
    [problem] = plan.problems
    assert len(problem.message) < 400 and "..." in problem.message


def test_operator_specs_that_backtracked_exponentially_fail_at_once() -> None:
    # Before: 18 repetitions took 55 s, each one more tripled it.
    with pytest.raises(ValueError):
        conda_to_pip("numpy " + "==1  " * 5000 + "x")
    assert conda_to_pip("numpy >=1.2 , <2") == ("numpy", "numpy>=1.2,<2")


def test_long_whitespace_runs_in_requirement_lines_cost_linear_time() -> None:
    # Before: 40,000 spaces took 1.4 s to parse and 6 s to strip comments from (quadratic).
    line = "a" + " " * 1_000_000 + "b"
    requirement = parse_requirement(line)
    assert requirement is not None and requirement.name == "a"
    assert logical_lines(line + "  # comment") == [(1, line)]
    assert logical_lines("numpy \\\n" * 100_000)[0][0] == 1


def test_the_rewritten_requirement_parser_reads_what_the_old_one_did() -> None:
    parsed = parse_requirement("Scikit_Learn[alldeps, extra] >= 1.2, <2 ; python_version >= '3.9'"
                               "  --hash=sha256:abc")
    assert parsed is not None
    assert (parsed.name, sorted(parsed.extras), parsed.clauses, parsed.marker) == (
        "scikit-learn", ["alldeps", "extra"], ((">=", "1.2"), ("<", "2")),
        'python_version >= "3.9"')
    url = parse_requirement("pkg @ https://example.org/pkg.whl ; sys_platform == 'linux'")
    assert url is not None and url.url == "https://example.org/pkg.whl"
    assert logical_lines("a==1 # c\n#x\nb \\\n  ==2\n") == [(1, "a==1"), (3, "b   ==2")]


def test_the_builder_program_never_imports_outside_its_package_but_the_protocol() -> None:
    code = ("import sys, reconciler.builder.run, reconciler.builder.limits, "
            "reconciler.builder.repofiles; "
            "print(sorted(m for m in sys.modules if m.startswith('reconciler') "
            "and not m.startswith(('reconciler.builder', 'reconciler.protocol')) "
            "and m != 'reconciler'))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
