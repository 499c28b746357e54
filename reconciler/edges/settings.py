"""Loading the configuration: embedded defaults < TOML file < RECONCILER_* environment < flags.

Decision: every layer produces a plain dict that is merged key by key and validated once by
``Config``; a bad value names its layer and key, and the reconciler refuses to start with it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from reconciler.core.config import Config

ENV_PREFIX = "RECONCILER_"
DEFAULT_CONFIG_FILE = "reconciler.toml"
PACKAGE_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
SOURCE_TEMPLATES = Path(__file__).resolve().parent.parent.parent / "templates"


class ConfigError(ValueError):
    """The configuration cannot be used; ``str()`` says where and how to fix it."""


def load_config(
    path: Path | None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise ConfigError(f"cannot read configuration {path}: {error.strerror}") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"configuration {path} is not valid TOML: {error}") from None
    _merge(data, env_overrides(environ))
    _merge(data, dict(overrides or {}))
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            ".".join(map(str, e["loc"])) + ": " * bool(e["loc"])
            + str(e["msg"]).removeprefix("Value error, ")
            for e in error.errors(include_url=False)
        )
        raise ConfigError(f"invalid configuration ({source} and environment): {problems}") from None


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """RECONCILER_<KEY> and RECONCILER_<SECTION>_<KEY> for every scalar configuration key."""
    found: dict[str, Any] = {}
    for name, field in Config.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for inner in annotation.model_fields:
                value = environ.get(f"{ENV_PREFIX}{name}_{inner}".upper())
                if value is not None:
                    found.setdefault(name, {})[inner] = value
        elif name != "hosts":
            value = environ.get(f"{ENV_PREFIX}{name}".upper())
            if value is not None:
                found[name] = value
    return found


def config_path(explicit: str | None) -> Path | None:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"configuration file {path} does not exist")
        return path
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def template_dirs(override: str | None) -> list[Path]:
    """Where templates are looked up, first match wins: --templates, then the shipped ones."""
    dirs = [Path(override)] if override else []
    dirs += [d for d in (PACKAGE_TEMPLATES, SOURCE_TEMPLATES) if d.is_dir()]
    return dirs


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
