"""The three views of a project the reconciler compares: desired, recorded and in flight.

Decision: the recorded state is one self-contained record per project (what was applied, what
was observed, the running build if any), so every pass can be planned from the desired files
and these records alone, without asking Docker or the network anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict

from reconciler import __version__
from reconciler.builder.repairs import Repair
from reconciler.core.naming import digest_of
from reconciler.core.sla import ProjectSla


class Phase(StrEnum):
    pending = "pending"
    building = "building"
    ready = "ready"
    failed = "failed"
    invalid = "invalid"
    # The record on disk cannot be read: kept as it is, and nothing is done for the project
    # until an operator repairs or removes the file (it never turns into a `create`).
    corrupt = "corrupt"


@dataclass(frozen=True)
class DesiredProject:
    name: str
    sla_file: str
    sla: ProjectSla

    @cached_property
    def image_inputs(self) -> dict[str, Any]:
        return self.sla.image_inputs()

    @cached_property
    def image_digest(self) -> str:
        return digest_of({"inputs": self.image_inputs, "builder": __version__})

    @cached_property
    def sla_digest(self) -> str:
        return digest_of(self.sla_dump)

    @cached_property
    def sla_dump(self) -> dict[str, Any]:
        return self.sla.model_dump(mode="json")


@dataclass(frozen=True)
class InvalidProject:
    name: str
    sla_file: str
    error: str


Desired = DesiredProject | InvalidProject


class BuildRecord(BaseModel):
    """A builder that was started and whose result is not recorded yet."""

    model_config = ConfigDict(extra="ignore")

    key: str
    name: str  # compose project / stack name
    host: str
    commit: str
    images: dict[str, str]
    started_at: str
    events_logged: int = 0
    # The project whose pass started the builder; others with the same key share it.
    leader: str | None = None
    node: str | None = None  # swarm: "<node id> <hostname>" once the task is placed


class ProjectRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    project: str
    phase: Phase
    sla_file: str
    sla: dict[str, Any] | None = None
    sla_digest: str | None = None
    image_digest: str | None = None
    commit: str | None = None
    images: dict[str, str] = {}
    digests: dict[str, str] = {}
    timings: dict[str, float] = {}
    repairs: list[str] = []
    repair_diffs: list[Repair] = []  # the repairs of the last build, with their diffs
    base_image: str | None = None  # the base the last build chose; None: the default base
    error: str | None = None
    build: BuildRecord | None = None
    updated_at: str | None = None
    attempts: int = 0  # failed builds since the image inputs last changed or a re-arm
    retry_at: str | None = None  # no new attempt before this time (ISO-8601 UTC)
    exhausted: bool = False  # attempts reached max_attempts: wait for a change or a re-arm
    waits: int = 0  # failures in a row that were not the project's (outage, no builder node)
    served_by: str | None = None  # the build key whose images this project uses
    # The desired-repository commit that last changed the SLA file: commit, author, date.
    source: dict[str, str] | None = None
