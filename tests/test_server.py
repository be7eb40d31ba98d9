"""HTTP details that are easier to pin down without a process: addresses, gzip negotiation."""

from __future__ import annotations

import pytest

from exporter.server import ListenAddressError, accepts_gzip, parse_listen_address


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
