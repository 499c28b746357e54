"""Benchmark: a no-op resync over N `ready` projects, and peak memory of `watch` over M files.

(b) The controller's periodic resync when nothing changed: every SLA file is re-listed, the
plan is made, and every tracked branch is re-resolved on its remote (real local git
repositories, one `ls-remote` per repository). The baseline is the same resync's unavoidable
part: listing the desired directory and parsing every file once with PyYAML (what a resync
without the stat cache would cost before any work). Both are medians over several rounds.

(c) Peak RSS (VmHWM) of a real `reconciler watch` process over M SLA files whose projects are
all recorded `ready`, after its first pass; the baseline is the RSS of a bare Python process
that imports the same libraries.

    python bench/resync.py [--projects 1000] [--repos 20] [--rounds 7] [--rss-files 10000]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from timing import median_seconds

from reconciler.control.controller import Controller
from reconciler.core.config import Config
from reconciler.core.project import DesiredProject, Phase, ProjectRecord
from reconciler.edges.desired import sla_files
from reconciler.edges.settings import template_dirs
from reconciler.edges.state import StateStore
from reconciler.workspace import Workspace

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
GIT_ENV = {
    **os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}


def make_repos(root: Path, count: int) -> list[tuple[Path, str]]:
    repos = []
    for index in range(count):
        repo = root / f"org/model-{index}"
        repo.mkdir(parents=True)
        subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
        (repo / "README").write_text(f"model {index}\n")
        subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
        subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "init"], check=True,
                       env=GIT_ENV)
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
        repos.append((repo, head))
    return repos


def write_ready_projects(ws: Workspace, repos: list[tuple[Path, str]], count: int,
                         *, ref: str | None) -> None:
    for index in range(count):
        repo, head = repos[index % len(repos)]
        pin = f"ml_repo_ref: {ref or head}\n"
        (ws.desired_dir / f"p{index:05d}.yaml").write_text(
            f"ml_repo_url: {repo}\n{pin}ml_model_flavor: sklearn\n"
            f"training_configuration:\n  training_rounds: {3 + index % 5}\n"
        )
    for project in ws.load_desired().values():
        assert isinstance(project, DesiredProject), project
        head = dict((str(r), h) for r, h in repos)[project.sla.ml_repo_url]
        ws.store.save(ProjectRecord(
            project=project.name, phase=Phase.ready, sla_file=project.sla_file,
            sla=project.sla_dump, sla_digest=project.sla_digest,
            image_digest=project.image_digest, commit=head,
        ))


def resync_figures(projects: int, repos: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo_list = make_repos(root / "remotes", repos)
        config = Config(allow_file_repos=True, registry="http://127.0.0.1:9")
        ws = Workspace(config, root / "desired", StateStore(root / "state"), template_dirs(None))
        ws.desired_dir.mkdir()
        write_ready_projects(ws, repo_list, projects, ref="main")
        controller = Controller(ws)

        def baseline() -> object:
            return [yaml.load(p.read_bytes(), Loader=LOADER) for p in sla_files(ws.desired_dir)]

        def resync() -> None:
            controller.reconcile(follow=False, resync=True)

        base = median_seconds(baseline, rounds) * 1000
        time.sleep(2.1)  # let the files age past the stat cache's trust window once
        resync()  # the first pass fills the stat cache, as a long-running watch has
        measured = median_seconds(resync, rounds) * 1000
        assert all(r.phase is Phase.ready for r in controller.book.snapshot().values())
        assert not (root / "state" / "observers").exists(), "a no-op resync logged something"
    print(f"(b) no-op resync: {projects} ready projects tracking `main` on {repos} repositories")
    print(f"    baseline: list + yaml.load every file  {base:8.1f} ms")
    print(f"    resync (plan + ls-remote per repo)     {measured:8.1f} ms  ratio "
          f"{measured / base:5.2f}x")


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def wait_idle(pid: int, quiet_for: float = 1.5, timeout: float = 300) -> None:
    """Until the process has used no CPU for ``quiet_for`` seconds (its first pass is over)."""
    deadline = time.monotonic() + timeout
    last, since = cpu_ticks(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = cpu_ticks(pid)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_for:
            return
    raise TimeoutError("watch never became idle")


def rss_figures(files: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo_list = make_repos(root / "remotes", 1)
        config = Config(allow_file_repos=True, registry="http://127.0.0.1:9")
        ws = Workspace(config, root / "desired", StateStore(root / "state"), template_dirs(None))
        ws.desired_dir.mkdir()
        write_ready_projects(ws, repo_list, files, ref=None)  # pinned commits: no git calls
        (root / "reconciler.toml").write_text(
            'registry = "http://127.0.0.1:9"\nallow_file_repos = true\nresync_interval = "1h"\n'
        )
        command = [sys.executable, "-m", "reconciler", "--desired", str(ws.desired_dir),
                   "--state", str(root / "state"), "--config", str(root / "reconciler.toml"),
                   "watch"]
        watch = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        bare = subprocess.Popen([sys.executable, "-c",
                                 "import reconciler.cli.reconcile, time; time.sleep(60)"])
        try:
            wait_idle(watch.pid)
            wait_idle(bare.pid)
            watch_kib, bare_kib = peak_rss_kib(watch.pid), peak_rss_kib(bare.pid)
        finally:
            watch.send_signal(signal.SIGTERM)
            bare.kill()
            assert watch.wait(timeout=60) == 0
            bare.wait()
    print(f"(c) peak RSS of `watch` over {files} ready SLA files")
    print(f"    baseline: python importing the same modules {bare_kib / 1024:7.1f} MiB")
    print(f"    watch after its first pass               {watch_kib / 1024:7.1f} MiB  ratio "
          f"{watch_kib / bare_kib:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=1000)
    parser.add_argument("--repos", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--rss-files", type=int, default=10_000)
    args = parser.parse_args()
    resync_figures(args.projects, args.repos, args.rounds)
    rss_figures(args.rss_files)


if __name__ == "__main__":
    main()
