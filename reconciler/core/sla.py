"""The project SLA: the FLOps project-SLA keys, their defaults and their validation.

Decision: the model is strict (unknown keys are errors) but speaks FLOps' dialect, so an SLA
that FLOps accepts is accepted here; every error is turned into one line that names the key and
the fix (see ``describe_errors``), because the person reading it is editing a YAML file.
"""

from __future__ import annotations

import difflib
import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from reconciler.core.repo_url import check_ref, check_repo_url

PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# Only these keys decide the images (DESIGN §4); a change anywhere else is an `update`.
IMAGE_KEYS = (
    "ml_repo_url",
    "ml_repo_ref",
    "ml_model_flavor",
    "supported_platforms",
    "use_devel_base_images",
)


class Flavor(StrEnum):
    sklearn = "sklearn"
    pytorch = "pytorch"
    tensorflow = "tensorflow"
    keras = "keras"


class Platform(StrEnum):
    """The platforms an SLA may ask for: FLOps' two, plus the other Linux platforms Docker
    images are made for. Which of them a site can build is the site's configuration
    ([images.platforms]), checked before building, not here."""

    linux_amd64 = "linux/amd64"
    linux_arm64 = "linux/arm64"
    linux_arm_v7 = "linux/arm/v7"
    linux_ppc64le = "linux/ppc64le"
    linux_s390x = "linux/s390x"
    linux_riscv64 = "linux/riscv64"


DATA_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
MAX_ROUNDS = 1000  # bounds a run's time, log and record
MAX_CLIENTS = 1000


class TrainingMode(StrEnum):
    classic = "classic"
    hierarchical = "hierarchical"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class PostTrainingStep(StrEnum):
    build_image_for_trained_model = "build_image_for_trained_model"
    deploy_trained_model_image = "deploy_trained_model_image"


class TrainingConfiguration(_Strict):
    mode: TrainingMode = TrainingMode.classic
    data_tags: tuple[str, ...] = ("dev",)
    training_cycles: int = Field(1, ge=1)
    training_rounds: int = Field(3, ge=1, le=MAX_ROUNDS)
    min_available_clients: int = Field(1, ge=1, le=MAX_CLIENTS)
    min_fit_clients: int = Field(1, ge=1, le=MAX_CLIENTS)
    min_evaluate_clients: int = Field(1, ge=1, le=MAX_CLIENTS)

    @field_validator("mode")
    @classmethod
    def _classic_only(cls, value: TrainingMode) -> TrainingMode:
        if value is TrainingMode.hierarchical:
            raise ValueError(
                "mode `hierarchical` (cluster aggregators under a root) is not supported by "
                "this reconciler; use `classic` (one aggregator, learners on the hosts that "
                "hold the data)")
        return value

    @field_validator("data_tags")
    @classmethod
    def _tags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for tag in value:
            if not DATA_TAG.match(tag):
                raise ValueError(
                    f"data tag {tag[:80]!r} is not a folder name a learner host can hold: use "
                    "letters, digits, '.', '_' and '-' (at most 63, not starting with '.')")
        return tuple(dict.fromkeys(value))


class ResourceConstraints(_Strict):
    memory: int = Field(100, ge=0, description="MiB")
    vcpus: int = Field(1, ge=0)
    storage: int = Field(0, ge=0, description="MiB")


class ProjectSla(_Strict):
    customer_id: str = Field("Admin", alias="customerID")
    ml_repo_url: str
    ml_repo_ref: str | None = None
    ml_model_flavor: Flavor
    supported_platforms: tuple[Platform, ...] = (Platform.linux_amd64,)
    use_devel_base_images: bool = False
    verbose: bool = False
    training_configuration: TrainingConfiguration = TrainingConfiguration()
    post_training_steps: tuple[PostTrainingStep, ...] = ()
    resource_constraints: ResourceConstraints = ResourceConstraints()

    @field_validator("ml_repo_url")
    @classmethod
    def _url(cls, value: str, info: Any) -> str:
        allow_files = bool((info.context or {}).get("allow_file_repos", False))
        return check_repo_url(value, allow_file_repos=allow_files)

    @field_validator("ml_repo_ref")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        return None if value is None else check_ref(value)

    @field_validator("post_training_steps")
    @classmethod
    def _steps(cls, value: tuple[PostTrainingStep, ...]) -> tuple[PostTrainingStep, ...]:
        steps = tuple(dict.fromkeys(value))
        if PostTrainingStep.deploy_trained_model_image in steps \
                and PostTrainingStep.build_image_for_trained_model not in steps:
            raise ValueError("deploy_trained_model_image serves the trained model's image: list "
                             "build_image_for_trained_model too")
        return steps

    @field_validator("supported_platforms")
    @classmethod
    def _platforms(cls, value: tuple[Platform, ...]) -> tuple[Platform, ...]:
        if not value:
            raise ValueError("must list at least one platform, e.g. [linux/amd64]")
        return tuple(dict.fromkeys(value))

    def image_inputs(self) -> dict[str, Any]:
        """The values that decide the images, in a canonical JSON-ready form."""
        return {
            "ml_repo_url": self.ml_repo_url,
            "ml_repo_ref": self.ml_repo_ref,
            "ml_model_flavor": self.ml_model_flavor.value,
            "supported_platforms": sorted(p.value for p in self.supported_platforms),
            "use_devel_base_images": self.use_devel_base_images,
        }


class SlaError(ValueError):
    """An SLA that cannot be used; ``str()`` is the one-line message for status and logs."""


def parse_sla(data: Any, *, allow_file_repos: bool) -> ProjectSla:
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise SlaError(
            f"the document is {kind}, expected a mapping of SLA keys "
            "(at least ml_repo_url and ml_model_flavor)"
        )
    try:
        return ProjectSla.model_validate(data, context={"allow_file_repos": allow_file_repos})
    except ValidationError as error:
        raise SlaError(describe_errors(error)) from None


def describe_errors(error: ValidationError) -> str:
    return "; ".join(_describe(item) for item in error.errors(include_url=False))


def _describe(item: Any) -> str:
    location = tuple(str(part) for part in item["loc"])
    key = ".".join(location) or "(document)"
    kind = item["type"]
    if kind == "extra_forbidden":
        return f"unknown key `{key}`{_suggestion(location)}"
    if kind == "missing":
        return f"missing required key `{key}`{_how_to_fill(key)}"
    message = str(item["msg"]).removeprefix("Value error, ")
    if kind == "enum":
        return f"key `{key}`: {message}; got {item['input']!r}"
    return f"key `{key}`: {message}"


def _how_to_fill(key: str) -> str:
    examples = {
        "ml_repo_url": "https://github.com/<owner>/<repo>.git",
        "ml_model_flavor": "sklearn, pytorch, tensorflow or keras",
    }
    return f"; add it, e.g. {key}: {examples[key]}" if key in examples else ""


def _suggestion(location: tuple[str, ...]) -> str:
    known = _known_keys(location[:-1])
    close = difflib.get_close_matches(location[-1], known, n=1, cutoff=0.6)
    if close:
        return f"; did you mean `{close[0]}`?"
    return f"; known keys here: {', '.join(sorted(known))}"


def _known_keys(parent: tuple[str, ...]) -> list[str]:
    model: type[BaseModel] = ProjectSla
    for part in parent:
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    keys: list[str] = []
    for name, field in model.model_fields.items():
        keys.append(name)
        if field.alias:
            keys.append(field.alias)
    return keys
