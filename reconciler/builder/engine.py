"""A minimal Docker Engine API client: build, pull, push and inspect images over the engine
socket, and copy a directory out of an image.

Decision: speak the classic API (POST /build, no BuildKit) at version 1.41 with http.client,
so the builder needs no Docker client binary and no third-party package; engines from Docker
20.10 on understand every call made here.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import re
import socket
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

API = "/v1.41"
DEFAULT_HOST = "unix:///var/run/docker.sock"
TAIL_LINES = 20
CALL_TIMEOUT = 60.0
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_FAILED_COMMAND = re.compile(r"^The command '(?P<command>.*)' returned (?P<rest>.*)$", re.DOTALL)


@dataclass
class EngineError(Exception):
    """The engine refused or failed an operation; details are the last lines of its output."""

    message: str
    details: list[str] = field(default_factory=list)
    status: int | None = None

    def __str__(self) -> str:
        return self.message


class EngineUnreachable(EngineError):
    """No engine answers at the configured address."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def split_reference(ref: str) -> tuple[str, str]:
    """`host:5000/a/b:tag` -> (`host:5000/a/b`, `tag`); the tag defaults to `latest`."""
    name, sep, tag = ref.rpartition(":")
    if sep and "/" not in tag:
        return name, tag
    return ref, "latest"


class Engine:
    """One Docker engine, addressed as `unix:///path` or `tcp://host:port`.

    Constructing one never fails; an unusable address fails the first call (EngineUnreachable).
    """

    def __init__(self, host: str = DEFAULT_HOST) -> None:
        self.host = host
        parsed = urllib.parse.urlsplit(host)
        if parsed.scheme == "unix":
            self._connect: Callable[[float | None], http.client.HTTPConnection] = (
                lambda timeout: _UnixConnection(parsed.path, timeout)
            )
        elif parsed.scheme in ("tcp", "http"):
            netloc = parsed.netloc
            self._connect = lambda timeout: http.client.HTTPConnection(netloc, timeout=timeout)
        else:
            self._connect = self._unsupported

    def _unsupported(self, timeout: float | None) -> http.client.HTTPConnection:
        raise EngineUnreachable(f"unsupported DOCKER_HOST {self.host!r} (use unix:// or tcp://)")

    @classmethod
    def from_env(cls) -> Engine:
        return cls(os.environ.get("DOCKER_HOST") or DEFAULT_HOST)

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | IO[bytes] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = CALL_TIMEOUT,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn = self._connect(timeout)
        try:
            conn.request(method, API + path, body=body, headers=headers or {})
            return conn, conn.getresponse()
        except (FileNotFoundError, ConnectionRefusedError, PermissionError) as exc:
            conn.close()
            raise EngineUnreachable(f"no Docker engine at {self.host}: {exc}") from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise EngineError(f"{method} {path} to the Docker engine failed: {exc}") from exc

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None
              ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"} if body is not None else None
        conn, response = self._request(
            method, path, body=json.dumps(body).encode() if body is not None else None,
            headers=headers)
        try:
            raw = response.read()
        finally:
            conn.close()
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, raw.decode("utf-8", "replace")

    def version(self) -> dict[str, Any]:
        status, payload = self._call("GET", "/version")
        if status != 200 or not isinstance(payload, dict):
            raise EngineError(f"GET /version answered {status}", status=status)
        return payload

    def platform(self) -> str:
        """The engine's native platform, e.g. `linux/amd64`: what the classic builder builds."""
        info = self.version()
        return f"{info.get('Os', 'linux')}/{info.get('Arch', 'amd64')}"

    def image_id(self, ref: str) -> str | None:
        """The local image id (`sha256:...`) for a reference, or None when the engine has none."""
        status, payload = self._call("GET", f"/images/{_quote(ref)}/json")
        if status == 404:
            return None
        if status != 200 or not isinstance(payload, dict):
            raise EngineError(f"inspecting {ref} failed: {_message(payload)}", status=status)
        return str(payload["Id"])

    def image_platform(self, ref: str) -> str | None:
        """The platform an image's config records (`linux/arm64`, `linux/arm/v7`), or None
        when the engine has no such image."""
        status, payload = self._call("GET", f"/images/{_quote(ref)}/json")
        if status == 404:
            return None
        if status != 200 or not isinstance(payload, dict):
            raise EngineError(f"inspecting {ref} failed: {_message(payload)}", status=status)
        variant = f"/{payload['Variant']}" if payload.get("Variant") else ""
        return f"{payload.get('Os', 'linux')}/{payload.get('Architecture', '?')}{variant}"

    def runs(self, image: str, platform: str) -> None:
        """Run a shell of ``image`` as ``platform`` once (no network): EngineError unless
        it exits 0. Proves that the engine executes that platform's programs (natively, or
        through a QEMU handler the kernel's binfmt_misc knows), as the RUN steps of a build
        for it must."""
        query = urllib.parse.urlencode({"platform": platform})
        status, payload = self._call("POST", f"/containers/create?{query}", {
            "Image": image, "Cmd": ["/bin/sh", "-c", "exit 0"], "Entrypoint": [],
            "Labels": {"flops.role": "platform-probe"},
            "HostConfig": {"NetworkMode": "none"},
        })
        if status != 201 or not isinstance(payload, dict):
            raise EngineError(f"creating a {platform} container of {image} failed: "
                              f"{_message(payload)}", status=status)
        container = str(payload["Id"])
        try:
            status, payload = self._call("POST", f"/containers/{container}/start")
            if status not in (204, 304):
                raise EngineError(_message(payload), status=status)
            status, payload = self._call("POST", f"/containers/{container}/wait")
            code = payload.get("StatusCode") if isinstance(payload, dict) else None
            if status != 200 or code != 0:
                raise EngineError(f"a shell of {image} exited with status {code}",
                                  status=status)
        finally:
            self._call("DELETE", f"/containers/{container}?force=1&v=1")

    def build(
        self,
        context: bytes | IO[bytes],
        tag: str,
        dockerfile_path: str,
        labels: dict[str, str],
        *,
        build_args: dict[str, str] | None = None,
        network: str | None = None,
        target: str | None = None,
        platform: str | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> tuple[str, list[str]]:
        """Build `tag` from a tar context; (image id, output lines). EngineError on failure.
        `network`: the network of the RUN steps (e.g. "host" to reach a local index);
        `target`: the stage to build (default: the last one); `platform`: build for that
        platform (the classic builder then wants base images of it, and runs RUN steps
        under emulation when it is not the engine's own)."""
        fields = {"t": tag, "dockerfile": dockerfile_path, "labels": json.dumps(labels),
                  "rm": "1", "forcerm": "1", "buildargs": json.dumps(build_args or {})}
        if network:
            fields["networkmode"] = network
        if target:
            fields["target"] = target
        if platform:
            fields["platform"] = platform
        query = urllib.parse.urlencode(fields)
        headers = {"Content-Type": "application/x-tar"}
        if not isinstance(context, bytes):
            context.seek(0, os.SEEK_END)
            headers["Content-Length"] = str(context.tell())
            context.seek(0)
        conn, response = self._request(
            "POST", f"/build?{query}", body=context, headers=headers, timeout=None
        )
        try:
            lines, aux = _consume(response, on_line)
        finally:
            conn.close()
        image = next((str(a["ID"]) for a in reversed(aux) if "ID" in a), None)
        return image or self.image_id(tag) or "", lines

    def push(self, ref: str, *, on_line: Callable[[str], None] | None = None) -> str:
        """Push `ref` to its registry; the pushed manifest digest (`sha256:...`)."""
        name, tag = split_reference(ref)
        auth = base64.urlsafe_b64encode(b"{}").decode("ascii")
        conn, response = self._request(
            "POST", f"/images/{_quote(name)}/push?{urllib.parse.urlencode({'tag': tag})}",
            headers={"X-Registry-Auth": auth}, timeout=None,
        )
        try:
            lines, aux = _consume(response, on_line)
        finally:
            conn.close()
        digest = next((str(a["Digest"]) for a in reversed(aux) if "Digest" in a), None)
        if not digest:
            raise EngineError("the engine reported no manifest digest", lines[-TAIL_LINES:])
        return digest


    def pull(self, ref: str) -> None:
        """Pull ``ref`` from its registry (the engine's own access to it); EngineError when
        the registry refuses or does not have it."""
        name, tag = split_reference(ref)
        auth = base64.urlsafe_b64encode(b"{}").decode("ascii")
        query = urllib.parse.urlencode({"fromImage": name, "tag": tag})
        conn, response = self._request("POST", f"/images/create?{query}",
                                       headers={"X-Registry-Auth": auth}, timeout=None)
        try:
            _consume(response, None)
        finally:
            conn.close()

    def copy_from_image(self, image: str, path: str, out: IO[bytes], limit: int) -> None:
        """The tar of ``path`` in ``image`` to ``out`` (at most ``limit`` bytes, EngineError
        beyond), read from a container created for it and never started."""
        status, payload = self._call("POST", "/containers/create", {
            "Image": image, "Cmd": ["/none"], "Entrypoint": [],
            "Labels": {"flops.role": "model-carrier"}, "HostConfig": {"NetworkMode": "none"},
        })
        if status != 201 or not isinstance(payload, dict):
            raise EngineError(f"creating a container of {image} failed: {_message(payload)}",
                              status=status)
        container = str(payload["Id"])
        try:
            query = urllib.parse.urlencode({"path": path})
            conn, response = self._request("GET", f"/containers/{container}/archive?{query}",
                                           timeout=None)
            try:
                if response.status != 200:
                    raise EngineError(f"{image} holds no {path}: "
                                      f"{_message(_json_or_text(response.read()))}",
                                      status=response.status)
                copied = 0
                while chunk := response.read(1024 * 1024):
                    copied += len(chunk)
                    if copied > limit:
                        raise EngineError(f"{path} in {image} is larger than {limit} bytes")
                    out.write(chunk)
            finally:
                conn.close()
        finally:
            self._call("DELETE", f"/containers/{container}?force=1&v=1")

    def remove_image(self, ref: str) -> None:
        """Remove ``ref`` from the engine if it is there (a clean-up: errors are ignored)."""
        with contextlib.suppress(EngineError):
            self._call("DELETE", f"/images/{_quote(ref)}")


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace").strip()


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="/:@")


def _message(payload: Any) -> str:
    if isinstance(payload, dict) and "message" in payload:
        return str(payload["message"])
    return str(payload)


def _consume(
    response: http.client.HTTPResponse, on_line: Callable[[str], None] | None
) -> tuple[list[str], list[dict[str, Any]]]:
    """Read a JSON progress stream: (output lines, aux objects); EngineError on an error.

    Error messages are the engine's own words; callers say what they were doing.
    """
    if response.status != 200:
        payload = _json_or_text(response.read())
        raise EngineError(f"{_message(payload)} (HTTP {response.status})", status=response.status)
    lines: list[str] = []
    aux: list[dict[str, Any]] = []
    for message in _messages(response):
        error = message.get("errorDetail") or message.get("error")
        if error:
            text = error.get("message", str(error)) if isinstance(error, dict) else str(error)
            raise EngineError(_shorten(_plain(text).strip()), lines[-TAIL_LINES:])
        if isinstance(message.get("aux"), dict):
            aux.append(message["aux"])
        for line in _lines_of(message):
            lines.append(line)
            if on_line is not None:
                on_line(line)
    return lines, aux


def _plain(text: str) -> str:
    """Text without terminal escape sequences (the engine colours a step's stderr red)."""
    return _ANSI.sub("", text)


def _shorten(message: str) -> str:
    """`The command '<a whole RUN script>' returned ...` -> the script's start only."""
    match = _FAILED_COMMAND.match(message)
    if match and len(match["command"]) > 80:
        return f"The command '{match['command'][:77]}...' returned {match['rest']}"
    return message


def _lines_of(message: dict[str, Any]) -> list[str]:
    if isinstance(message.get("stream"), str):
        text = _plain(message["stream"]).rstrip("\n")
        return [line for line in text.split("\n") if line.strip()]
    if isinstance(message.get("status"), str):
        prefix = f"{message['id']}: " if message.get("id") else ""
        if message.get("progressDetail"):  # byte counters: noise in a log
            return []
        return [prefix + message["status"]]
    return []


def _messages(response: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    """JSON objects from a stream that separates them by newlines (or by nothing at all)."""
    decoder = json.JSONDecoder()
    buffer = ""
    while True:
        chunk = response.readline()
        if not chunk:
            break
        buffer += chunk.decode("utf-8", "replace")
        while True:
            buffer = buffer.lstrip()
            if not buffer:
                break
            try:
                value, end = decoder.raw_decode(buffer)
            except ValueError:
                if "\n" not in buffer:
                    break  # incomplete object: read more
                buffer = buffer.split("\n", 1)[1]  # not JSON: skip the line
                continue
            buffer = buffer[end:]
            if isinstance(value, dict):
                yield value
