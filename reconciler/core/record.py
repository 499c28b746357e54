"""A project's recorded state: the one record per project the state directory keeps, and its JSON.

Decision: a record is a frozen dataclass with one parser (``parse_record``) and one serializer
(``record_json``), standard library only: read commands such as ``status`` load a whole state
directory without importing a validation library, so they start in tens of milliseconds. The
parser is strict about every field's type (a record that does not fit is an error, which the
state store shows as a `corrupt` record) and ignores keys it does not know (a record written
by a newer reconciler still reads).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, TypeVar, Union, cast, get_args, get_origin, get_type_hints

from reconciler.protocol.repair import Repair


class Phase(StrEnum):
    pending = "pending"
    building = "building"
    ready = "ready"
    failed = "failed"
    invalid = "invalid"
    # The record on disk cannot be read: kept as it is, and nothing is done for the project
    # until an operator repairs or removes the file (it never turns into a `create`).
    corrupt = "corrupt"
    training = "training"  # the images are ready and a training run is under way
    trained = "trained"  # the images are ready and the current run has finished

    @property
    def has_images(self) -> bool:
        """The project's images exist for its recorded commit."""
        return self in (Phase.ready, Phase.training, Phase.trained)


class TrainingPhase(StrEnum):
    running = "running"
    finished = "finished"
    failed = "failed"


@dataclass(frozen=True)
class RoundRecord:
    """One training round as the aggregator reported it (accuracy weighted by examples)."""

    round: int
    loss: float | None
    accuracy: float | None
    learners: int
    seconds: float


@dataclass(frozen=True)
class TrainingRecord:
    """A training run: its key, where its actors run, what it reported so far."""

    run: str  # the run key (core/training.run_key)
    phase: TrainingPhase
    name: str  # the run's service name: compose projects and swarm stacks start with it
    aggregator: str  # the host (swarm: the manager) the aggregator runs on
    learners: list[str]  # the hosts (swarm: the label) with a learner each
    total_rounds: int
    started: str
    rounds: list[RoundRecord] = field(default_factory=list)
    best_round: int | None = None
    model: str | None = None  # the saved model's directory, under the state directory
    finished: str | None = None
    events_logged: int = 0  # aggregator events already in the observer log
    # post_training_steps: the trained-model image (and its digest) and where it is served
    model_image: str | None = None
    model_image_digest: str | None = None
    serving: str | None = None  # the base URL of the model's server, e.g. http://h:32771


@dataclass(frozen=True)
class BuildRecord:
    """A builder that was started and whose result is not recorded yet."""

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


@dataclass(frozen=True)
class ProjectRecord:
    project: str
    phase: Phase
    sla_file: str
    sla: dict[str, Any] | None = None
    sla_digest: str | None = None
    image_digest: str | None = None
    commit: str | None = None
    images: dict[str, str] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)
    # role -> platform -> digest of that platform's image; ``digests`` are the images' own
    # (a multi-platform image's: its index)
    platform_digests: dict[str, dict[str, str]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    repairs: list[str] = field(default_factory=list)
    repair_diffs: list[Repair] = field(default_factory=list)  # the last build's, with diffs
    base_image: str | None = None  # the base the last build chose; None: the default base
    error: str | None = None  # "<category>: <message>", as users read it
    # The category of ``error`` (repo, dependencies, build, push, infrastructure): what the
    # retry policy and the controller decide on, never the text.
    error_category: str | None = None
    build: BuildRecord | None = None
    updated_at: str | None = None
    attempts: int = 0  # failed builds since the image inputs last changed or a re-arm
    retry_at: str | None = None  # no new attempt before this time (ISO-8601 UTC)
    exhausted: bool = False  # attempts reached max_attempts: wait for a change or a re-arm
    waits: int = 0  # failures in a row that were not the project's (outage, no builder node)
    served_by: str | None = None  # the build key whose images this project uses
    # The desired-repository commit that last changed the SLA file: commit, author, date.
    source: dict[str, str] | None = None
    training: TrainingRecord | None = None  # the current (or last) training run
    retrain: int = 0  # forced retrains (`reconciler retrain`): part of the run key


class RecordError(ValueError):
    """A record document that does not fit the record's fields; ``str()`` names the field."""


def parse_record(data: str | bytes) -> ProjectRecord:
    """The record in a JSON document; RecordError (a ValueError) when it is not one."""
    try:
        value = json.loads(data)
    except UnicodeDecodeError as error:
        raise RecordError(f"not UTF-8 text ({error.reason})") from None
    except ValueError as error:
        raise RecordError(f"not JSON ({error})") from None
    return _parsed(ProjectRecord, value, "record")


def record_json(record: ProjectRecord) -> str:
    """The record as the JSON document ``parse_record`` reads back into an equal record."""
    return json.dumps(_plain(record), indent=1, ensure_ascii=False)


Data = TypeVar("Data")


def _parsed(kind: type[Data], value: Any, where: str) -> Data:
    """``value`` (decoded JSON) as an instance of the dataclass ``kind``, checked field by field."""
    return cast(Data, _converter(cast(Any, kind))(value, where))


Convert = Callable[[Any, str], Any]


@functools.cache
def _converter(hint: Any) -> Convert:
    """The function that checks and converts a decoded JSON value to ``hint``, made once per
    type (reading a state directory converts thousands of records)."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return lambda value, where: value
    if origin in (Union, types.UnionType):
        (inner,) = [arg for arg in args if arg is not type(None)]
        convert = _converter(inner)
        return lambda value, where: None if value is None else convert(value, where)
    if origin is dict:
        keys, values = _converter(args[0]), _converter(args[1])

        def mapping(value: Any, where: str) -> dict[Any, Any]:
            if not isinstance(value, dict):
                raise RecordError(f"{where}: expected an object, got {_kind_of(value)}")
            return {keys(k, where): values(v, f"{where}.{k}") for k, v in value.items()}
        return mapping
    if origin in (list, tuple):
        item = _converter(args[0])

        def sequence(value: Any, where: str) -> Any:
            if not isinstance(value, list):
                raise RecordError(f"{where}: expected a list, got {_kind_of(value)}")
            items = [item(element, f"{where}[{i}]") for i, element in enumerate(value)]
            return items if origin is list else tuple(items)
        return sequence
    if dataclasses.is_dataclass(hint):
        return _dataclass_converter(hint)
    if isinstance(hint, type) and issubclass(hint, Enum):
        def member(value: Any, where: str) -> Any:
            try:
                return hint(value)
            except ValueError:
                raise RecordError(f"{where}: {str(value)[:40]!r} is not one of "
                                  f"{', '.join(str(m.value) for m in hint)}") from None
        return member
    return lambda value, where: _scalar(hint, value, where)


def _dataclass_converter(kind: Any) -> Convert:
    hints = get_type_hints(kind)
    fields = [(f.name, f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING) for f in dataclasses.fields(kind)]
    converters: dict[str, Convert] = {}

    def instance(value: Any, where: str) -> Any:
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object, got {_kind_of(value)}")
        found: dict[str, Any] = {}
        for name, required in fields:
            if name in value:
                if name not in converters:  # late: a field's type may be the class itself
                    converters[name] = _converter(hints[name])
                found[name] = converters[name](value[name], f"{where}.{name}")
            elif required:
                raise RecordError(f"{where}.{name}: missing")
        return kind(**found)
    return instance


def _scalar(hint: type, value: Any, where: str) -> Any:
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise RecordError(f"{where}: expected {hint.__name__}, got {_kind_of(value)}")


def _kind_of(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


def _plain(value: Any) -> Any:
    """Dataclasses, enums and tuples as JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
