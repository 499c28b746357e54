"""The diff: desired x recorded -> one action per project, each with the reason a person reads.

Decision: planning looks only at the desired files, the recorded state and the commits the
caller observed on the remotes of tracked refs (``remote_commits``), never at Docker, git or
the registry itself. A `ready` project whose image inputs are unchanged and whose ref has not
moved is a `noop`; only `create` and `build` lead the pass to observe more of the world.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from reconciler.core.project import Desired, DesiredProject, InvalidProject, Phase, ProjectRecord
from reconciler.core.record import TrainingPhase, TrainingRecord
from reconciler.core.repo_url import COMMIT
from reconciler.core.sla import IMAGE_KEYS, PostTrainingStep
from reconciler.core.training import run_key, wants_training


class Action(StrEnum):
    create = "create"
    build = "build"
    train = "train"  # start, follow or retry the project's training run
    update = "update"
    delete = "delete"
    noop = "noop"
    invalid = "invalid"


@dataclass(frozen=True)
class PlanItem:
    project: str
    action: Action
    reason: str
    hold: bool = False  # the action is due but waits: a retry backoff or exhausted retries

    def as_json(self) -> dict[str, str | bool]:
        return {
            "project": self.project,
            "action": self.action.value,
            "reason": self.reason,
            "hold": self.hold,
        }


def make_plan(
    desired: dict[str, Desired],
    recorded: dict[str, ProjectRecord],
    now: datetime | None = None,
    remote_commits: Mapping[str, str] | None = None,
) -> list[PlanItem]:
    """One item per project. ``remote_commits``: project -> the commit its tracked ref names
    on the remote now (for the projects of :func:`tracked_refs` that the caller asked)."""
    now = now or datetime.now(UTC)
    moved = remote_commits or {}
    names = sorted(desired.keys() | recorded.keys())
    return [_plan_one(name, desired.get(name), recorded.get(name), now, moved.get(name))
            for name in names]


def tracked_refs(
    desired: dict[str, Desired], recorded: dict[str, ProjectRecord]
) -> dict[str, DesiredProject]:
    """The ready projects whose ref can move (a branch, a tag or the remote's HEAD, not a
    commit id): the ones whose remote a pass must ask to notice a new commit."""
    return {
        name: want for name, want in desired.items()
        if isinstance(want, DesiredProject) and not COMMIT.match(want.sla.ml_repo_ref or "")
        and (have := recorded.get(name)) is not None
        and have.phase in (Phase.ready, Phase.trained)
        and have.image_digest == want.image_digest
    }


def in_sync(plan: list[PlanItem]) -> bool:
    return all(item.action is Action.noop for item in plan)


def _plan_one(
    name: str, want: Desired | None, have: ProjectRecord | None, now: datetime,
    remote_commit: str | None,
) -> PlanItem:
    if have is not None and have.phase is Phase.corrupt:
        return PlanItem(name, Action.invalid, have.error or "corrupt state record", hold=True)
    if want is None:
        assert have is not None
        return PlanItem(name, Action.delete, f"SLA file {have.sla_file} was removed")
    if isinstance(want, InvalidProject):
        return PlanItem(name, Action.invalid, want.error)
    if have is None:
        return PlanItem(name, Action.create, "new project: resolve the ref, then build or adopt")
    if have.phase is Phase.invalid or have.image_digest is None:
        return PlanItem(name, Action.create, "the SLA is valid now: resolve the ref, then build")
    if have.image_digest != want.image_digest:
        changed = _changed_keys(have.sla or {}, want.sla_dump, only=IMAGE_KEYS)
        return PlanItem(name, Action.build, f"image inputs changed: {changed}")
    if have.phase is Phase.building and have.build is not None:
        return PlanItem(
            name,
            Action.build,
            f"builder {have.build.name} running on {have.build.host} since "
            f"{have.build.started_at}: follow it and record its result",
        )
    if have.phase is Phase.failed:
        return _retry(name, have, now)
    if have.phase is Phase.pending:
        return PlanItem(name, Action.build, "pending: no build has started yet")
    if remote_commit is not None and remote_commit != have.commit:
        return PlanItem(name, Action.build, f"new commit {remote_commit} on "
                        f"{want.sla.ml_repo_ref or 'HEAD'} (was {have.commit}): build")
    train = _training(name, want, have)
    if train is not None:
        return train
    if have.sla_digest != want.sla_digest:
        changed = _changed_keys(have.sla or {}, want.sla_dump, only=None)
        return PlanItem(name, Action.update, f"{changed} changed; the images stay as they are")
    if have.phase is Phase.trained and have.training is not None:
        best = have.training.best_round
        return PlanItem(name, Action.noop, f"trained at {have.commit}: run "
                        f"{have.training.run}, best round {best}")
    if not wants_training(want.sla):
        return PlanItem(name, Action.noop, f"ready at {have.commit} (no "
                        "training_configuration: nothing to train)")
    return PlanItem(name, Action.noop, f"ready at {have.commit}")


def _training(name: str, want: DesiredProject, have: ProjectRecord) -> PlanItem | None:
    """The training action of a project whose images exist, or None when its current run
    has finished (or it does not train)."""
    if not wants_training(want.sla):
        return None
    config = want.sla.training_configuration
    key = run_key(training_images(have), config, have.retrain)
    run = have.training
    if run is not None and run.run == key and run.phase is TrainingPhase.finished:
        return _post_training(name, want, run)
    if run is not None and run.run == key:
        if run.phase is TrainingPhase.running:
            return PlanItem(name, Action.train, f"run {key} running since {run.started} "
                            f"(aggregator on {run.aggregator}): follow it")
        if run.phase is TrainingPhase.failed:
            return PlanItem(name, Action.train, f"retry run {key} (attempt "
                            f"{have.attempts + 1})")
        return None
    if run is None:
        why = "the first run of these images"
    elif run.phase is TrainingPhase.running:
        why = f"run {run.run} is replaced (its images or training configuration changed)"
    else:
        old = (have.sla or {}).get("training_configuration")
        why = ("the training configuration changed"
               if old != want.sla_dump.get("training_configuration")
               else "a retrain was requested" if have.retrain else "the images changed")
    return PlanItem(name, Action.train, f"start run {key}: {why} ({config.training_rounds} "
                    f"rounds, data tags {', '.join(config.data_tags) or '(none)'})")


def _post_training(name: str, want: DesiredProject, run: TrainingRecord) -> PlanItem | None:
    """The post-training step a finished run still needs, or None."""
    steps = want.sla.post_training_steps
    if PostTrainingStep.build_image_for_trained_model in steps and run.model_image is None:
        return PlanItem(name, Action.train, f"build the trained-model image of run {run.run}")
    if PostTrainingStep.deploy_trained_model_image in steps and run.serving is None:
        return PlanItem(name, Action.train, f"serve the model of run {run.run} "
                        f"({run.model_image})")
    return None


def training_images(have: ProjectRecord) -> dict[str, str]:
    """What a run key takes from the record: the images and, once built, their digests."""
    return {**{f"image:{r}": ref for r, ref in have.images.items()},
            **{f"digest:{r}": digest for r, digest in have.digests.items()}}


def _retry(name: str, have: ProjectRecord, now: datetime) -> PlanItem:
    if have.exhausted:
        return PlanItem(
            name,
            Action.build,
            f"retries exhausted after {have.attempts} attempts ({have.error}); change the "
            f"image inputs or run `reconciler retry {name}`",
            hold=True,
        )
    if have.retry_at is not None and datetime.fromisoformat(have.retry_at) > now:
        return PlanItem(
            name,
            Action.build,
            f"attempt {have.attempts + 1} waits until {have.retry_at}; the last one failed: "
            f"{have.error}",
            hold=True,
        )
    return PlanItem(name, Action.build, f"retry: the last attempt failed: {have.error}")


def _changed_keys(
    old: dict[str, Any], new: dict[str, Any], *, only: tuple[str, ...] | None
) -> str:
    keys = sorted(_diff_paths(old, new, ""))
    if only is not None:
        keys = [key for key in keys if key.split(".", 1)[0] in only]
    parts = [f"{key}: {_show(_lookup(old, key))} -> {_show(_lookup(new, key))}" for key in keys]
    return ", ".join(parts) or "(builder version)"


def _diff_paths(old: Any, new: Any, prefix: str) -> set[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        paths: set[str] = set()
        for key in old.keys() | new.keys():
            path = f"{prefix}.{key}" if prefix else str(key)
            paths |= _diff_paths(old.get(key), new.get(key), path)
        return paths
    return set() if old == new else {prefix}


def _lookup(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."
