"""Tests of the WS-Management test server itself, driven by real pywinrm and raw HTTP.

Why: the exporter's WinRM tests trust this server to behave as Windows does (spec: wsman-wire.md);
if the server were wrong, those tests would prove nothing.  Every test here talks to it the way a
client would -- ``winrm.protocol.Protocol.send_message()`` with hand-written envelopes, or raw
``requests``/sockets -- and checks the wire behaviour the spec describes.
"""

from __future__ import annotations

import base64
import collections
import socket
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

import pytest
import requests
import winrm.protocol
from datasets import (
    DP_CONTENT_SUMMARIZER,
    DP_INFO,
    PACKAGE_BASECLASS,
    PACKAGE_STATUS,
    PROVIDER_MACHINE,
    THREE_SITES,
    UNKNOWN_STATUS,
    UNREQUESTED_PACKAGE_PROPERTIES,
    make_site,
    package_id,
    provider_locations,
    site_namespace,
    three_site_dataset,
)
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from wsman_server import (
    CODE_CANNOT_PROCESS_FILTER,
    CODE_ENCODING_LIMIT,
    CODE_INVALID_CONTEXT,
    CODE_QUOTA_MAX_OPERATIONS,
    WBEM_E_ACCESS_DENIED,
    WBEM_E_INVALID_CLASS,
    WBEM_E_INVALID_NAMESPACE,
    WBEM_E_INVALID_QUERY,
    CimDatetime,
    WSManServer,
    format_datetime,
    make_self_signed_cert,
    parse_wql,
)

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "n": "http://schemas.xmlsoap.org/ws/2004/09/enumeration",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
}
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
CIM_DATETIME = "{http://schemas.dmtf.org/wbem/wscim/1/common}Datetime"
WMI = "http://schemas.microsoft.com/wbem/wsman/1/wmi/"
ABC_URI = f"{WMI}root/sms/site_ABC/SMS_PackageStatus"
ABC_STAR = f"{WMI}root/sms/site_ABC/*"
Transport = Literal["basic", "ntlm"]
USER, PASSWORD = "CORP\\svc-reader", "Rd-0nly-Pa55"
LOCAL_USER, LOCAL_PASSWORD = "localreader", "L0cal-Pa55"
DENIED = "CORP\\no-rights"
USERS = {USER: PASSWORD, LOCAL_USER: LOCAL_PASSWORD, DENIED: "Den1ed-Pa55"}
DATA = three_site_dataset()
ABC_ROWS = DATA[site_namespace("ABC")]["SMS_PackageStatus"]


# --------------------------------------------------------------------------- envelope helpers


def envelope(action: str, uri: str, body: str, max_envelope: int | None = 512000) -> str:
    """A request envelope as the spec says a client should build it (not pywinrm's header)."""
    size = f'<w:MaxEnvelopeSize s:mustUnderstand="true">{max_envelope}</w:MaxEnvelopeSize>' if max_envelope else ""
    return (
        f'<s:Envelope xmlns:s="{NS["s"]}" xmlns:a="{NS["a"]}" xmlns:n="{NS["n"]}" xmlns:w="{NS["w"]}">'
        "<s:Header><a:To>http://127.0.0.1/wsman</a:To>"
        f'<w:ResourceURI s:mustUnderstand="true">{uri}</w:ResourceURI>'
        '<a:ReplyTo><a:Address s:mustUnderstand="true">'
        "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo>"
        f'<a:Action s:mustUnderstand="true">{NS["n"]}/{action}</a:Action>{size}'
        f"<a:MessageID>uuid:{uuid.uuid4()}</a:MessageID>"
        '<w:Locale xml:lang="en-US" s:mustUnderstand="false"/><w:OperationTimeout>PT60S</w:OperationTimeout>'
        f"</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    )


def enumerate_xml(
    uri: str, wql: str | None = None, optimize: bool = True, max_elements: int | None = 32000, **kw: Any
) -> str:
    parts = ["<w:OptimizeEnumeration/>" if optimize else ""]
    if max_elements is not None:
        parts.append(f"<w:MaxElements>{max_elements}</w:MaxElements>")
    if wql is not None:
        parts.append(f'<w:Filter Dialect="http://schemas.microsoft.com/wbem/wsman/1/WQL">{wql}</w:Filter>')
    return envelope("Enumerate", uri, "<n:Enumerate>" + "".join(parts) + "</n:Enumerate>", **kw)


def pull_xml(uri: str, context: str, max_elements: int | None = 32000, **kw: Any) -> str:
    limit = f"<n:MaxElements>{max_elements}</n:MaxElements>" if max_elements is not None else ""
    body = f"<n:Pull><n:EnumerationContext>{context}</n:EnumerationContext>{limit}</n:Pull>"
    return envelope("Pull", uri, body, **kw)


def release_xml(uri: str, context: str) -> str:
    return envelope("Release", uri, f"<n:Release><n:EnumerationContext>{context}</n:EnumerationContext></n:Release>")


class Page:
    """One parsed Enumerate/Pull response (Items and EndOfSequence accepted in either namespace)."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.root = ET.fromstring(raw)
        body = self.root.find("s:Body", NS)
        assert body is not None
        response = body[0]
        self.action = self.root.findtext("s:Header/a:Action", namespaces=NS)
        self.relates_to = self.root.findtext("s:Header/a:RelatesTo", namespaces=NS)
        ctx = response.find("n:EnumerationContext", NS)
        self.context_present = ctx is not None
        self.context = (ctx.text or "").strip() if ctx is not None else ""
        items = response.find("w:Items", NS)
        items = items if items is not None else response.find("n:Items", NS)
        self.items: list[ET.Element] = list(items) if items is not None else []
        self.items_present = items is not None
        self.end = response.find("w:EndOfSequence", NS) is not None or response.find("n:EndOfSequence", NS) is not None


def send(proto: winrm.protocol.Protocol, xml: str) -> Page:
    return Page(proto.send_message(xml))


def walk(proto: winrm.protocol.Protocol, uri: str, wql: str | None = None, pull_max: int = 32000) -> list[Page]:
    """A whole enumeration the way the spec says a client must do it: always the latest context."""
    pages = [send(proto, enumerate_xml(uri, wql))]
    while not pages[-1].end:
        pages.append(send(proto, pull_xml(uri, pages[-1].context, pull_max)))
    return pages


def items_of(pages: list[Page]) -> list[ET.Element]:
    return [item for page in pages for item in page.items]


def props(item: ET.Element) -> dict[str, str | None]:
    """Local property name -> text (Datetime child text for datetimes, None for nil)."""
    out: dict[str, str | None] = {}
    for child in item:
        name = child.tag.rpartition("}")[2]
        if child.get(XSI_NIL) == "true":
            out[name] = None
        elif len(child):
            out[name] = child[0].text
        else:
            out[name] = child.text or ""
    return out


def row_key(row: dict[str, Any]) -> tuple[str, str, str, str]:
    return (str(row["PackageID"]), str(row["PkgServer"]), str(row["Status"]), str(row["Type"]))


def protocol(server: WSManServer, transport: Transport = "basic", **kw: Any) -> winrm.protocol.Protocol:
    options: dict[str, Any] = {"username": USER, "password": PASSWORD, "proxy": None, "ca_trust_path": None}
    if server.tls:
        options.update(server_cert_validation="validate", ca_trust_path=server.ca_file)
    options.update(kw)
    return winrm.protocol.Protocol(server.url, transport=transport, **options)


def fault_of(proto: winrm.protocol.Protocol, xml: str) -> WSManFaultError:
    with pytest.raises(WSManFaultError) as info:
        proto.send_message(xml)
    return info.value


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def shared() -> Iterator[WSManServer]:
    """A read-only server for tests that inject nothing."""
    with WSManServer(DATA, users=USERS, denied_users={DENIED}) as server:
        yield server


@pytest.fixture
def server() -> Iterator[WSManServer]:
    """A fresh server for tests that inject failures or count requests."""
    with WSManServer(DATA, users=USERS) as srv:
        yield srv


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return make_self_signed_cert(str(tmp_path_factory.mktemp("cert")))


# --------------------------------------------------------------------------- enumeration


def test_full_walk_collects_every_instance_once_with_a_new_context_each_page(shared: WSManServer) -> None:
    proto = protocol(shared)
    pages = walk(proto, ABC_URI)
    keys = collections.Counter(row_key(props(i)) for i in items_of(pages))
    assert keys == collections.Counter(row_key(r) for r in ABC_ROWS)
    assert len(pages[0].items) == 1  # Windows' first batch
    contexts = [p.context for p in pages[:-1]]
    assert len(set(contexts)) == len(contexts) and all(c.startswith("uuid:") for c in contexts)
    assert pages[-1].end and not pages[-1].context_present
    assert all(not p.end for p in pages[:-1])
    assert pages[0].action == f"{NS['n']}/EnumerateResponse"
    assert pages[1].action == f"{NS['n']}/PullResponse"


def test_responses_relate_to_the_request_message_id(shared: WSManServer) -> None:
    xml = enumerate_xml(ABC_URI)
    message_id = ET.fromstring(xml).findtext("s:Header/a:MessageID", namespaces=NS)
    page = send(protocol(shared), xml)
    assert page.relates_to == message_id
    assert page.root.findtext("s:Header/a:MessageID", namespaces=NS) != message_id


def test_class_shape_alphabetical_with_datetime_and_nil(shared: WSManServer) -> None:
    items = items_of(walk(protocol(shared), ABC_URI))
    first = items[0]
    assert first.tag == f"{{{ABC_URI}}}SMS_PackageStatus"
    assert first.get(XSI_TYPE) == "p:SMS_PackageStatus_Type"
    names = [c.tag.rpartition("}")[2] for c in first]
    assert names == sorted(ABC_ROWS[0], key=str.lower)
    update = first.find(f"{{{ABC_URI}}}UpdateTime")
    assert update is not None and update[0].tag == CIM_DATETIME
    expected = ABC_ROWS[0]["UpdateTime"]
    assert datetime.fromisoformat(str(update[0].text)) == expected
    nil_rows = [props(i) for i in items if props(i)["UpdateTime"] is None]
    assert len(nil_rows) == sum(1 for r in ABC_ROWS if r["UpdateTime"] is None) > 0


def test_namespace_and_class_match_case_insensitively(shared: WSManServer) -> None:
    pages = walk(protocol(shared), f"{WMI}ROOT/Sms/SITE_abc/sms_packagestatus")
    assert len(items_of(pages)) == len(ABC_ROWS)


def test_wql_property_list_gives_unqualified_alphabetical_fragments(shared: WSManServer) -> None:
    wql = "SELECT Status, PackageID, UpdateTime FROM SMS_PackageStatus WHERE PackageID LIKE '%A'"
    items = items_of(walk(protocol(shared), ABC_STAR, wql))
    assert len(items) == sum(1 for r in ABC_ROWS if r["PackageID"].endswith("A"))
    assert {i.tag for i in items} == {f"{{{NS['w']}}}XmlFragment"}
    assert [c.tag for c in items[0]] == ["PackageID", "Status", "UpdateTime"]
    dated = next(i for i in items if len(i[2]))
    assert dated[2][0].tag == "Datetime"


def test_wql_select_star_gives_class_shape_and_where_combines(shared: WSManServer) -> None:
    wql = "SELECT * FROM SMS_PackageStatus WHERE (PackageID = 'abc00010' OR PackageID LIKE '%F') AND Type = 2"
    items = items_of(walk(protocol(shared), ABC_STAR, wql))
    wanted = [r for r in ABC_ROWS if r["PackageID"] == "ABC00010" or r["PackageID"].endswith("F")]
    expected = [r for r in wanted if r["Type"] == 2]
    assert len(items) == len(expected) > 0
    assert items[0].tag == f"{{{ABC_URI}}}SMS_PackageStatus"


def test_like_suffix_split_partitions_the_class_evenly(shared: WSManServer) -> None:
    proto = protocol(shared)
    counts = {}
    for digit in "0123456789ABCDEF":
        wql = f"SELECT PackageID FROM SMS_PackageStatus WHERE PackageID LIKE '%{digit}'"
        counts[digit] = len(items_of(walk(proto, ABC_STAR, wql)))
    assert sum(counts.values()) == len(ABC_ROWS)
    assert max(counts.values()) < 2 * min(counts.values())


@pytest.mark.parametrize(
    "wql",
    [
        "SELEKT * FROM SMS_PackageStatus",
        "SELECT * FROM SMS_PackageStatus WHERE PackageID LIKE",
        "SELECT NoSuchProperty FROM SMS_PackageStatus",
        "SELECT * FROM SMS_PackageStatus WHERE PackageID = 'x' garbage",
    ],
)
def test_unparsable_wql_is_cannot_process_filter(shared: WSManServer, wql: str) -> None:
    fault = fault_of(protocol(shared), enumerate_xml(ABC_STAR, wql))
    assert fault.fault_subcode == "n:CannotProcessFilter"
    assert fault.wsman_fault_code == CODE_CANNOT_PROCESS_FILTER == 2150858778
    assert fault.code == 500


def test_provider_location_lives_in_root_sms(shared: WSManServer) -> None:
    items = items_of(walk(protocol(shared), f"{WMI}root/sms/*", "SELECT * FROM SMS_ProviderLocation"))
    rows = [props(i) for i in items]
    assert [r["SiteCode"] for r in rows] == [code for code, *_ in THREE_SITES]
    assert [r["ProviderForLocalSite"] for r in rows] == ["true", "false", "false"]
    assert rows[0]["Machine"] == PROVIDER_MACHINE


# --------------------------------------------------------------------------- paging


def test_pages_are_capped_near_75_kb_and_by_max_elements(server: WSManServer) -> None:
    proto = protocol(server)
    pages = walk(proto, ABC_URI)
    log = [r for r in server.requests if r.action == "pull"]
    assert all(r.envelope_bytes < server.page_bytes + 2000 for r in log)
    assert sum(1 for r in log if r.envelope_bytes > 0.9 * server.page_bytes) >= len(log) - 1
    first = send(proto, enumerate_xml(ABC_URI))
    page = send(proto, pull_xml(ABC_URI, first.context, 7))
    assert len(page.items) == 7
    assert len(pages) > 10


def test_pull_without_max_elements_returns_one_item(server: WSManServer) -> None:
    proto = protocol(server)
    first = send(proto, enumerate_xml(ABC_URI))
    page = send(proto, pull_xml(ABC_URI, first.context, None))
    assert len(page.items) == 1
    misplaced = pull_xml(ABC_URI, page.context, None).replace(
        "</n:Pull>", "<w:MaxElements>50</w:MaxElements></n:Pull>"
    )
    assert len(send(proto, misplaced).items) == 1  # MaxElements in the wsman namespace is ignored
    assert server.requests[-1].max_elements is None


def test_first_batch_is_configurable_and_non_optimized_enumerate_has_no_items() -> None:
    with WSManServer(DATA, users=USERS, first_batch=5) as srv:
        proto = protocol(srv)
        assert len(send(proto, enumerate_xml(ABC_URI)).items) == 5
        assert len(send(proto, enumerate_xml(ABC_URI, max_elements=3)).items) == 3
        plain = send(proto, enumerate_xml(ABC_URI, optimize=False))
        assert plain.items == [] and not plain.end and plain.context.startswith("uuid:")
        assert len(send(proto, pull_xml(ABC_URI, plain.context, 4)).items) == 4


def test_everything_fitting_in_the_first_response_has_empty_context() -> None:
    with WSManServer(DATA, users=USERS, first_batch=100) as srv:
        page = send(protocol(srv), enumerate_xml(f"{WMI}root/sms/SMS_ProviderLocation"))
        assert len(page.items) == 3 and page.end
        assert page.context_present and page.context == ""
        assert srv.open_contexts() == 0


def test_empty_result_with_and_without_optimization(shared: WSManServer) -> None:
    proto = protocol(shared)
    wql = "SELECT * FROM SMS_PackageStatus WHERE PackageID = 'NOPE0000'"
    page = send(proto, enumerate_xml(ABC_STAR, wql))
    assert page.items == [] and page.end and page.context == ""
    plain = send(proto, enumerate_xml(ABC_STAR, wql, optimize=False))
    last = send(proto, pull_xml(ABC_STAR, plain.context))
    assert last.items == [] and last.end and not last.context_present


def test_envelope_size_caps_pages_and_too_small_is_encoding_limit(server: WSManServer) -> None:
    proto = protocol(server)
    first = send(proto, enumerate_xml(ABC_URI, max_envelope=20000))
    page = send(proto, pull_xml(ABC_URI, first.context, max_envelope=20000))
    assert len(page.items) > 10 and server.requests[-1].envelope_bytes <= 20000
    fault = fault_of(proto, pull_xml(ABC_URI, page.context, max_envelope=1200))
    assert fault.fault_subcode == "w:EncodingLimit"
    assert fault.wsman_fault_code == CODE_ENCODING_LIMIT
    bigger = send(protocol(server), enumerate_xml(ABC_URI, max_envelope=10_000_000))
    assert server.requests[-1].max_envelope_size == 10_000_000 and bigger.items


# --------------------------------------------------------------------------- contexts


def test_stale_and_unknown_contexts_fault(server: WSManServer) -> None:
    proto = protocol(server)
    first = send(proto, enumerate_xml(ABC_URI))
    second = send(proto, pull_xml(ABC_URI, first.context, 5))
    fault = fault_of(proto, pull_xml(ABC_URI, first.context, 5))
    assert fault.fault_subcode == "n:InvalidEnumerationContext"
    assert fault.wsman_fault_code == CODE_INVALID_CONTEXT
    assert fault_of(proto, pull_xml(ABC_URI, "uuid:00000000-0000-0000-0000-000000000000")).fault_subcode == (
        "n:InvalidEnumerationContext"
    )
    assert len(send(proto, pull_xml(ABC_URI, second.context, 5)).items) == 5


def test_release_frees_the_context(server: WSManServer) -> None:
    proto = protocol(server)
    first = send(proto, enumerate_xml(ABC_URI))
    assert server.open_contexts() == 1
    reply = ET.fromstring(proto.send_message(release_xml(ABC_URI, first.context)))
    assert reply.findtext("s:Header/a:Action", namespaces=NS) == f"{NS['n']}/ReleaseResponse"
    assert server.open_contexts() == 0
    assert fault_of(proto, pull_xml(ABC_URI, first.context)).wsman_fault_code == CODE_INVALID_CONTEXT


def test_contexts_expire_after_ttl_and_on_demand() -> None:
    with WSManServer(DATA, users=USERS, context_ttl=0.2) as srv:
        proto = protocol(srv)
        first = send(proto, enumerate_xml(ABC_URI))
        page = send(proto, pull_xml(ABC_URI, first.context, 2))
        time.sleep(0.3)
        assert fault_of(proto, pull_xml(ABC_URI, page.context)).fault_subcode == "n:InvalidEnumerationContext"
        srv.context_ttl = 60
        other = send(proto, enumerate_xml(ABC_URI))
        srv.expire_contexts()
        assert fault_of(proto, pull_xml(ABC_URI, other.context)).fault_subcode == "n:InvalidEnumerationContext"


def test_concurrent_enumerations_per_user_hit_the_quota() -> None:
    with WSManServer(DATA, users=USERS, max_concurrent_enumerations=2) as srv:
        proto = protocol(srv)
        first = send(proto, enumerate_xml(ABC_URI))
        send(proto, enumerate_xml(ABC_URI))
        fault = fault_of(proto, enumerate_xml(ABC_URI))
        assert fault.fault_subcode == "w:QuotaLimit" and fault.wmierror_code == CODE_QUOTA_MAX_OPERATIONS
        assert send(protocol(srv, username=LOCAL_USER, password=LOCAL_PASSWORD), enumerate_xml(ABC_URI)).items
        proto.send_message(release_xml(ABC_URI, first.context))
        assert send(proto, enumerate_xml(ABC_URI)).items


def test_context_belongs_to_its_user(server: WSManServer) -> None:
    first = send(protocol(server), enumerate_xml(ABC_URI))
    other = protocol(server, username=LOCAL_USER, password=LOCAL_PASSWORD)
    assert fault_of(other, pull_xml(ABC_URI, first.context)).fault_subcode == "n:InvalidEnumerationContext"


# --------------------------------------------------------------------------- faults


def test_unknown_namespace_class_and_access_denied(shared: WSManServer) -> None:
    proto = protocol(shared)
    fault = fault_of(proto, enumerate_xml(f"{WMI}root/sms/site_XYZ/SMS_PackageStatus"))
    assert (fault.fault_subcode, fault.wmierror_code) == ("w:InternalError", WBEM_E_INVALID_NAMESPACE)
    fault = fault_of(proto, enumerate_xml(f"{WMI}root/sms/site_ABC/SMS_NoSuchClass"))
    assert (fault.fault_subcode, fault.wmierror_code) == ("w:InternalError", WBEM_E_INVALID_CLASS)
    assert fault.wmierror_code == 0x80041010
    fault = fault_of(proto, enumerate_xml(ABC_STAR, "SELECT * FROM SMS_NoSuchClass"))
    assert fault.wsman_fault_code == CODE_CANNOT_PROCESS_FILTER and b"0x80041010" in fault.response.encode()
    denied = protocol(shared, username=DENIED, password=USERS[DENIED])
    fault = fault_of(denied, enumerate_xml(ABC_URI))
    assert (fault.fault_subcode, fault.wmierror_code) == ("w:AccessDenied", WBEM_E_ACCESS_DENIED)


EXPECTED_FAULTS: dict[str, tuple[str, int | None, int | None]] = {
    # kind: (subcode, wsman_fault_code, wmierror_code)
    "invalid_namespace": ("w:InternalError", None, 0x8004100E),
    "invalid_namespace_uri": ("a:DestinationUnreachable", 2150858752, None),
    "invalid_class": ("w:InternalError", None, 0x80041010),
    "invalid_query": ("w:InternalError", None, WBEM_E_INVALID_QUERY),
    "cannot_process_filter": ("n:CannotProcessFilter", 2150858778, None),
    "access_denied": ("w:AccessDenied", None, 0x80041003),
    "access_denied_wsman": ("w:AccessDenied", 5, None),
    "provider_failure": ("w:InternalError", 1359, None),
    "invalid_context": ("n:InvalidEnumerationContext", CODE_INVALID_CONTEXT, None),
    "quota": ("w:QuotaLimit", None, CODE_QUOTA_MAX_OPERATIONS),
    "encoding_limit": ("w:EncodingLimit", CODE_ENCODING_LIMIT, None),
}


@pytest.mark.parametrize("kind", sorted(EXPECTED_FAULTS))
def test_injected_fault_reaches_pywinrm_with_its_codes(server: WSManServer, kind: str) -> None:
    proto = protocol(server)
    server.fault_next("enumerate", kind)
    fault = fault_of(proto, enumerate_xml(ABC_URI))
    assert (fault.fault_subcode, fault.wsman_fault_code, fault.wmierror_code) == EXPECTED_FAULTS[kind]
    assert fault.code == 500 and fault.reason
    assert server.requests[-1].fault == kind
    assert send(proto, enumerate_xml(ABC_URI)).items  # one-shot


def test_injected_faults_over_encrypted_ntlm_and_timeout(server: WSManServer) -> None:
    proto = protocol(server, transport="ntlm")
    first = send(proto, enumerate_xml(ABC_URI))
    server.fault_next("pull", "provider_failure")
    fault = fault_of(proto, pull_xml(ABC_URI, first.context))
    assert fault.wsman_fault_code == 1359 and b"0x80041001" in fault.response.encode()
    assert fault_of(proto, pull_xml(ABC_URI, first.context)).wsman_fault_code == CODE_INVALID_CONTEXT
    server.fault_next("any", "timed_out")
    with pytest.raises(WinRMOperationTimeoutError):
        proto.send_message(enumerate_xml(ABC_URI))
    assert all(r.encrypted for r in server.requests)


def test_malformed_request_and_unknown_action(shared: WSManServer) -> None:
    proto = protocol(shared)
    assert fault_of(proto, "<not-xml").fault_subcode == "w:SchemaValidationError"
    other = enumerate_xml(ABC_URI).replace(f"{NS['n']}/Enumerate<", "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get<")
    assert fault_of(proto, other).fault_subcode == "a:ActionNotSupported"


# --------------------------------------------------------------------------- values


def test_values_escaping_control_characters_lists_bools_datetimes(server: WSManServer) -> None:
    row = {
        "Name": "a\x07b & <c> \"d\"\ttab",
        "Flag": True,
        "Off": False,
        "List": ["x", "y&z"],
        "Empty": None,
        "Naive": datetime(2024, 1, 2, 3, 4, 5),
        "Offset": datetime(2024, 1, 2, 3, 4, 5, 120000, tzinfo=timezone(timedelta(hours=2))),
        "Seven": CimDatetime("2013-04-15T16:28:43.4881712Z"),
        "Whole": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    server.set_rows("root\\test", "T_Values", [row])
    item = send(protocol(server), enumerate_xml(f"{WMI}root/test/T_Values")).items[0]
    values = props(item)
    assert values["Name"] == 'a?b & <c> "d"\ttab'
    assert (values["Flag"], values["Off"], values["Empty"]) == ("true", "false", None)
    assert [c.text for c in item if c.tag.endswith("}List")] == ["x", "y&z"]
    assert values["Naive"] == "2024-01-02T03:04:05"
    assert values["Offset"] == "2024-01-02T03:04:05.12+02:00"
    assert values["Seven"] == "2013-04-15T16:28:43.4881712Z"
    assert values["Whole"] == "2024-01-02T03:04:05Z"


def test_parse_wql_subset() -> None:
    query = parse_wql("select PackageID, Status from SMS_PackageStatus where not Status = 3 and ShareName is null")
    assert query.properties == ("PackageID", "Status") and query.class_name == "SMS_PackageStatus"
    assert query.where is not None
    assert query.where({"Status": 2, "ShareName": None})
    assert not query.where({"Status": 3, "ShareName": None})
    assert parse_wql("SELECT * FROM X WHERE Name LIKE 'a_[bc]%'").where is not None
    assert query.likes == frozenset()
    assert parse_wql("SELECT * FROM X WHERE (A = 1) AND (Name NOT LIKE '%[01]' OR Name = '')").likes == {"name"}


# --------------------------------------------------------------------------- auth and transport


def test_request_log_records_what_the_client_sent(server: WSManServer) -> None:
    proto = protocol(server)
    wql = "SELECT PackageID FROM SMS_PackageStatus"
    first = send(proto, enumerate_xml(ABC_STAR, wql, max_elements=9, max_envelope=150000))
    send(proto, pull_xml(ABC_STAR, first.context, 11))
    enum, pull = server.requests
    assert (enum.action, enum.resource_uri, enum.wql, enum.max_elements) == ("enumerate", ABC_STAR, wql, 9)
    assert enum.optimize and enum.max_envelope_size == 150000 and enum.user == USER and not enum.encrypted
    assert (enum.items, enum.context_out, enum.status) == (1, first.context, 200)
    assert (pull.action, pull.max_elements, pull.context_in, pull.items) == ("pull", 11, first.context, 11)
    assert pull.operation_timeout == "PT60S" and pull.bytes_out > pull.items * 50
    assert enum.connection == pull.connection  # keep-alive


def test_wrong_credentials_are_http_401(shared: WSManServer) -> None:
    transports: tuple[Transport, ...] = ("basic", "ntlm")
    for transport in transports:
        with pytest.raises(InvalidCredentialsError):
            protocol(shared, transport=transport, password="wrong").send_message(enumerate_xml(ABC_URI))
        with pytest.raises(InvalidCredentialsError):
            protocol(shared, transport=transport, username="CORP\\nobody").send_message(enumerate_xml(ABC_URI))


def test_unauthenticated_request_is_challenged_with_offered_schemes(shared: WSManServer) -> None:
    response = requests.post(shared.url, data=enumerate_xml(ABC_URI), timeout=5, proxies={"http": "", "https": ""})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Negotiate, Basic realm="WSMAN"'
    with WSManServer(DATA, users=USERS, auth=("basic",)) as basic_only:
        with pytest.raises(InvalidCredentialsError):
            protocol(basic_only, transport="ntlm").send_message(enumerate_xml(ABC_URI))
        assert send(protocol(basic_only), enumerate_xml(ABC_URI)).items


def test_ntlm_with_message_encryption_end_to_end(server: WSManServer) -> None:
    proto = protocol(server, transport="ntlm")
    pages = walk(proto, ABC_URI)
    assert len(items_of(pages)) == len(ABC_ROWS)
    log = server.requests
    assert log and all(r.encrypted and r.user == USER for r in log)
    assert server.ntlm_handshakes == 1 and len({r.connection for r in log}) == 1
    assert all(r.bytes_out > r.envelope_bytes for r in log)  # framing + signature on the wire
    local = protocol(server, transport="ntlm", username=LOCAL_USER, password=LOCAL_PASSWORD)
    assert send(local, enumerate_xml(ABC_URI)).items and server.requests[-1].user == LOCAL_USER


def test_encrypted_body_is_not_plaintext_on_the_wire(server: WSManServer) -> None:
    proto = protocol(server, transport="ntlm")
    send(proto, enumerate_xml(ABC_URI))
    session, encryption = proto.transport.session, proto.transport.encryption
    assert session is not None and encryption is not None
    prepared = encryption.prepare_encrypted_request(session, server.url, b"<s:Envelope/>")
    assert isinstance(prepared.body, bytes) and b"Envelope" not in prepared.body
    assert prepared.headers["Content-Type"].startswith('multipart/encrypted;protocol="application/HTTP-SPNEGO')


def test_ntlm_without_encryption(server: WSManServer) -> None:
    proto = protocol(server, transport="ntlm", message_encryption="never")
    assert send(proto, enumerate_xml(ABC_URI)).items
    assert server.requests[-1].encrypted is False and server.requests[-1].user == USER


def test_unencrypted_traffic_refused_when_not_allowed() -> None:
    with WSManServer(DATA, users=USERS, allow_unencrypted=False) as srv:
        with pytest.raises(InvalidCredentialsError):
            protocol(srv).send_message(enumerate_xml(ABC_URI))
        assert send(protocol(srv, transport="ntlm"), enumerate_xml(ABC_URI)).items


def test_https_with_throwaway_cert_as_ca(cert: tuple[str, str]) -> None:
    with WSManServer(DATA, users=USERS, tls=True, cert=cert) as srv:
        assert srv.url.startswith("https://127.0.0.1:") and srv.ca_file == cert[0]
        assert send(protocol(srv), enumerate_xml(ABC_URI)).items
        assert send(protocol(srv, transport="ntlm"), enumerate_xml(ABC_URI)).items
        assert srv.requests[-1].encrypted is False  # TLS protects it; no message encryption
        assert srv.ntlm_handshakes == 1  # with channel binding (send_cbt defaults to True)
        with pytest.raises(requests.exceptions.SSLError):
            protocol(srv, ca_trust_path=None).send_message(enumerate_xml(ABC_URI))


def test_ipv6_loopback() -> None:
    try:
        srv = WSManServer(DATA, users=USERS, host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with srv:
        assert srv.url.startswith("http://[::1]:")
        assert send(protocol(srv, transport="ntlm"), enumerate_xml(ABC_URI)).items


def test_minted_cert_by_default() -> None:
    with WSManServer(DATA, users=USERS, tls=True) as srv:
        assert srv.ca_file is not None
        response = requests.post(srv.url, data=b"", verify=srv.ca_file, timeout=5, auth=(USER, PASSWORD))
        assert response.status_code == 200


# --------------------------------------------------------------------------- failure injection


def _in_thread(target: Any) -> tuple[threading.Thread, list[BaseException | object]]:
    outcome: list[BaseException | object] = []

    def run() -> None:
        try:
            outcome.append(target())
        except BaseException as exc:  # the outcome is the point
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_hang_then_stop_returns_promptly() -> None:
    srv = WSManServer(DATA, users=USERS).start()
    proto = protocol(srv, transport="ntlm")
    first = send(proto, enumerate_xml(ABC_URI))
    srv.hang = {"pull"}
    thread, outcome = _in_thread(lambda: proto.send_message(pull_xml(ABC_URI, first.context)))
    _wait_for(lambda: len(srv.requests) == 2)
    time.sleep(0.1)
    assert thread.is_alive() and srv.requests[-1].status is None
    started = time.monotonic()
    srv.stop()
    thread.join(3)
    assert time.monotonic() - started < 2 and not thread.is_alive()
    assert isinstance(outcome[0], requests.exceptions.ConnectionError)


def test_hang_cleared_answers_and_keeps_the_context(server: WSManServer) -> None:
    proto = protocol(server)
    server.hang = {"enumerate"}
    thread, outcome = _in_thread(lambda: proto.send_message(enumerate_xml(ABC_URI)))
    _wait_for(lambda: len(server.requests) == 1)
    time.sleep(0.1)
    assert thread.is_alive()
    server.hang = set()
    thread.join(3)
    assert isinstance(outcome[0], bytes) and Page(outcome[0]).items


def test_stall_after_pages_hangs_the_next_pull(server: WSManServer) -> None:
    proto = protocol(server)
    page = send(proto, enumerate_xml(ABC_URI))
    server.stall_after_pages = 2
    for _ in range(2):
        page = send(proto, pull_xml(ABC_URI, page.context, 3))
    thread, outcome = _in_thread(lambda: proto.send_message(pull_xml(ABC_URI, page.context, 3)))
    time.sleep(0.2)
    assert thread.is_alive() and server.requests[-1].status is None
    server.stall_after_pages = None
    thread.join(3)
    assert Page(outcome[0]).items if isinstance(outcome[0], bytes) else pytest.fail(str(outcome[0]))


def test_hang_on_connect_accepts_but_never_reads() -> None:
    srv = WSManServer(DATA, users=USERS).start()
    srv.hang_on_connect = True
    with socket.create_connection(("127.0.0.1", srv.port), timeout=0.3) as sock:
        sock.sendall(b"POST /wsman HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        with pytest.raises(TimeoutError):
            sock.recv(100)
        started = time.monotonic()
        srv.stop()
        sock.settimeout(2)
        assert sock.recv(100) == b""  # closed promptly by stop()
        assert time.monotonic() - started < 2


def test_dropped_keepalive_over_encrypted_http_gives_400_empty_body(server: WSManServer) -> None:
    proto = protocol(server, transport="ntlm")
    first = send(proto, enumerate_xml(ABC_URI))
    server.drop_connection_after_requests = 1
    page = send(proto, pull_xml(ABC_URI, first.context, 5))  # answered, then the connection is dropped
    with pytest.raises(WinRMTransportError) as info:
        proto.send_message(pull_xml(ABC_URI, page.context, 5))
    assert (info.value.code, info.value.response_text) == (400, "")
    server.drop_connection_after_requests = None
    proto.transport.close_session()
    assert len(send(proto, pull_xml(ABC_URI, page.context, 5)).items) == 5  # context survived
    assert server.connections_accepted == 3


def test_dropped_keepalive_with_basic_reconnects_transparently(server: WSManServer) -> None:
    server.drop_connection_after_requests = 1
    pages = walk(protocol(server), ABC_URI)
    assert len(items_of(pages)) == len(ABC_ROWS)
    assert server.connections_accepted == len(pages)


def test_reset_mid_pull_breaks_the_response_and_consumes_the_context(server: WSManServer) -> None:
    proto = protocol(server)
    first = send(proto, enumerate_xml(ABC_URI))
    server.reset_mid_pull = 1
    with pytest.raises(requests.exceptions.RequestException):
        proto.send_message(pull_xml(ABC_URI, first.context))
    assert server.reset_mid_pull == 0
    proto.transport.close_session()
    assert fault_of(proto, pull_xml(ABC_URI, first.context)).fault_subcode == "n:InvalidEnumerationContext"


def test_delay_simulates_round_trip(server: WSManServer) -> None:
    proto = protocol(server)
    send(proto, enumerate_xml(ABC_URI))
    server.delay = 0.15
    started = time.monotonic()
    send(proto, enumerate_xml(ABC_URI))
    assert time.monotonic() - started >= 0.15


def test_injection_arguments_are_validated(server: WSManServer) -> None:
    with pytest.raises(ValueError):
        server.fault_next("pull", "no_such_fault")
    with pytest.raises(ValueError):
        server.fault_next("get", "quota")
    with pytest.raises(ValueError):
        server.hang = {"sometimes"}
    with pytest.raises(ValueError):
        WSManServer(host="0.0.0.0")


def test_basic_auth_header_never_leaks_password_into_log(server: WSManServer) -> None:
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    response = requests.post(
        server.url,
        data=enumerate_xml(ABC_URI),
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/soap+xml;charset=UTF-8"},
        timeout=5,
        proxies={"http": "", "https": ""},
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/soap+xml;charset=UTF-8"
    assert PASSWORD not in repr(server.requests)


# --------------------------------------------------------------------------- data sets


def test_make_site_is_deterministic_and_realistic() -> None:
    rows = make_site("ABC", 48, 6, seed=7)
    assert rows == make_site("ABC", 48, 6, seed=7) and rows != make_site("ABC", 48, 6, seed=8)
    assert all(len(r["PackageID"]) == 8 and r["PackageID"].startswith("ABC") for r in rows)
    assert {r["PackageID"][-1] for r in rows} == set("0123456789ABCDEF")
    masters = [r for r in rows if r["Type"] == 1]
    assert sorted(r["PackageID"] for r in masters) == [package_id("ABC", i) for i in range(48)]
    statuses = collections.Counter(r["Status"] for r in rows)
    assert statuses[UNKNOWN_STATUS] == 2 and statuses[3] > len(rows) / 2
    assert all(r["UpdateTime"] is None or r["UpdateTime"].tzinfo is not None for r in rows)
    keys = [(r["PackageID"], r["PkgServer"], r["Status"], r["Type"], r["Personality"]) for r in rows]
    assert len(keys) == len(set(keys))


def test_three_site_dataset_shape() -> None:
    data = three_site_dataset()
    assert data == DATA and data is not DATA
    counts = {code: len(data[site_namespace(code)]["SMS_PackageStatus"]) for code, *_ in THREE_SITES}
    assert counts == {"ABC": 1972, "DEF": 702, "GHI": 220}
    assert data["root\\SMS"]["SMS_ProviderLocation"] == provider_locations(["ABC", "DEF", "GHI"], PROVIDER_MACHINE)
    pkg_servers = [r["PkgServer"] for r in data[site_namespace("ABC")]["SMS_PackageStatus"]]
    assert any(p.startswith('["Display=') for p in pkg_servers)
    assert any(p.startswith("\\\\") for p in pkg_servers)
    assert any("\\" not in p for p in pkg_servers)


@pytest.mark.parametrize("kind", ["malformed", "truncated", "bomb", "oversized", "non_utf8"])
def test_corrupt_next_spoils_that_many_replies_then_they_are_good_again(server: WSManServer, kind: str) -> None:
    proto = protocol(server)
    server.oversized_bytes = 300_000
    server.corrupt_next("enumerate", kind, times=2)
    spoiled = [proto.send_message(enumerate_xml(ABC_URI)) for _ in range(2)]
    for data in spoiled:
        if kind == "malformed":
            assert b"</s:Bodyy>" in data
        elif kind == "truncated":
            assert not data.rstrip().endswith(b"</s:Envelope>")
        elif kind == "bomb":
            assert data.startswith(b'<?xml version="1.0"?>\n<!DOCTYPE') and b"&lol9;" in data
        elif kind == "oversized":
            assert len(data) >= 300_000
        else:
            assert b"\xff\xfe" in data
    assert server.requests[-1].status == 200
    server.corrupt_next("any", kind, times=5)
    server.clear_injections()
    assert send(proto, enumerate_xml(ABC_URI)).items  # nothing left queued


def test_fault_next_repeats_and_corrupt_next_is_validated(server: WSManServer) -> None:
    proto = protocol(server)
    server.fault_next("enumerate", "invalid_class", times=2)
    assert fault_of(proto, enumerate_xml(ABC_URI)).code == 500
    assert fault_of(proto, enumerate_xml(ABC_URI)).code == 500
    assert send(proto, enumerate_xml(ABC_URI)).items
    with pytest.raises(ValueError):
        server.corrupt_next("pull", "no_such_corruption")
    with pytest.raises(ValueError):
        server.corrupt_next("get", "malformed")


# --------------------------------------------------------------------------- the optional collectors' classes

# The property lists of issue 6, as the exporter asks for them.
OPTIONAL_WQL = {
    PACKAGE_BASECLASS: f"SELECT PackageID, Name, Version, PackageType, SourceVersion, SourceDate, PackageSize "
    f"FROM {PACKAGE_BASECLASS}",
    DP_CONTENT_SUMMARIZER: "SELECT PackageID, ServerNALPath, SiteCode, State, PackageType, SourceVersion, "
    f"LastCopied, SummaryDate FROM {DP_CONTENT_SUMMARIZER}",
    DP_INFO: "SELECT NALPath, ServerName, SiteCode, IsPullDP, IsPXE, IsMulticast, IsPeerDP, InternetFacing, "
    f"GroupCount FROM {DP_INFO}",
}
STATUS_WQL = "SELECT PackageID, PkgServer, Personality, SiteCode, Status, Type, UpdateTime FROM SMS_PackageStatus"


def wire_text(value: Any) -> str | None:
    """A property value as Windows writes it (and ``props`` reads it back)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_datetime(value)
    return str(value)


def selected(wql: str) -> list[str]:
    return [name.strip() for name in wql.split(" FROM ")[0].removeprefix("SELECT ").split(",")]


@pytest.mark.parametrize("class_name", sorted(OPTIONAL_WQL))
def test_optional_classes_property_lists_give_only_those_properties_as_windows_writes_them(
    shared: WSManServer, class_name: str
) -> None:
    wql = OPTIONAL_WQL[class_name]
    rows = DATA[site_namespace("ABC")][class_name]
    items = items_of(walk(protocol(shared), ABC_STAR, wql))
    names = sorted(selected(wql), key=str.lower)
    assert len(items) == len(rows) > 0
    assert {i.tag for i in items} == {f"{{{NS['w']}}}XmlFragment"}
    assert all([c.tag for c in item] == names for item in items)  # unqualified, alphabetical, nothing else
    assert [props(item) for item in items] == [{n: wire_text(row[n]) for n in names} for row in rows]
    dated = [c for item in items for c in item if len(c)]
    assert all(c[0].tag == "Datetime" for c in dated) and (class_name == DP_INFO or dated)


def test_package_baseclass_class_uri_carries_the_lazy_icon_the_property_list_leaves_out(shared: WSManServer) -> None:
    rows = DATA[site_namespace("ABC")][PACKAGE_BASECLASS]
    uri = f"{WMI}root/sms/site_ABC/{PACKAGE_BASECLASS}"
    full = walk(protocol(shared), uri)
    items = items_of(full)
    assert items[0].tag == f"{{{uri}}}{PACKAGE_BASECLASS}" and items[0].get(XSI_TYPE) == f"p:{PACKAGE_BASECLASS}_Type"
    assert [c.tag.rpartition("}")[2] for c in items[0]] == sorted(rows[0], key=str.lower)
    assert [props(i)["Icon"] for i in items] == [r["Icon"] for r in rows]
    listed = walk(protocol(shared), ABC_STAR, OPTIONAL_WQL[PACKAGE_BASECLASS])
    raw = b"".join(page.raw for page in listed)
    for name in UNREQUESTED_PACKAGE_PROPERTIES:
        assert f"<{name}>".encode() not in raw and f"<{name} ".encode() not in raw
    assert len(raw) * 5 < sum(len(page.raw) for page in full)


def test_summarizer_slices_by_package_id_partition_the_class(shared: WSManServer) -> None:
    rows = DATA[site_namespace("ABC")][DP_CONTENT_SUMMARIZER]
    wql = OPTIONAL_WQL[DP_CONTENT_SUMMARIZER]
    predicates = ["PackageID LIKE '%[0123]'", "PackageID LIKE '%[4567]'", "PackageID LIKE '%[89AB]'",
                  "PackageID LIKE '%[^0123456789AB]' OR PackageID = ''"]
    proto = protocol(shared)
    slices = [[props(i) for i in items_of(walk(proto, ABC_STAR, f"{wql} WHERE {p}"))] for p in predicates]
    for got, ends in zip(slices, ("0123", "4567", "89AB", "CDEF"), strict=True):
        assert got and all(str(r["PackageID"])[-1] in ends for r in got)
    keys = collections.Counter((r["PackageID"], r["ServerNALPath"]) for got in slices for r in got)
    assert keys == collections.Counter((r["PackageID"], r["ServerNALPath"]) for r in rows)


def test_class_faults_fail_one_class_while_the_others_answer(server: WSManServer) -> None:
    proto = protocol(server)
    server.class_faults = {"sms_packagebaseclass": "invalid_class"}
    assert server.class_faults == {"sms_packagebaseclass": "invalid_class"}
    for _ in range(2):  # persistent, not one-shot
        fault = fault_of(proto, enumerate_xml(ABC_STAR, OPTIONAL_WQL[PACKAGE_BASECLASS]))
        assert (fault.fault_subcode, fault.wmierror_code) == ("w:InternalError", WBEM_E_INVALID_CLASS)
    assert fault_of(proto, enumerate_xml(f"{WMI}root/sms/site_DEF/{PACKAGE_BASECLASS}")).code == 500
    for class_name in (DP_CONTENT_SUMMARIZER, DP_INFO):
        got = items_of(walk(proto, ABC_STAR, OPTIONAL_WQL[class_name]))
        assert len(got) == len(DATA[site_namespace("ABC")][class_name])
    assert len(items_of(walk(proto, ABC_STAR, STATUS_WQL))) == len(ABC_ROWS)
    assert [r.fault for r in server.requests_of(PACKAGE_BASECLASS)] == ["invalid_class"] * 3
    assert all(r.fault is None for r in server.requests if r.class_name != PACKAGE_BASECLASS)
    server.class_faults = {PACKAGE_BASECLASS: "access_denied"}
    fault = fault_of(proto, enumerate_xml(ABC_STAR, OPTIONAL_WQL[PACKAGE_BASECLASS]))
    assert (fault.fault_subcode, fault.wmierror_code) == ("w:AccessDenied", WBEM_E_ACCESS_DENIED)
    server.clear_injections()
    assert server.class_faults  # only queued injections are cleared
    server.class_faults = {}
    assert items_of(walk(proto, ABC_STAR, OPTIONAL_WQL[PACKAGE_BASECLASS]))
    with pytest.raises(ValueError):
        server.class_faults = {DP_INFO: "no_such_fault"}


def test_a_class_fault_set_mid_enumeration_faults_its_next_pull_and_loses_the_context(server: WSManServer) -> None:
    proto = protocol(server)
    summary = send(proto, enumerate_xml(ABC_STAR, OPTIONAL_WQL[DP_CONTENT_SUMMARIZER]))
    status = send(proto, enumerate_xml(ABC_URI))
    server.class_faults = {DP_CONTENT_SUMMARIZER: "provider_failure"}
    assert fault_of(proto, pull_xml(ABC_STAR, summary.context, 5)).wsman_fault_code == 1359
    assert len(send(proto, pull_xml(ABC_URI, status.context, 5)).items) == 5  # the other enumeration goes on
    server.class_faults = {}
    assert fault_of(proto, pull_xml(ABC_STAR, summary.context, 5)).wsman_fault_code == CODE_INVALID_CONTEXT
    assert server.requests[-1].class_name is None  # its enumeration is gone


def test_fault_next_and_corrupt_next_for_one_class_leave_the_others_alone(server: WSManServer) -> None:
    proto = protocol(server)
    server.fault_next("enumerate", "access_denied_wsman", times=2, class_name=DP_INFO)
    assert send(proto, enumerate_xml(ABC_URI)).items  # another class: nothing used up
    for _ in range(2):
        assert fault_of(proto, enumerate_xml(ABC_STAR, OPTIONAL_WQL[DP_INFO])).wsman_fault_code == 5
    assert send(proto, enumerate_xml(ABC_STAR, OPTIONAL_WQL[DP_INFO])).items
    server.corrupt_next("pull", "malformed", class_name=PACKAGE_BASECLASS)
    summary = send(proto, enumerate_xml(ABC_STAR, OPTIONAL_WQL[DP_CONTENT_SUMMARIZER]))
    assert b"</s:Bodyy>" not in proto.send_message(pull_xml(ABC_STAR, summary.context, 3))
    packages = send(proto, enumerate_xml(ABC_STAR, OPTIONAL_WQL[PACKAGE_BASECLASS]))
    assert b"</s:Bodyy>" not in packages.raw  # an Enumerate: the corruption waits for a Pull
    assert b"</s:Bodyy>" in proto.send_message(pull_xml(ABC_STAR, packages.context, 3))
    server.fault_next("any", "quota", class_name="SMS_NoSuchClass")
    assert send(proto, enumerate_xml(ABC_URI)).items
    server.clear_injections()


def test_hang_classes_hold_one_class_while_the_others_are_served(server: WSManServer) -> None:
    server.hang_classes = {PACKAGE_BASECLASS.upper()}
    assert server.hang_classes == {PACKAGE_BASECLASS.lower()}
    hung = protocol(server)
    thread, outcome = _in_thread(lambda: hung.send_message(enumerate_xml(ABC_STAR, OPTIONAL_WQL[PACKAGE_BASECLASS])))
    _wait_for(lambda: len(server.requests_of(PACKAGE_BASECLASS)) == 1)
    other = protocol(server)  # a connection of its own, as each collector has
    assert len(items_of(walk(other, ABC_STAR, OPTIONAL_WQL[DP_INFO]))) == len(DATA[site_namespace("ABC")][DP_INFO])
    assert thread.is_alive() and server.requests_of(PACKAGE_BASECLASS)[0].status is None
    server.hang_classes = set()
    thread.join(3)
    assert isinstance(outcome[0], bytes) and Page(outcome[0]).items


def test_requests_and_items_are_counted_per_class(server: WSManServer) -> None:
    proto = protocol(server)
    pages = {name: walk(proto, ABC_STAR, wql, pull_max=40) for name, wql in OPTIONAL_WQL.items()}
    pages[PACKAGE_STATUS] = walk(proto, f"{WMI}root/SMS/site_ABC/sms_packagestatus", pull_max=200)
    for name, walked in pages.items():
        assert len(server.requests_of(name)) == len(walked)
        assert len(server.requests_of(name.lower(), "pull")) == len(walked) - 1
        assert [r.action for r in server.requests_of(name, "Enumerate")] == ["enumerate"]
        assert server.items_served(name) == len(DATA[site_namespace("ABC")][name])
    assert {r.class_name for r in server.requests} == set(pages)  # spelled as the data set spells them
    send(proto, enumerate_xml(ABC_STAR, "select PackageID from sms_packagebaseclass where PackageID = 'x'"))
    assert server.requests[-1].class_name == PACKAGE_BASECLASS and server.requests[-1].items == 0
    fault_of(proto, enumerate_xml(ABC_STAR, "SELECT * FROM SMS_Nothing"))
    assert server.requests[-1].class_name == "SMS_Nothing"
    fault_of(proto, pull_xml(ABC_STAR, "uuid:00000000-0000-0000-0000-000000000000"))
    assert server.requests[-1].class_name is None
    assert server.items_served(PACKAGE_BASECLASS) == len(DATA[site_namespace("ABC")][PACKAGE_BASECLASS])


def test_remove_class_makes_it_unknown_in_that_namespace_only(server: WSManServer) -> None:
    proto = protocol(server)
    server.remove_class("root\\SMS\\site_ABC", PACKAGE_BASECLASS)
    fault = fault_of(proto, enumerate_xml(ABC_STAR, OPTIONAL_WQL[PACKAGE_BASECLASS]))
    assert fault.wsman_fault_code == CODE_CANNOT_PROCESS_FILTER and b"0x80041010" in fault.response.encode()
    fault = fault_of(proto, enumerate_xml(f"{WMI}root/sms/site_ABC/{PACKAGE_BASECLASS}"))
    assert fault.wmierror_code == WBEM_E_INVALID_CLASS
    assert items_of(walk(proto, f"{WMI}root/sms/site_DEF/*", OPTIONAL_WQL[PACKAGE_BASECLASS]))
    assert items_of(walk(proto, ABC_STAR, OPTIONAL_WQL[DP_INFO]))
    assert len(items_of(walk(proto, ABC_URI))) == len(ABC_ROWS)


def test_refuse_like_refuses_only_the_like_queries_of_its_classes_in_both_shapes(server: WSManServer) -> None:
    proto = protocol(server)
    sliced = f"{STATUS_WQL} WHERE PackageID LIKE '%[0123]'"
    server.refuse_like = {"sms_packagestatus": "cannot_process_filter", DP_CONTENT_SUMMARIZER: "invalid_query"}
    assert server.refuse_like == {"sms_packagestatus": "cannot_process_filter",
                                  DP_CONTENT_SUMMARIZER.lower(): "invalid_query"}
    for _ in range(2):  # persistent, not one-shot
        fault = fault_of(proto, enumerate_xml(ABC_STAR, sliced))
        assert (fault.fault_subcode, fault.wsman_fault_code) == ("n:CannotProcessFilter", CODE_CANNOT_PROCESS_FILTER)
        assert b"0x80041017" in fault.response.encode() and b"LIKE on packageid" in fault.response.encode()
    wql = f"{OPTIONAL_WQL[DP_CONTENT_SUMMARIZER]} WHERE (PackageID LIKE '%[^0123]' OR PackageID = '')"
    fault = fault_of(proto, enumerate_xml(ABC_STAR, wql))
    assert (fault.fault_subcode, fault.wmierror_code) == ("w:InternalError", WBEM_E_INVALID_QUERY)
    refused = server.requests_of(PACKAGE_STATUS, "enumerate")
    assert [(r.fault, r.status, r.wql) for r in refused] == [("cannot_process_filter", 500, sliced)] * 2
    # The same classes without LIKE answer as usual: the plain WQL, the class URI, another WHERE.
    assert len(items_of(walk(proto, ABC_STAR, STATUS_WQL))) == len(ABC_ROWS)
    assert len(items_of(walk(proto, ABC_URI))) == len(ABC_ROWS)
    assert items_of(walk(proto, ABC_STAR, f"{STATUS_WQL} WHERE PackageID = 'ABC00010'"))
    assert items_of(walk(proto, ABC_STAR, OPTIONAL_WQL[DP_CONTENT_SUMMARIZER]))
    # Other classes' LIKE queries too; any fault kind may stand for the refusal.
    assert items_of(walk(proto, ABC_STAR, f"{OPTIONAL_WQL[DP_INFO]} WHERE NALPath LIKE '%'"))
    server.refuse_like = {PACKAGE_STATUS: "provider_failure"}
    assert fault_of(proto, enumerate_xml(ABC_STAR, sliced)).wsman_fault_code == 1359
    server.clear_injections()
    assert server.refuse_like  # not a queued injection
    server.refuse_like = {}
    assert items_of(walk(proto, ABC_STAR, sliced))
    with pytest.raises(ValueError):
        server.refuse_like = {PACKAGE_STATUS: "no_such_fault"}
