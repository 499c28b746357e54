"""A tiny HTTP forward proxy for the tests (standard library only), like a site's proxy.

It accepts absolute-URI requests (``GET http://host:port/path HTTP/1.1``, what a client sends
to an HTTP proxy), fetches the target and relays the answer, and records every request it
forwarded. ``hosts`` is the proxy's own name table: a name the test machine cannot resolve
(e.g. under ``.invalid``) can be served through the proxy only, so a client reaching it has
gone through the proxy. Requests that are not absolute URIs and ``CONNECT`` are refused and
recorded as refused.
"""

from __future__ import annotations

import http.client
import http.server
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit

# Headers that belong to one connection, not to the message (RFC 9110 7.6.1).
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade",
})


@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    url: str  # the absolute URI the client asked for
    status: int  # what the proxy answered
    forwarded: bool  # fetched from the target (False: refused or the target unreachable)


class ForwardProxy:
    """Serves on 127.0.0.1 at a port the system picks, in a thread; use it as a context
    manager. ``url`` is ``http://127.0.0.1:PORT``."""

    def __init__(self, hosts: Mapping[str, tuple[str, int]] | None = None,
                 timeout: float = 30) -> None:
        self.hosts = dict(hosts or {})  # "name:port" -> (address, port) to connect to
        self.timeout = timeout
        self._lock = threading.Lock()
        self._requests: list[ProxiedRequest] = []
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="forward-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def requests(self) -> list[ProxiedRequest]:
        """Every request so far, in the order they were answered."""
        with self._lock:
            return list(self._requests)

    def forwarded(self) -> list[str]:
        """The URLs of the requests the proxy fetched from their target and answered."""
        return [r.url for r in self.requests() if r.forwarded]

    def __enter__(self) -> ForwardProxy:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=self.timeout)

    def _record(self, request: ProxiedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _target(self, url: str) -> tuple[str, int, str] | None:
        """(address, port, path) to fetch for an absolute ``http://`` URI, else None."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            return None
        port = parts.port or 80
        address, port = self.hosts.get(f"{parts.hostname}:{port}", (parts.hostname, port))
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return address, port, path

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._forward()

            def do_HEAD(self) -> None:
                self._forward()

            def do_CONNECT(self) -> None:
                self._refuse(405, "this test proxy does not tunnel")

            def _forward(self) -> None:
                target = proxy._target(self.path)
                if target is None:
                    self._refuse(400, "not an absolute http:// URI")
                    return
                address, port, path = target
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in HOP_BY_HOP}
                connection = http.client.HTTPConnection(address, port, timeout=proxy.timeout)
                try:
                    connection.request(self.command, path, headers=headers)
                    response = connection.getresponse()
                    body = response.read()
                except OSError as error:
                    self._refuse(502, f"cannot fetch {self.path}: {error}")
                    return
                finally:
                    connection.close()
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                proxy._record(ProxiedRequest(self.command, self.path, response.status, True))

            def _refuse(self, status: int, why: str) -> None:
                body = why.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                proxy._record(ProxiedRequest(self.command, self.path, status, False))

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the test reads `requests()` instead of stderr."""

        return Handler
