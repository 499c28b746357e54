"""The actors' environment (DESIGN §9), parsed once into plain values.

A bad value is a ``SettingsError`` whose message names the variable and what it expects;
the programs turn it into their one error line and exit status 2.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

FLAVORS = ("sklearn", "pytorch", "tensorflow", "keras")
MAX_REQUEST_BYTES = 16 * 1024 * 1024  # the model server's default bound on a request body


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class LearnerSettings:
    aggregator: Address
    data_tags: str
    connect_timeout: float
    name: str
    app_dir: Path


@dataclass(frozen=True)
class AggregatorSettings:
    rounds: int
    min_available_clients: int
    min_fit_clients: int
    min_evaluate_clients: int
    wait_timeout: float
    bind: Address
    output_dir: Path
    flavor: str
    tracking_uri: str | None
    experiment: str
    app_dir: Path

    @property
    def learners_needed(self) -> int:
        """Flower samples min_fit (and min_evaluate) learners out of those connected."""
        return max(self.min_available_clients, self.min_fit_clients, self.min_evaluate_clients)


@dataclass(frozen=True)
class ServerSettings:
    """The trained model's HTTP server (``python3 -m flops_actor.serve``)."""

    model_dir: Path
    bind: Address
    max_request_bytes: int


def parse_address(name: str, value: str) -> Address:
    host, sep, port = value.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"{name}={value!r}: expected host:port, e.g. aggregator:8080")
    return Address(host, int(port))


def _number(env: Mapping[str, str], name: str, default: float, *, integer: bool) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number of seconds"
        raise SettingsError(f"{name}={raw!r}: expected {kind}") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r}: must be greater than 0")
    return value


def _required(env: Mapping[str, str], name: str, example: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(f"{name} is not set (e.g. {name}={example})")
    return value


def _app_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("FLOPS_APP_DIR", "").strip() or "/app")


def learner_settings(env: Mapping[str, str], hostname: str) -> LearnerSettings:
    return LearnerSettings(
        aggregator=parse_address(
            "FLOPS_AGGREGATOR", _required(env, "FLOPS_AGGREGATOR", "aggregator:8080")
        ),
        data_tags=_required(env, "FLOPS_DATA_TAGS", "mnist"),
        connect_timeout=_number(env, "FLOPS_CONNECT_TIMEOUT", 300, integer=False),
        name=env.get("FLOPS_LEARNER_NAME", "").strip() or hostname,
        app_dir=_app_dir(env),
    )


def aggregator_settings(env: Mapping[str, str]) -> AggregatorSettings:
    flavor = _required(env, "FLOPS_MODEL_FLAVOR", "sklearn").lower()
    if flavor not in FLAVORS:
        raise SettingsError(f"FLOPS_MODEL_FLAVOR={flavor!r}: expected one of {', '.join(FLAVORS)}")
    port = int(_number(env, "FLOPS_PORT", 8080, integer=True))
    bind = env.get("FLOPS_BIND", "").strip() or "0.0.0.0"
    return AggregatorSettings(
        rounds=int(_number(env, "FLOPS_ROUNDS", 3, integer=True)),
        min_available_clients=int(_number(env, "FLOPS_MIN_AVAILABLE_CLIENTS", 1, integer=True)),
        min_fit_clients=int(_number(env, "FLOPS_MIN_FIT_CLIENTS", 1, integer=True)),
        min_evaluate_clients=int(_number(env, "FLOPS_MIN_EVALUATE_CLIENTS", 1, integer=True)),
        wait_timeout=_number(env, "FLOPS_WAIT_TIMEOUT", 600, integer=False),
        bind=parse_address("FLOPS_BIND/FLOPS_PORT", f"{bind}:{port}"),
        output_dir=Path(env.get("FLOPS_OUTPUT_DIR", "").strip() or "/flops/output"),
        flavor=flavor,
        tracking_uri=env.get("MLFLOW_TRACKING_URI", "").strip() or None,
        experiment=env.get("MLFLOW_EXPERIMENT_NAME", "").strip() or "flops",
        app_dir=_app_dir(env),
    )


def server_settings(env: Mapping[str, str]) -> ServerSettings:
    port = int(_number(env, "FLOPS_PORT", 8080, integer=True))
    bind = env.get("FLOPS_BIND", "").strip() or "0.0.0.0"
    return ServerSettings(
        model_dir=Path(env.get("FLOPS_MODEL_DIR", "").strip() or "/flops/model"),
        bind=parse_address("FLOPS_BIND/FLOPS_PORT", f"{bind}:{port}"),
        max_request_bytes=int(
            _number(env, "FLOPS_MAX_REQUEST_BYTES", MAX_REQUEST_BYTES, integer=True)
        ),
    )
