"""HTTP: `/metrics`, `/probe?target=`, `/-/healthy`, `/-/ready`, `/-/reload` and a landing page at `/`.

Handlers only read what the pollers finished; nothing here talks to a provider. Every answer is
counted in the server's own metrics (`exporter.runtime`), which /metrics carries after the targets.
"""

from __future__ import annotations

import html
import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from exporter import __version__
from exporter.check import DebugProbes
from exporter.exposition import CONTENT_TYPE, Body
from exporter.hints import hint
from exporter.poller import TargetStatus
from exporter.runtime import RuntimeMetrics
from exporter.service import Exporter
from exporter.webconfig import WWW_AUTHENTICATE, WebConfig

log = logging.getLogger("exporter.server")

DEFAULT_PORT = 9864
# Scrapes served at once before the next ones get 503 (like promhttp's MaxRequestsInFlight). A
# scrape only writes a body rendered in the background, so even 50 scrapers stay well within it.
DEFAULT_MAX_REQUESTS = 64


class ListenAddressError(ValueError):
    pass


def parse_listen_address(text: str) -> tuple[str, int]:
    """`:9864`, `127.0.0.1:9864`, `[::1]:9864`, `host:port` -> (host, port); an empty host means all."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ListenAddressError(f"--web.listen-address must be [host]:port (got {text!r})")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ListenAddressError(f"--web.listen-address: port must be a number (got {port_text!r})") from None
    if not 0 <= port <= 65535:
        raise ListenAddressError(f"--web.listen-address: port must be 0 to 65535 (got {port})")
    return host, port


def accepts_gzip(header: str | None) -> bool:
    """True when Accept-Encoding allows gzip (honouring `gzip;q=0`)."""
    for part in (header or "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            q = params.strip().removeprefix("q=").strip() if params.strip().startswith("q=") else "1"
            try:
                return float(q) > 0
            except ValueError:
                return False
    return False


class ExporterHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Many scrapers may connect at once; the default backlog of 5 drops connections under load.
    request_queue_size = 128
    # http.server sets SO_REUSEADDR, which on POSIX only allows a restart while old connections
    # linger, but on Windows lets a socket bind a port another one listens on: a second exporter
    # would start beside the first instead of failing. asyncio sets it on POSIX only as well.
    allow_reuse_address = sys.platform != "win32"

    def __init__(self, address: tuple[str, int], exporter: Exporter, web_config: WebConfig | None = None, *,
                 reload: Callable[[], bool] | None = None, max_requests: int = DEFAULT_MAX_REQUESTS) -> None:
        host, _ = address
        self.exporter = exporter
        self.web_config = web_config or WebConfig()
        self.reload = reload
        self.runtime = RuntimeMetrics()
        self.debug_probes = DebugProbes()
        self.scrape_slots = threading.BoundedSemaphore(max_requests) if max_requests > 0 else None
        if ":" in host or host == "":
            self.address_family = socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET
        if host == "" and self.address_family == socket.AF_INET6:
            address = ("::", address[1])
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            # `:9864` means every address, IPv4 included, as it does for Prometheus' exporters.
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        # A body goes out in several writes (see _send): without this, Nagle's algorithm holds
        # the last small one until the client's delayed ACK, 40 ms later. Go's net/http, which
        # serves most exporters, sets it on every connection too.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Only wrapped here: the TLS handshake happens in the connection's own thread
        # (finish_request), so one stalled client cannot block the accept loop.
        return self.web_config.wrap_accepted(sock), address

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            try:
                self.web_config.handshake(request)
            except OSError as exc:  # no or bad client certificate, SAN not allowed, plain HTTP, timeout
                log.debug("tls handshake failed", extra={"client": client_address[0], "err": str(exc)})
                return
        super().finish_request(request, client_address)


class Handler(BaseHTTPRequestHandler):
    server: ExporterHTTPServer
    protocol_version = "HTTP/1.1"
    # An idle or stalled client must not hold a thread forever; Prometheus reuses its
    # connection well within this.
    timeout = 300
    server_version = f"sccm-package-exporter/{__version__}"

    def version_string(self) -> str:
        # The default adds "Python/3.x.y": no need to tell every client what runs behind the port.
        return self.server_version

    def handle_one_request(self) -> None:
        # A request line that does not parse sets no path (a new connection has none, a reused
        # one the previous request's): the answer to it (400, 414) is counted as `other`.
        self.path = ""
        super().handle_one_request()

    def send_response(self, code: int, message: str | None = None) -> None:
        super().send_response(code, message)
        # Every answer passes here, those http.server sends itself (400, 414, 501) too.
        self.server.runtime.http.count(handler_label(self.path), code)

    def do_GET(self) -> None:
        with self.server.runtime.http.in_flight():
            self._handle(head=False)

    def do_HEAD(self) -> None:
        with self.server.runtime.http.in_flight():
            self._handle(head=True)

    def do_POST(self) -> None:
        with self.server.runtime.http.in_flight():
            self._post()

    def _post(self) -> None:
        self._head_only = False
        # A body sent with the POST is not read; the connection is not reused after it.
        self.close_connection = True
        if not self._authorized():
            return
        path = urlsplit(self.path).path
        if path != "/-/reload":
            allowed = "GET, HEAD" if path in _GET_PATHS else None
            if allowed is None:
                self._text(HTTPStatus.NOT_FOUND, f"404 page not found: {path}\n")
            else:
                self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"Only GET and HEAD are allowed here.\n",
                           "text/plain; charset=utf-8", {"Allow": allowed})
            return
        if self.server.reload is None:
            self._text(HTTPStatus.NOT_FOUND, "reload is not available\n")
        elif self.server.reload():
            self._text(HTTPStatus.OK, "Configuration reloaded.\n")
        else:
            # The errors are in the log; like Prometheus, the answer only says that it failed.
            self._text(HTTPStatus.INTERNAL_SERVER_ERROR,
                       "failed to reload the configuration file: see the exporter's log; the old one keeps running\n")

    def _authorized(self) -> bool:
        # Every endpoint is protected when basic_auth_users is set, as with exporter-toolkit.
        if self.server.web_config.check_basic_auth(self.headers.get("Authorization")):
            return True
        self._send(HTTPStatus.UNAUTHORIZED, b"Unauthorized\n", "text/plain; charset=utf-8",
                   {"WWW-Authenticate": WWW_AUTHENTICATE})
        return False

    def _handle(self, *, head: bool) -> None:
        # One handler serves every request of a keep-alive connection: reset per request.
        self._head_only = head
        if not self._authorized():
            return
        url = urlsplit(self.path)
        if url.path == "/-/reload":
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"Only POST is allowed here.\n", "text/plain; charset=utf-8",
                       {"Allow": "POST"})
            return
        routes = {
            "/metrics": self._metrics,
            "/probe": lambda: self._probe(url.query),
            "/-/healthy": lambda: self._text(HTTPStatus.OK, "Healthy.\n"),
            "/-/ready": self._ready,
            "/": self._landing,
        }
        route = routes.get(url.path)
        if route is None:
            self._text(HTTPStatus.NOT_FOUND, f"404 page not found: {url.path}\n")
            return
        slots = self.server.scrape_slots if url.path in ("/metrics", "/probe") else None
        if slots is None:
            route()
            return
        if not slots.acquire(blocking=False):
            self._text(HTTPStatus.SERVICE_UNAVAILABLE,
                       "too many scrapes at once (--web.max-requests); try again\n")
            return
        try:
            route()
        finally:
            slots.release()

    def _metrics(self) -> None:
        # The targets' part is cached; the exporter's own metrics are read now and go last.
        self._send_body(self.server.exporter.metrics().extended(self.server.runtime.tail()))

    def _probe(self, query: str) -> None:
        params = parse_qs(query)
        names = params.get("target", [])
        if len(names) != 1 or not names[0]:
            self._text(HTTPStatus.BAD_REQUEST, "probe needs exactly one target parameter: /probe?target=NAME\n")
            return
        if params.get("debug", ["false"])[-1].lower() in ("true", "1"):
            self._debug_probe(names[0])
            return
        body = self.server.exporter.probe(names[0])
        if body is None:
            known = ", ".join(self.server.exporter.pollers) or "(none)"
            self._text(HTTPStatus.NOT_FOUND, f"unknown target {names[0]!r}; configured targets: {known}\n")
            return
        self._send_body(body)

    def _debug_probe(self, name: str) -> None:
        """A fresh poll of the target, step by step, as text (blackbox_exporter's debug probe)."""
        target = self.server.exporter.config.target(name)
        if target is None:
            known = ", ".join(self.server.exporter.pollers) or "(none)"
            self._text(HTTPStatus.NOT_FOUND, f"unknown target {name!r}; configured targets: {known}\n")
            return
        text = self.server.debug_probes.run(target)
        if text is None:
            self._text(HTTPStatus.TOO_MANY_REQUESTS,
                       f"a debug probe of {name} is running already; try again when it has finished\n")
            return
        self._text(HTTPStatus.OK, text)

    def _ready(self) -> None:
        readiness = self.server.exporter.readiness()
        if readiness.ready:
            self._text(HTTPStatus.OK, "Ready.\n")
        else:
            waiting = ", ".join(readiness.waiting_for)
            self._text(HTTPStatus.SERVICE_UNAVAILABLE, f"Not ready: waiting for the first poll of {waiting}\n")

    def _landing(self) -> None:
        self._send(HTTPStatus.OK, landing_page(self.server.exporter).encode(), "text/html; charset=utf-8")

    def _send_body(self, body: Body) -> None:
        # The body's parts are written one after the other: a large site's body is never joined.
        if accepts_gzip(self.headers.get("Accept-Encoding")):
            self._send(HTTPStatus.OK, body.gzip_parts, CONTENT_TYPE, {"Content-Encoding": "gzip"})
        else:
            self._send(HTTPStatus.OK, body.parts, CONTENT_TYPE)

    def _text(self, status: HTTPStatus, text: str) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8")

    def _send(
        self,
        status: HTTPStatus,
        data: bytes | tuple[bytes, ...],
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        parts = (data,) if isinstance(data, bytes) else data
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(sum(map(len, parts))))
        self.send_header("Vary", "Accept-Encoding")
        for name, value in {**self.server.web_config.headers, **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if not self._head_only:
            for part in _coalesced(parts):
                self.wfile.write(part)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http request", extra={"client": self.client_address[0], "request": format % args})


_GET_PATHS = ("/metrics", "/probe", "/-/healthy", "/-/ready", "/")
_HANDLERS = frozenset((*_GET_PATHS, "/-/reload"))


def handler_label(target: str) -> str:
    """The `handler` label of a request: its route, or `other`, so that a scanner trying paths
    cannot add series without end."""
    try:
        path = urlsplit(target).path
    except ValueError:  # e.g. `//[x`: no valid URL
        return "other"
    return path if path in _HANDLERS else "other"


# Parts smaller than this are joined before they are written: fewer system calls and packets.
_SMALL_PART = 64 * 1024


def _coalesced(parts: tuple[bytes, ...]) -> list[bytes]:
    """The parts with runs of small ones joined; large ones are written as they are, never copied."""
    out: list[bytes] = []
    small: list[bytes] = []
    for part in parts:
        if len(part) < _SMALL_PART:
            small.append(part)
            continue
        if small:
            out.append(b"".join(small))
            small.clear()
        out.append(part)
    if small:
        out.append(b"".join(small))
    return out


def landing_page(exporter: Exporter) -> str:
    """A small HTML page: what this is, the endpoints, and each target's state."""
    rows = []
    for status in exporter.statuses():
        name = html.escape(status.name)
        if status.polls == 0:
            state = "waiting for first poll"
        elif status.up:
            state = "up"
        else:
            state = f"down ({html.escape(status.last_reason or 'other')}): {html.escape(status.last_error or '')}"
            advice = hint(status.last_reason, status.last_error)
            if advice:
                state += f"<br><i>what to do:</i> {html.escape(advice)}"
        quoted = html.escape(quote(status.name, safe=""), quote=True)
        state += f'<br><a href="/probe?target={quoted}&amp;debug=true">diagnose (a fresh poll, step by step)</a>'
        last = (
            time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(status.last_success))
            if status.last_success
            else "never"
        )
        rows_served = status.data.rows if status.data else 0
        rows.append(
            f"<tr><td><a href=\"/probe?target={html.escape(name, quote=True)}\">{name}</a></td>"
            f"<td>{state}</td><td>{last}</td><td>{rows_served}</td><td>{_collectors_cell(status)}</td></tr>"
        )
    table = "\n".join(rows)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>SCCM package exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em 1em;text-align:left}}</style></head>
<body><h1>SCCM package exporter</h1>
<p>Prometheus exporter for Configuration Manager package distribution status (SMS_PackageStatus),
version {html.escape(__version__)}.</p>
<ul><li><a href="/metrics">/metrics</a>: every target</li>
<li>/probe?target=NAME: one target; /probe?target=NAME&amp;debug=true: a fresh poll of it, step by step</li>
<li><a href="/-/healthy">/-/healthy</a>, <a href="/-/ready">/-/ready</a></li></ul>
<h2>Targets</h2>
<table><tr><th>target</th><th>state</th><th>last successful poll</th><th>rows served</th>
<th>other collectors</th></tr>
{table}
</table></body></html>
"""


def _collectors_cell(status: TargetStatus) -> str:
    """The optional collectors of a target and how their last read went (package_status is the row).

    Collectors that failed the same way share one line: a wrong site code fails them all alike,
    and one message with its hint reads better than six. ("up, 12 rows" twice stays two lines:
    each is a collector's own count.)
    """
    lines: list[tuple[list[str], str]] = []  # (collectors, their state), in the collectors' order
    failures: dict[str, list[str]] = {}  # a failure's state -> the collectors of its line
    for collector in status.collectors[1:]:
        if status.polls == 0:
            lines.append(([collector.name], "waiting"))
        elif collector.up:
            lines.append(([collector.name], f"up, {collector.data.rows if collector.data else 0} rows"))
        else:
            reason = html.escape(collector.last_reason or "other")
            state = f"down ({reason}): {html.escape(collector.last_error or '')}"
            advice = hint(collector.last_reason, collector.last_error)
            if advice:
                state += f" <i>what to do:</i> {html.escape(advice)}"
            if state not in failures:
                failures[state] = []
                lines.append((failures[state], state))
            failures[state].append(collector.name)
    return "<br>".join(f"{', '.join(names)}: {state}" for names, state in lines) or "none"


def serve(exporter: Exporter, address: tuple[str, int], web_config: WebConfig | None = None, *,
          reload: Callable[[], bool] | None = None, max_requests: int = DEFAULT_MAX_REQUESTS) -> ExporterHTTPServer:
    """Bind and start serving in a background thread; the caller shuts it down.

    `reload` is what POST /-/reload runs (True when the new configuration was taken).
    """
    httpd = ExporterHTTPServer(address, exporter, web_config, reload=reload, max_requests=max_requests)
    thread = threading.Thread(target=httpd.serve_forever, name="http", daemon=True)
    thread.start()
    return httpd
