"""Loading the configuration: embedded defaults < TOML file < RECONCILER_* environment < flags.

Decision: every layer produces a plain dict that is merged key by key and validated once by
``Config``; a bad value names its layer and key, and the reconciler refuses to start with it.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from reconciler.core.config import Config
from reconciler.core.errors import ConfigError

__all__ = ["ConfigError", "check_environment", "config_path", "env_overrides", "load_config",
           "template_dirs"]

ENV_PREFIX = "RECONCILER_"
DEFAULT_CONFIG_FILE = "reconciler.toml"
PACKAGE_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
SOURCE_TEMPLATES = Path(__file__).resolve().parent.parent.parent / "templates"


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
        _resolve_data_dirs(data, path.parent)
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


def _resolve_data_dirs(data: dict[str, Any], base: Path) -> None:
    """A relative `data_dir` of a [[hosts]] entry is relative to the configuration file
    (a bind mount needs an absolute path)."""
    hosts = data.get("hosts")
    for host in hosts if isinstance(hosts, list) else []:
        if isinstance(host, dict) and isinstance(host.get("data_dir"), str) \
                and not Path(host["data_dir"]).is_absolute():
            host["data_dir"] = str((base / host["data_dir"]).resolve())


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """RECONCILER_<KEY> and RECONCILER_<SECTION>_<KEY> for every scalar configuration key."""
    found: dict[str, Any] = {}
    for variable, path in _config_variables().items():
        value = environ.get(variable)
        if value is None:
            continue
        if len(path) == 2:
            found.setdefault(path[0], {})[path[1]] = value
        else:
            found[path[0]] = value
    return found


def _config_variables() -> dict[str, tuple[str, ...]]:
    """Variable name -> the configuration key it sets."""
    variables: dict[str, tuple[str, ...]] = {}
    for name, field in Config.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for inner in annotation.model_fields:
                variables[f"{ENV_PREFIX}{name}_{inner}".upper()] = (name, inner)
        elif name != "hosts":
            variables[f"{ENV_PREFIX}{name}".upper()] = (name,)
    return variables


def check_environment(environ: Mapping[str, str], options: Iterable[str]) -> None:
    """Refuse RECONCILER_* variables that nothing reads: a misspelt one would otherwise be
    ignored silently and the reconciler run with a setting its operator did not mean.
    ``options``: the variables the command line reads (RECONCILER_DESIRED, ...)."""
    known = set(_config_variables()) | set(options)
    unknown = sorted(v for v in environ if v.startswith(ENV_PREFIX) and v not in known)
    if not unknown:
        return
    problems = []
    for variable in unknown:
        close = difflib.get_close_matches(variable, sorted(known), n=1, cutoff=0.7)
        problems.append(variable + (f" (did you mean {close[0]}?)" if close else ""))
    raise ConfigError(f"unknown environment variable{'s' * (len(unknown) > 1)} "
                      f"{', '.join(problems)}; unset it or use one of the documented "
                      f"RECONCILER_* names (README: Configuration)")


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
