"""HTTP details that are easier to pin down without a process: addresses, gzip negotiation, and the
exporter's own HTTP metrics on a server started in this process."""

from __future__ import annotations

import base64
import http.client
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
from conftest import Samples, parse_samples

from exporter import __version__
from exporter.config import parse_config
from exporter.server import (
    ExporterHTTPServer,
    ListenAddressError,
    accepts_gzip,
    handler_label,
    parse_listen_address,
    serve,
)
from exporter.service import Exporter
from exporter.webconfig import parse_web_config


@pytest.mark.parametrize(
    ("text", "expected"),
    [(":9864", ("", 9864)), ("127.0.0.1:9100", ("127.0.0.1", 9100)), ("[::1]:9864", ("::1", 9864)),
     ("exporter.example:80", ("exporter.example", 80))],
)
def test_listen_addresses_as_prometheus_exporters_take_them(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(text) == expected


@pytest.mark.parametrize("text", ["9864", ":http", ":70000", "host:"])
def test_bad_listen_addresses_are_refused_with_a_message(text: str) -> None:
    with pytest.raises(ListenAddressError, match=r"--web\.listen-address"):
        parse_listen_address(text)


@pytest.mark.parametrize(
    ("header", "expected"),
    [("gzip", True), ("gzip, deflate", True), ("identity", False), (None, False), ("gzip;q=0", False),
     ("deflate, gzip;q=0.5", True), ("*", True), ("GZIP", True)],
)
def test_gzip_only_when_the_client_accepts_it(header: str | None, expected: bool) -> None:
    assert accepts_gzip(header) is expected


# --- the exporter's own HTTP metrics, on a server in this process ------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class Running:
    """`serve()` on a free loopback port, with basic auth and room for one scrape at a time."""

    def __init__(self, httpd: ExporterHTTPServer) -> None:
        self.httpd = httpd
        self.port = int(httpd.server_address[1])

    def request(self, method: str, path: str, *, auth: bool = True) -> Answer:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path, headers={"Authorization": AUTH} if auth else {})
            response = connection.getresponse()
            return Answer(response.status, dict(response.getheaders()), response.read())
        finally:
            connection.close()

    def raw(self, data: bytes) -> bytes:
        """What the server answers to `data` sent as is (a request http.client would not send)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(data)
            return sock.recv(65536)

    def own_samples(self) -> Samples:
        answer = self.request("GET", "/metrics")
        assert answer.status == 200
        return parse_samples(answer.body.decode("utf-8"))


AUTH = "Basic " + base64.b64encode(b"prometheus:scrape-secret").decode()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    hashed = bcrypt.hashpw(b"scrape-secret", bcrypt.gensalt(4)).decode()
    web = parse_web_config(f"basic_auth_users:\n  prometheus: '{hashed}'\n", tmp_path)
    config = parse_config("targets:\n  - {name: one, source: demo, packages: 3, servers: 2}\n")
    httpd = serve(Exporter(config), ("127.0.0.1", 0), web, max_requests=1)
    try:
        yield Running(httpd)
    finally:
        httpd.shutdown()
        httpd.server_close()


def requests_total(samples: Samples) -> dict[tuple[str, str], float]:
    return {(dict(k)["handler"], dict(k)["code"]): v
            for k, v in samples.get("sccm_exporter_http_requests_total", {}).items()}


def test_every_answer_is_counted_by_route_and_code_whatever_it_was(running: Running) -> None:
    assert running.request("GET", "/metrics", auth=False).status == 401
    assert running.request("GET", "/metrics?debug=1").status == 200
    assert running.request("HEAD", "/-/healthy").status == 200
    assert running.request("GET", "/probe").status == 400
    assert running.request("GET", "/probe?target=nope").status == 404
    assert running.request("GET", "/-/reload").status == 405
    assert running.request("POST", "/-/reload").status == 404  # no reload wired in here
    for scanned in ("/wp-login.php", "/.env", "/metrics/", "/admin?x=1"):
        assert running.request("GET", scanned).status == 404
    assert running.request("PUT", "/metrics").status == 501  # answered by http.server itself
    assert running.raw(b"GET /a /b HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 ")  # not parsed: no path
    assert running.httpd.scrape_slots is not None
    running.httpd.scrape_slots.acquire()  # a scrape in progress holds the only slot
    try:
        assert running.request("GET", "/probe?target=one").status == 503
    finally:
        running.httpd.scrape_slots.release()
    assert requests_total(running.own_samples()) == {
        ("/metrics", "401"): 1, ("/metrics", "200"): 1, ("/-/healthy", "200"): 1, ("/probe", "400"): 1,
        ("/probe", "404"): 1, ("/-/reload", "405"): 1, ("/-/reload", "404"): 1, ("other", "404"): 4,
        ("/metrics", "501"): 1, ("other", "400"): 1, ("/probe", "503"): 1,
    }


def test_the_counts_move_with_every_request_and_in_flight_includes_the_scrape(running: Running) -> None:
    first = running.own_samples()
    assert first["sccm_exporter_http_requests_in_flight"] == {(): 1.0}
    assert ("/metrics", "200") not in requests_total(first)  # a scrape is counted once answered
    running.request("GET", "/-/ready")  # 503: the exporter was not started, no poll finished
    second = requests_total(running.own_samples())
    assert second == {("/metrics", "200"): 1, ("/-/ready", "503"): 1}


def test_a_probe_carries_none_of_the_exporters_own_metrics(running: Running) -> None:
    running.request("GET", "/-/healthy")
    answer = running.request("GET", "/probe?target=one")
    assert answer.status == 200
    names = set(parse_samples(answer.body.decode("utf-8")))
    assert names and all(name.startswith("sccm_") for name in names)
    assert not {name for name in names if name.startswith("sccm_exporter_")}
    metrics = set(running.own_samples())
    assert {"process_resident_memory_bytes", "python_info", "sccm_exporter_http_requests_total",
            "sccm_exporter_build_info"} <= metrics


@pytest.mark.parametrize(
    ("target", "expected"),
    [("/metrics", "/metrics"), ("/metrics?x=1", "/metrics"), ("/probe?target=a", "/probe"), ("/", "/"),
     ("/-/reload", "/-/reload"), ("http://exporter:9864/-/ready", "/-/ready"), ("/metrics/", "other"),
     ("/wp-admin", "other"), ("", "other"), ("//[x", "other"), ("*", "other")],
)
def test_the_handler_label_is_a_route_or_other(target: str, expected: str) -> None:
    assert handler_label(target) == expected


def test_the_server_header_names_the_exporter_and_not_python(running: Running) -> None:
    # http.server's default is "BaseHTTP/0.6 Python/3.11.7", on every answer, its own errors too.
    for method, path, auth, status in [("GET", "/metrics", True, 200), ("GET", "/metrics", False, 401),
                                       ("GET", "/nope", True, 404), ("PUT", "/metrics", True, 501),
                                       ("POST", "/-/reload", True, 404)]:
        answer = running.request(method, path, auth=auth)
        assert answer.status == status
        assert answer.headers["Server"] == f"sccm-package-exporter/{__version__}"
    assert b"Python" not in running.raw(b"GET /a /b HTTP/1.1\r\n\r\n")
