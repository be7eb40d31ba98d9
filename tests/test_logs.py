"""Log lines: logfmt and JSON, with the fields poll lines carry."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from exporter.logs import setup_logging


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    buffer = io.StringIO()
    yield buffer
    root.handlers[:], root.level = saved


def test_logfmt_line_carries_level_message_and_extra_fields_quoted_where_needed(stream: io.StringIO) -> None:
    setup_logging("info", "logfmt", stream)
    logging.getLogger("exporter.poller").warning(
        "poll failed", extra={"target": "abc", "reason": "wmi_fault", "err": 'invalid "namespace" x=1'}
    )
    line = stream.getvalue().strip()
    assert line.startswith("ts=") and line.endswith('err="invalid \\"namespace\\" x=1"')
    assert " level=warn caller=exporter.poller msg=\"poll failed\" target=abc reason=wmi_fault " in line


def test_json_line_is_one_object_per_record(stream: io.StringIO) -> None:
    setup_logging("info", "json", stream)
    logging.getLogger("exporter.poller").info("poll finished", extra={"target": "abc", "rows": 12})
    record = json.loads(stream.getvalue())
    assert record["level"] == "info" and record["msg"] == "poll finished"
    assert record["target"] == "abc" and record["rows"] == 12


def test_level_filters_lines(stream: io.StringIO) -> None:
    setup_logging("warn", "logfmt", stream)
    logging.getLogger("exporter").info("hidden")
    logging.getLogger("exporter").error("shown")
    assert "hidden" not in stream.getvalue() and "msg=shown" in stream.getvalue()


def test_auth_libraries_stay_quiet_even_at_debug(stream: io.StringIO) -> None:
    # requests_ntlm and spnego log tokens at debug level: they must never reach the output.
    setup_logging("debug", "logfmt", stream)
    logging.getLogger("requests_ntlm").debug("NTLM token TlRMTVNTUAAD...")
    logging.getLogger("urllib3.connectionpool").debug("POST /wsman")
    logging.getLogger("exporter").debug("ours")
    assert "TlRMTVNTUAAD" not in stream.getvalue() and "POST" not in stream.getvalue()
    assert "msg=ours" in stream.getvalue()


def test_control_characters_and_newlines_cannot_forge_a_second_line(stream: io.StringIO) -> None:
    setup_logging("info", "logfmt", stream)
    logging.getLogger("exporter").info("x", extra={"err": "a\nlevel=error msg=forged"})
    assert len(stream.getvalue().strip().splitlines()) == 1
