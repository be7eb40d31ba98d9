"""Property tests of the reply parsers (issue 5, item 5): whatever a server sends, the only error is
a `PollError`.

Three kinds of input: arbitrary bytes; a real page with bytes inserted, deleted or replaced; and
well-formed but odd envelopes built from the element names WS-Management uses, nested in ways no
server writes. Each goes through every entry point the WinRM source uses on a reply:
`split_page` + `PageReader.rows` (the fast way, handing over to the general one), `parse_page`
(the general way), and `parse_fault` + `fault_error` (HTTP 500 bodies). Example counts are modest
so that the suite stays fast; the mutation tests in test_pagerows.py add their own.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import status_rows
from datasets import make_site
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsman_server import ACTION_PULL, envelope, pull_body, render_fragment

from exporter.collectors.package_status.pages import PageReader
from exporter.errors import REASONS, PollError
from exporter.winrm import faults, pages

PROPERTIES = ("PackageID", "Personality", "PkgServer", "SiteCode", "Status", "Type", "UpdateTime")
PAGE = envelope(ACTION_PULL + "Response", "uuid:1", pull_body(
    "uuid:CTX", [render_fragment(PROPERTIES, row) for row in make_site("ABC", 3, 2, 1)[:6]], False)).encode()
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def read_every_way(data: bytes | str) -> None:
    """Every parser entry point; anything but PollError fails the test."""
    for read in (
        lambda: status_rows(pages.split_page(data, message_id="uuid:1"), "ABC", PageReader("ABC")),
        lambda: pages.parse_page(data),
        lambda: faults.fault_error(faults.parse_fault(data), namespace="root\\SMS\\site_ABC",
                                  class_name="SMS_PackageStatus"),
    ):
        try:
            result = read()
        except PollError as error:
            assert error.reason in REASONS
            assert str(error)
        else:
            if isinstance(result, PollError):
                assert result.reason in REASONS


def test_the_real_page_reads() -> None:
    assert len(status_rows(pages.split_page(PAGE, message_id="uuid:1"), "ABC", PageReader("ABC"))) == 6


@FAST
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_give_rows_or_a_poll_error(data: bytes) -> None:
    read_every_way(data)


@FAST
@given(st.text(max_size=2000))
def test_arbitrary_text_gives_rows_or_a_poll_error(text: str) -> None:
    read_every_way(text)


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(PAGE)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "replace"]))
        chunk = draw(st.one_of(
            st.binary(min_size=1, max_size=8),
            st.sampled_from([b"<", b">", b"&", b"&lol;", b"<!DOCTYPE x>", b"\xff", b"\x00", b"]]>", b"<![CDATA[",
                             b"</w:Items>", b"<n:EndOfSequence/>", b'xsi:nil="true"', b"\xe2\x80", b"\r\n"]),
        ))
        if kind == "insert":
            data[at:at] = chunk
        elif kind == "delete":
            del data[at : at + len(chunk)]
        else:
            data[at : at + len(chunk)] = chunk
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_a_real_page_with_bytes_changed_gives_rows_or_a_poll_error(data: bytes) -> None:
    read_every_way(data)


NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "n": "http://schemas.xmlsoap.org/ws/2004/09/enumeration",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/sms/site_ABC/SMS_PackageStatus",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
    "": "",
}
NAMES = ["Envelope", "Header", "Body", "PullResponse", "EnumerateResponse", "Items", "XmlFragment",
         "EnumerationContext", "EndOfSequence", "Fault", "Code", "Value", "Subcode", "Reason", "Text", "Detail",
         "WSManFault", "Message", "ProviderFault", "MSFT_WmiError", "error_Code", "RelatesTo", "MessageID",
         "SMS_PackageStatus", "Datetime", *PROPERTIES, "Other"]
_TEXTS = st.one_of(st.none(), st.sampled_from(["", "1", "0x80041010", "2150858778", "uuid:1", "uuid:2", "s:Receiver",
                                               "w:InternalError", "ABC00010", "2024-05-01T10:22:33Z", "true",
                                               "-1", "99999999999999999999"]),
                   st.text(max_size=12))


def _tag(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(list(NS)))
    name = draw(st.sampled_from(NAMES))
    return f"{{{NS[prefix]}}}{name}" if NS[prefix] else name


def _clean(text: str | None) -> str | None:
    # What XML 1.0 cannot hold at all is not a reply a parser could ever see as well-formed.
    return None if text is None else "".join(c for c in text if c in "\t\n\r" or " " <= c <= "\ud7ff"
                                              or "\ue000" <= c <= "\ufffd")


@st.composite
def _element(draw: st.DrawFn, depth: int = 0) -> ET.Element:
    element = ET.Element(_tag(draw))
    if draw(st.booleans()):
        element.set(f"{{{NS['xsi']}}}nil", draw(st.sampled_from(["true", "false", "x"])))
    if draw(st.integers(0, 4)) == 0:
        element.set("Code", draw(st.sampled_from(["5", "2150858778", "x", ""])))
    element.text = _clean(draw(_TEXTS))
    if depth < 4:
        for _ in range(draw(st.integers(0, 3))):
            element.append(draw(_element(depth + 1)))
    return element


@st.composite
def _envelope(draw: st.DrawFn) -> bytes:
    root = ET.Element(f"{{{NS['s']}}}Envelope")
    if draw(st.booleans()):
        header = ET.SubElement(root, f"{{{NS['s']}}}Header")
        relates = ET.SubElement(header, f"{{{NS['a']}}}RelatesTo")
        relates.text = draw(st.sampled_from(["uuid:1", "uuid:2", ""]))
    body = ET.SubElement(root, f"{{{NS['s']}}}Body")
    response = ET.SubElement(body, draw(st.sampled_from(
        [f"{{{NS['n']}}}PullResponse", f"{{{NS['n']}}}EnumerateResponse", f"{{{NS['s']}}}Fault", "Other"])))
    for _ in range(draw(st.integers(0, 4))):
        response.append(draw(_element()))
    data: bytes = ET.tostring(root, encoding="utf-8")
    return data


@FAST
@given(_envelope())
def test_well_formed_odd_envelopes_give_rows_or_a_poll_error(data: bytes) -> None:
    read_every_way(data)
    read_every_way(data.decode("utf-8"))


def test_atheris_finds_no_crash_in_a_short_run(tmp_path: Path) -> None:
    """tests/fuzz_pages.py, coverage-guided, for 20,000 inputs (a few seconds)."""
    pytest.importorskip("atheris")
    result = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("fuzz_pages.py")), "-atheris_runs=20000",
         f"-artifact_prefix={tmp_path}/"],
        capture_output=True, timeout=120, cwd=tmp_path,
    )
    out = result.stderr.decode(errors="replace")
    assert result.returncode == 0, out[-3000:]
    assert "Done 20000" in out
