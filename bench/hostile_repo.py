"""Benchmark: `check-repo` and the builder on hostile ML repositories (issue 9).

For each repository: the wall time and peak RSS of a real `reconciler check-repo PATH`
process (its own rusage, from os.wait4; the repositories are committed, so check-repo clones
them first, as the builder does), its exit code and output size, and the bytes the
builder (`python -m reconciler.builder`, a real process on the committed repository) writes to
stdout, which is what reaches the reconciler's observer log and state for one attempt. The
baseline is a `python -c pass` child measured the same way in the same run; the ratios are
against it. A small good repository is measured too: most of check-repo's time and memory is
the command's own start (imports), the rest is what the hostile content costs. Times are
medians over the rounds, memory the largest peak.

Repositories: the alias bomb (8 levels of 10x aliases, 1.4 KB), 500 nested `[` in conda.yaml,
a 10 KB `1+1+...+1` in model_manager.py, a 10 MB model_manager.py, 20,000 pip entries in
requirements.txt, and the same 20,000 in conda.yaml's pip list and requirements.txt (merged).

    python bench/hostile_repo.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("set_model_data", "get_model", "get_model_parameters", "set_model_parameters",
           "fit_model", "evaluate_model")
MODEL_MANAGER = "class ModelManager:\n" + "".join(
    f"    def {m}(self):\n        pass\n" for m in METHODS
)
CONDA = "dependencies: [numpy]\n"
GIT_ENV = {
    **os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}


# Every measured process is started by this small launcher, itself started before the bench
# makes its large repositories: Linux counts the RSS a child inherits at fork in its ru_maxrss,
# so children of the grown bench process would all report at least the bench's own size.
LAUNCHER = """
import json, os, subprocess, sys, tempfile, time
for line in sys.stdin:
    job = json.loads(line)
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(job["command"], stdout=out, stderr=subprocess.DEVNULL,
                                env=job["env"], cwd=job["cwd"])
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        print(json.dumps([seconds, usage.ru_maxrss, os.waitstatus_to_exitcode(status),
                          out.tell()]), flush=True)
"""


@dataclass(frozen=True)
class Run:
    seconds: float
    max_rss_kib: int
    code: int
    output_bytes: int


class Launcher:
    """Runs commands in children of a small process: wall time, the child's own peak RSS
    (ru_maxrss from wait4, KiB), exit code and stdout size."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", LAUNCHER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def measure(self, command: list[str], env: dict[str, str] | None = None) -> Run:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        job = {"command": command, "env": env or dict(os.environ), "cwd": str(ROOT)}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        seconds, rss, code, output = json.loads(self.proc.stdout.readline())
        return Run(seconds, rss, code, output)

    def median(self, rounds: int, command: list[str]) -> Run:
        runs = [self.measure(command) for _ in range(rounds)]
        return Run(statistics.median(r.seconds for r in runs),
                   max(r.max_rss_kib for r in runs), runs[-1].code, runs[-1].output_bytes)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def alias_bomb(levels: int = 8) -> str:
    names = ", ".join(f'"numpy-{i}==1.26.4"' for i in range(10))
    lines = ["name: fl", "channels: [conda-forge]", f"level0: &level0 [{names}]"]
    for level in range(1, levels):
        refs = ", ".join([f"*level{level - 1}"] * 10)
        lines.append(f"level{level}: &level{level} [{refs}]")
    lines += ["dependencies:", "  - python=3.11", f"  - pip: *level{levels - 1}"]
    return "\n".join(lines) + "\n"


def twenty_thousand() -> str:
    return "".join(f"package-{i}==1.{i}\n" for i in range(20_000))


REPOSITORIES: dict[str, Callable[[], dict[str, str]]] = {
    "control: a small good repository": lambda: {
        "model_manager.py": MODEL_MANAGER, "conda.yaml": CONDA},
    "alias bomb, 8 levels of 10x (1.4 KB)": lambda: {
        "model_manager.py": MODEL_MANAGER, "conda.yaml": alias_bomb()},
    "500 nested [ in conda.yaml": lambda: {
        "model_manager.py": MODEL_MANAGER,
        "conda.yaml": "dependencies: " + "[" * 500 + "]" * 500 + "\n"},
    "10 KB 1+1+...+1 in model_manager.py": lambda: {
        "model_manager.py": MODEL_MANAGER + "x = " + "1+" * 5000 + "1\n", "conda.yaml": CONDA},
    "10 MB model_manager.py": lambda: {
        "model_manager.py": MODEL_MANAGER + "".join(
            f"x{i} = [{i}, {i + 1}]\n" for i in range(600_000)), "conda.yaml": CONDA},
    "20k pip entries in requirements.txt": lambda: {
        "model_manager.py": MODEL_MANAGER, "requirements.txt": twenty_thousand()},
    "20k in conda.yaml's pip list + requirements.txt": lambda: {
        "model_manager.py": MODEL_MANAGER, "requirements.txt": twenty_thousand(),
        "conda.yaml": "dependencies:\n  - python=3.11\n  - pip:\n" + "".join(
            f"    - {line}\n" for line in twenty_thousand().splitlines())},
}


def make_repo(path: Path, files: dict[str, str]) -> str:
    path.mkdir()
    for name, text in files.items():
        (path / name).write_text(text)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "hostile"]):
        subprocess.run(["git", *args], cwd=path, env=GIT_ENV, check=True, capture_output=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, check=True,
                          capture_output=True, text=True).stdout.strip()


def builder_output(launcher: Launcher, tmp: Path, repo: Path, commit: str) -> Run:
    request = {
        "project": "bench", "build_key": "k", "repo_url": str(repo), "commit": commit,
        "images": {r: f"flops.local/bench/{r}:{commit}" for r in ("learner", "aggregator")},
        "dockerfiles": {r: "FROM python:3.11-slim\n" for r in ("learner", "aggregator")},
    }
    request_file = tmp / f"{repo.name}.request.json"
    request_file.write_text(json.dumps(request))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DOCKER_HOST": "unix:///nonexistent.sock",
           "FLOPS_BUILD_REQUEST_FILE": str(request_file)}
    return launcher.measure([sys.executable, "-m", "reconciler.builder"], env)


def size(count: int) -> str:
    return f"{count / 1024:.1f} KiB" if count >= 1024 else f"{count} B"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    launcher = Launcher()
    base = launcher.median(args.rounds, [sys.executable, "-c", "pass"])
    print(f"check-repo on hostile repositories (median of {args.rounds}; peak RSS of the "
          "child process, ru_maxrss)")
    print(f"{'repository':<48}{'exit':>5}{'time':>10}{'x base':>8}{'peak RSS':>11}{'x base':>8}"
          f"{'output':>11}{'builder stdout':>16}")
    print(f"{'baseline: python -c pass':<48}{base.code:>5}{base.seconds:>9.3f}s{1:>7.1f}x"
          f"{base.max_rss_kib / 1024:>7.1f} MiB{1:>7.1f}x")
    with tempfile.TemporaryDirectory(prefix="flops-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        config = tmp / "reconciler.toml"
        config.write_text('registry = "local"\n')
        for index, (title, files) in enumerate(REPOSITORIES.items()):
            repo = tmp / f"repo{index}"
            commit = make_repo(repo, files())
            checked = launcher.median(args.rounds, [sys.executable, "-m", "reconciler",
                                                    "--config", str(config), "check-repo",
                                                    str(repo)])
            built = builder_output(launcher, tmp, repo, commit)
            print(f"{title:<48}{checked.code:>5}{checked.seconds:>9.3f}s"
                  f"{checked.seconds / base.seconds:>7.1f}x"
                  f"{checked.max_rss_kib / 1024:>7.1f} MiB"
                  f"{checked.max_rss_kib / base.max_rss_kib:>7.1f}x"
                  f"{size(checked.output_bytes):>11}{size(built.output_bytes):>16}")
    launcher.close()


if __name__ == "__main__":
    main()
