"""Presentation: status rows and the status table, as JSON, plain lines or rich's table.

Decision: a terminal gets rich's table; anything else (a pipe, a CI log) gets plain, stable
lines, because that is what scripts and log collectors read. Only the terminal pays for
importing rich: ``status --json`` and piped output never load it.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from reconciler.core.record import ProjectRecord
from reconciler.core.text import visible
from reconciler.edges.state import StateStore


def dump_json(value: object) -> None:
    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")


def status_row(record: ProjectRecord, store: StateStore) -> dict[str, Any]:
    return {
        "project": record.project,
        "phase": record.phase.value,
        "commit": record.commit,
        "images": record.images,
        "digests": record.digests,
        "platform_digests": record.platform_digests,
        "timings": record.timings,
        "repairs": record.repairs,
        "repair_diffs": [repair.as_json() for repair in record.repair_diffs],
        "base_image": record.base_image,
        "error": record.error,
        "error_category": record.error_category,
        "observer_log": str(store.observer_path(record.project)),
        "sla_file": record.sla_file,
        "source": record.source,
        "builder": record.build.name if record.build else None,
        "builder_node": record.build.node if record.build else None,
        "build_key": record.served_by,
        "attempts": record.attempts,
        "waits": record.waits,
        "retry_at": record.retry_at,
        "exhausted": record.exhausted,
        "updated_at": record.updated_at,
        "training": training_row(record),
        # DESIGN §10: the trained model's server, when deploy_trained_model_image runs one
        "serving": record.training.serving if record.training is not None else None,
    }


def training_row(record: ProjectRecord) -> dict[str, Any] | None:
    """DESIGN §10: the run key, its phase, rounds with metrics, best round, model, times."""
    run = record.training
    if run is None:
        return None
    return {
        "run": run.run, "phase": run.phase.value, "name": run.name,
        "aggregator": run.aggregator, "learners": run.learners,
        "rounds": [{"round": r.round, "loss": r.loss, "accuracy": r.accuracy,
                    "learners": r.learners, "seconds": r.seconds} for r in run.rounds],
        "total_rounds": run.total_rounds, "best_round": run.best_round, "model": run.model,
        "model_image": run.model_image, "model_image_digest": run.model_image_digest,
        "started": run.started, "finished": run.finished,
    }


def phase_text(row: dict[str, Any]) -> str:
    """The phase as `status` shows it: a running training run says its round."""
    training = row.get("training")
    if row["phase"] == "training" and training:
        return f"training round {len(training['rounds'])}/{training['total_rounds']}"
    return str(row["phase"])


def print_status(rows: list[dict[str, Any]], out: TextIO) -> None:
    """Every cell is data (an error may quote an SLA value): shown as plain text, never read as
    rich markup, with terminal control made visible."""
    if out.isatty():
        from reconciler.cli.terminal import print_table  # rich: ~100 ms, for a terminal only

        print_table(rows, out)
        return
    for row in rows:
        detail = row["error"] or " ".join(f"{k}={v}" for k, v in sorted(row["images"].items()))
        out.write(visible(f"{row['project']}\t{phase_text(row)}\t{short_commit(row['commit'])}"
                          f"\t{detail}\t{source_text(row['source'])}") + "\n")


def source_text(source: dict[str, str] | None) -> str:
    if not source:
        return "-"
    return f"{source['commit'][:12]} {source['author']} {source['date']}"


def short_commit(commit: str | None) -> str:
    return commit[:12] if commit else "-"
