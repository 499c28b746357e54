"""The three views of a project the reconciler compares: desired, recorded and in flight.

Decision: the recorded state is one self-contained record per project (what was applied, what
was observed, the running build if any; ``core/record.py``), so every pass can be planned from
the desired files and these records alone, without asking Docker or the network anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from reconciler import __version__
from reconciler.core.naming import digest_of
from reconciler.core.record import BuildRecord, Phase, ProjectRecord
from reconciler.core.sla import ProjectSla

__all__ = ["BuildRecord", "Desired", "DesiredProject", "InvalidProject", "Phase",
           "ProjectRecord"]


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
