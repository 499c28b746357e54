"""Helpers for the FL-actor tests: synthetic MNIST-shaped Parquet data and actor processes.

The learner and aggregator run as real processes (``python -m flops_actor.<role>``); a
reader thread collects their stdout events so a test waits for an event, not for time.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ACTORS_DIR = ROOT / "actors"
SKLEARN_REPO = ROOT / "tests" / "fixtures" / "ml-repos" / "sklearn-mnist"
TOY_REPO = ROOT / "examples" / "toy-regression"

Event = dict[str, Any]
HELD_FIT = '''
    def fit_model(self, epochs: int = 50, learning_rate: float = 0.01) -> int:
        import os
        import time

        self.fits = getattr(self, "fits", 0) + 1
        while self.fits == 2 and not os.path.exists("/flops/data/dev/GO"):
            time.sleep(0.1)  # held in round 2 until the test releases it
        return len(self.train)

'''


def held_in_round_two(model_manager: str) -> str:
    """The example's model_manager.py with a fit_model that waits in round 2 until the file
    GO appears in the learner's data under the tag dev (the test releases it)."""
    return model_manager.replace("    def evaluate_model(",
                                 HELD_FIT.lstrip("\n") + "    def evaluate_model(", 1)

# The actors' packages (flops_utils, flops_actor) are not installed: the images carry the
# folder. Tests that use them in-process import this module first.
if str(ACTORS_DIR) not in sys.path:
    sys.path.insert(0, str(ACTORS_DIR))


def write_mnist_parquet(path: Path, rows: int, seed: int) -> Path:
    """``rows`` 28x28 uint8 images (nested lists) and int labels, every class in the first
    80 %: class k is a bright 6x6 block at a place of its own plus noise, easy to learn."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    labels = np.arange(rows) % 10
    images = rng.integers(0, 60, size=(rows, 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 5)
        images[i, 2 + row * 12 : 8 + row * 12, 1 + col * 5 : 7 + col * 5] = 255
    schema = pa.schema([("image", pa.list_(pa.list_(pa.uint8()))), ("label", pa.int64())])
    table = pa.table({"image": [img.tolist() for img in images], "label": labels}, schema=schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Actor:
    """One actor process; its events arrive through a queue filled by a reader thread."""

    def __init__(self, role: str, repo: Path, env: Mapping[str, str], cwd: Path) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOPS_", "MLFLOW_"))}
        full_env.update(
            {
                "PYTHONPATH": os.pathsep.join([str(ACTORS_DIR), str(repo)]),
                "FLOPS_APP_DIR": str(repo),
                "PYTHONUNBUFFERED": "1",
                **env,
            }
        )
        self.role = role
        self.started = time.monotonic()
        self.events: list[Event] = []
        self._queue: queue.Queue[Event | None] = queue.Queue()
        self.stderr_path = cwd / f"{role}-{id(self)}.stderr"
        self._stderr = self.stderr_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"flops_actor.{role}"],
            env=full_env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            event = json.loads(line)  # a non-JSON line on stdout fails the test loudly
            event["_at"] = time.monotonic() - self.started
            self._queue.put(event)
        self._queue.put(None)

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float = 120) -> Event:
        """Next event (in order) matching ``predicate``; fails at EOF or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.role}: no event matched in {timeout} s: {self.tail()}")
            try:
                event = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if event is None:
                raise AssertionError(f"{self.role} ended without a matching event: {self.tail()}")
            self.events.append(event)
            if predicate(event):
                return event

    def wait_type(self, type_: str, timeout: float = 120) -> Event:
        return self.wait_for(lambda e: e["type"] == type_, timeout)

    def finish(self, timeout: float = 120) -> int:
        """Wait for exit and collect the remaining events; returns the exit status."""
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        while True:
            event = self._queue.get_nowait() if not self._queue.empty() else None
            if event is None:
                break
            self.events.append(event)
        return code

    def of_type(self, type_: str) -> list[Event]:
        return [e for e in self.events if e["type"] == type_]

    def tail(self) -> str:
        self._stderr.flush()
        text = self.stderr_path.read_text(errors="replace")
        return f"events={self.events[-5:]} stderr=...{text[-3000:]}"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self._stderr.close()
