"""exporter.winrm (envelopes, pages, faults): requests as Windows expects them, replies and faults
as Windows sends them.

The fixtures in tests/fixtures/wsman/ are shaped after [MS-WSMV] and public
captures of Windows WinRM traffic (whitespace between elements added for reading; it changes
nothing for a namespace-aware parser, which the one-line fixtures also show).
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from exporter.collectors.package_status.row import make_row
from exporter.errors import PollError
from exporter.winrm import envelopes, faults, pages

FIXTURES = Path(__file__).parent / "fixtures" / "wsman"
S = "{http://www.w3.org/2003/05/soap-envelope}"
A = "{http://schemas.xmlsoap.org/ws/2004/08/addressing}"
N = "{http://schemas.xmlsoap.org/ws/2004/09/enumeration}"
W = "{http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd}"
SITE_NS = "root\\SMS\\site_ABC"
PS_URI = "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/sms/site_ABC/SMS_PackageStatus"
ANON = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def nal(host: str) -> str:
    return f'["Display=\\\\{host}\\"]MSWNET:["SMS_SITE=ABC"]\\\\{host}\\'


# --- resource URIs and requests ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("namespace", "class_name", "expected"),
    [
        (SITE_NS, "SMS_PackageStatus", PS_URI),
        (SITE_NS, None, "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/sms/site_ABC/*"),
        (
            "root\\SMS",
            "SMS_ProviderLocation",
            "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/sms/SMS_ProviderLocation",
        ),
        ("root/cimv2", "Win32_Service", "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/cimv2/Win32_Service"),
        ("ROOT\\sms\\SITE_xyz\\", "X", "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/sms/site_xyz/X"),
    ],
)
def test_resource_uri_from_namespace_and_class(namespace: str, class_name: str | None, expected: str) -> None:
    assert envelopes.resource_uri(namespace, class_name) == expected


def test_resource_uri_needs_a_namespace() -> None:
    with pytest.raises(ValueError):
        envelopes.resource_uri("\\", "X")


def header(envelope: ET.Element, name: str) -> ET.Element:
    found = envelope.find(f"{S}Header/{name}")
    assert found is not None, name
    return found


def assert_common_header(envelope: ET.Element, *, uri: str, action: str, message_id: str, timeout: str) -> None:
    must = f"{S}mustUnderstand"
    assert envelope.tag == f"{S}Envelope"
    assert header(envelope, f"{A}To").text == "https://cm01.corp.example.com:5986/wsman"
    resource = header(envelope, f"{W}ResourceURI")
    assert (resource.text, resource.get(must)) == (uri, "true")
    address = header(envelope, f"{A}ReplyTo/{A}Address")
    assert (address.text, address.get(must)) == (ANON, "true")
    action_element = header(envelope, f"{A}Action")
    assert (action_element.text, action_element.get(must)) == (action, "true")
    size = header(envelope, f"{W}MaxEnvelopeSize")
    assert (size.text, size.get(must)) == ("512000", "true")
    assert header(envelope, f"{A}MessageID").text == message_id
    locale = header(envelope, f"{W}Locale")
    assert locale.get("{http://www.w3.org/XML/1998/namespace}lang") == "en-US"
    assert locale.get(must) == "false"
    assert header(envelope, f"{W}OperationTimeout").text == timeout


def test_enumerate_with_wql_filter() -> None:
    wql = "SELECT PackageID, PkgServer FROM SMS_PackageStatus WHERE PackageID LIKE 'ABC%' AND Status <> 3"
    uri = envelopes.resource_uri(SITE_NS, None)
    built = envelopes.build_enumerate(
        to="https://cm01.corp.example.com:5986/wsman", uri=uri, wql=wql, operation_timeout=30, message_id="uuid:1"
    )
    assert built.message_id == "uuid:1"
    envelope = ET.fromstring(built.text)
    assert_common_header(envelope, uri=uri, action=envelopes.ACTION_ENUMERATE, message_id="uuid:1", timeout="PT30.000S")
    assert uri.endswith("/site_ABC/*")
    enumerate_ = envelope.find(f"{S}Body/{N}Enumerate")
    assert enumerate_ is not None
    assert [child.tag for child in enumerate_] == [f"{W}OptimizeEnumeration", f"{W}MaxElements", f"{W}Filter"]
    assert enumerate_.findtext(f"{W}MaxElements") == "32000"
    wql_filter = enumerate_.find(f"{W}Filter")
    assert wql_filter is not None
    assert wql_filter.get("Dialect") == "http://schemas.microsoft.com/wbem/wsman/1/WQL"
    assert wql_filter.text == wql  # < > & ' escaped on the way out, intact on the way back


def test_enumerate_of_a_class_has_no_filter_and_a_fresh_uuid_message_id() -> None:
    built = envelopes.build_enumerate(to="https://cm01.corp.example.com:5986/wsman", uri=PS_URI)
    envelope = ET.fromstring(built.text)
    assert built.message_id.startswith("uuid:") and len(built.message_id) == 41
    assert_common_header(
        envelope, uri=PS_URI, action=envelopes.ACTION_ENUMERATE, message_id=built.message_id, timeout="PT60.000S"
    )
    assert envelope.find(f"{S}Body/{N}Enumerate/{W}Filter") is None
    assert envelope.find(f"{S}Body/{N}Enumerate/{W}OptimizeEnumeration") is not None
    other = envelopes.build_enumerate(to="x", uri=PS_URI)
    assert other.message_id != built.message_id


def test_enumerate_refuses_a_filter_on_a_class_uri() -> None:
    with pytest.raises(ValueError, match="/\\*"):
        envelopes.build_enumerate(to="x", uri=PS_URI, wql="SELECT * FROM SMS_PackageStatus")


def test_pull_sends_context_and_max_elements_in_the_enumeration_namespace() -> None:
    context = "uuid:9C1E4D72-0B35-4A6F-8E21-7F3A5C9B1D02<&>"
    built = envelopes.build_pull(
        to="https://cm01.corp.example.com:5986/wsman",
        uri=PS_URI,
        context=context,
        operation_timeout=0.5,
        message_id="uuid:2",
    )
    envelope = ET.fromstring(built.text)
    assert_common_header(envelope, uri=PS_URI, action=envelopes.ACTION_PULL, message_id="uuid:2", timeout="PT0.500S")
    pull = envelope.find(f"{S}Body/{N}Pull")
    assert pull is not None
    assert [child.tag for child in pull] == [f"{N}EnumerationContext", f"{N}MaxElements"]
    assert pull.findtext(f"{N}EnumerationContext") == context
    assert pull.findtext(f"{N}MaxElements") == "32000"


def test_release_names_the_context() -> None:
    built = envelopes.build_release(
        to="https://cm01.corp.example.com:5986/wsman",
        uri=PS_URI,
        context="uuid:C",
        operation_timeout=2,
        message_id="uuid:3",
    )
    envelope = ET.fromstring(built.text)
    assert_common_header(envelope, uri=PS_URI, action=envelopes.ACTION_RELEASE, message_id="uuid:3", timeout="PT2.000S")
    assert envelope.findtext(f"{S}Body/{N}Release/{N}EnumerationContext") == "uuid:C"


@pytest.mark.parametrize(
    ("seconds", "text"), [(60, "PT60.000S"), (600, "PT60.000S"), (1.25, "PT1.250S"), (0, "PT0.001S")]
)
def test_operation_timeout_is_capped_at_the_server_maximum(seconds: float, text: str) -> None:
    assert envelopes.format_duration(seconds) == text


# --- enumeration replies ----------------------------------------------------------------------


def test_optimized_enumerate_response_with_one_item_select_star_shape() -> None:
    page = pages.parse_page(fixture("enumerate_response_optimized_one_item.xml"))
    assert page.context == "uuid:9C1E4D72-0B35-4A6F-8E21-7F3A5C9B1D01"
    assert (page.end_of_sequence, page.done) == (False, False)
    assert page.items == [
        {
            "Location": 'MSWNET:["SMS_SITE=ABC"]\\\\CM01.corp.example.com\\SMSPKG\\ABC00012.PCK',
            "PackageID": "ABC00012",
            "Personality": "0",
            "PkgServer": nal("CM01.corp.example.com"),
            "ShareName": "",
            "SiteCode": "ABC",
            "Status": "3",
            "Type": "1",
            "UpdateTime": "2013-04-15T16:28:43.488171Z",
        }
    ]


def test_pull_page_select_star_matches_local_names_whatever_the_uri_casing() -> None:
    page = pages.parse_page(fixture("pull_page_select_star.xml"))
    assert page.context == "uuid:9C1E4D72-0B35-4A6F-8E21-7F3A5C9B1D02"
    assert not page.done
    dp = "ABC-DP0{}.corp.example.com"
    assert page.items == [
        {
            "Location": f'MSWNET:["SMS_SITE=ABC"]\\\\{dp.format(1)}\\SMSPKGD$\\ABC00012\\',
            "PackageID": "ABC00012",
            "Personality": "0",
            "PkgServer": nal(dp.format(1)),
            "ShareName": "",
            "SiteCode": "ABC",
            "Status": "3",
            "Type": "2",
            "UpdateTime": "2024-05-01T12:22:33.500+02:00",
        },
        {
            "Location": f'MSWNET:["SMS_SITE=ABC"]\\\\{dp.format(2)}\\SMSPKGD$\\ABC00012\\',
            "PackageID": "ABC00012",
            "Personality": "2",
            "PkgServer": nal(dp.format(2)),
            "ShareName": "Pkg & Tools <x86>",
            "SiteCode": "ABC",
            "Status": "9",
            "Type": "2",
            "UpdateTime": None,
        },
        {
            "Location": f"\\\\{dp.format(3)}\\SMSPKGD$\\ABC00013\\",
            "PackageID": "ABC00013",
            "Personality": "0",
            "PkgServer": f"\\\\{dp.format(3)}\\",
            "ShareName": "Café_Share",
            "SiteCode": "ABC",
            "Status": "5",
            "Type": "2",
            "UpdateTime": "2024-04-30T23:59:59Z",
        },
    ]


def test_pull_page_xmlfragment_shape() -> None:
    page = pages.parse_page(fixture("pull_page_xmlfragment.xml"))
    assert page.context == "uuid:9C1E4D72-0B35-4A6F-8E21-7F3A5C9B1D03"
    assert not page.done
    common = {"PackageID": "ABC00014", "Personality": "0", "SiteCode": "ABC"}
    assert page.items == [
        {
            **common,
            "PkgServer": "ABC-DP04.corp.example.com",
            "Status": "1",
            "Type": "2",
            "UpdateTime": "2024-05-01T10:22:33.1234567",
        },
        {**common, "PkgServer": nal("ABC-DP05.corp.example.com"), "Status": "4", "Type": "2", "UpdateTime": None},
        {
            **common,
            "PkgServer": nal("CM01.corp.example.com"),
            "Status": "3",
            "Type": "1",
            "UpdateTime": "2024-05-01T10:22:33-05:30",
        },
    ]
    assert list(page.items[0]) == ["PackageID", "Personality", "PkgServer", "SiteCode", "Status", "Type", "UpdateTime"]


def test_parsed_items_feed_make_row() -> None:
    """The two shapes give the same kind of dict; make_row turns both into the exported rows."""
    items = pages.parse_page(fixture("pull_page_xmlfragment.xml")).items or []
    rows = [
        make_row(
            site=str(item["SiteCode"]),
            package_id=str(item["PackageID"]),
            pkg_server=str(item["PkgServer"]),
            type_=str(item["Type"]),
            status=str(item["Status"]),
            personality=str(item["Personality"]),
            update_time=item["UpdateTime"] if isinstance(item["UpdateTime"], str) else None,
        )
        for item in items
    ]
    assert [(r.server, r.type, r.status, r.update_time) for r in rows] == [
        ("ABC-DP04.corp.example.com", 2, 1, 1714558953.1234567),
        ("ABC-DP05.corp.example.com", 2, 4, None),
        ("CM01.corp.example.com", 1, 3, 1714578753.0),
    ]


def test_last_pull_page_has_end_of_sequence_and_no_context() -> None:
    page = pages.parse_page(fixture("pull_last_page_end_of_sequence.xml"))
    assert (page.context, page.end_of_sequence, page.done) == (None, True, True)
    assert page.items == [
        {
            "PackageID": "ABC00015",
            "Personality": "0",
            "PkgServer": nal("ABC-DP01.corp.example.com"),
            "SiteCode": "ABC",
            "Status": "7",
            "Type": "2",
            "UpdateTime": "2024-05-01T10:22:33.5Z",
        }
    ]


def test_everything_in_the_enumerate_response_with_an_empty_context() -> None:
    page = pages.parse_page(fixture("enumerate_all_fit_empty_context.xml"))
    assert (page.context, page.end_of_sequence, page.done) == (None, True, True)
    assert page.items == [
        {
            "Machine": "CM01.corp.example.com",
            "NamespacePath": "\\\\CM01.corp.example.com\\root\\sms\\site_ABC",
            "ProviderForLocalSite": "true",
            "SiteCode": "ABC",
        },
        {
            "Machine": "CM01.corp.example.com",
            "NamespacePath": "\\\\CM01.corp.example.com\\root\\sms\\site_DEF",
            "ProviderForLocalSite": "false",
            "SiteCode": "DEF",
        },
    ]


@pytest.mark.parametrize(("items_prefix", "end_prefix"), [("n", "n"), ("w", "w"), ("n", "w"), ("w", "n")])
def test_items_and_end_of_sequence_in_either_namespace(items_prefix: str, end_prefix: str) -> None:
    text = fixture("pull_last_page_end_of_sequence.xml").decode()
    text = text.replace("n:Items>", f"{items_prefix}:Items>").replace(
        "<n:EndOfSequence/>", f"<{end_prefix}:EndOfSequence/>"
    )
    page = pages.parse_page(text)
    assert len(page.items or []) == 1 and page.end_of_sequence and page.context is None


def test_a_page_without_items_continues() -> None:
    text = fixture("pull_page_xmlfragment.xml").decode()
    start, end = text.index("<n:Items>"), text.index("</n:Items>") + len("</n:Items>")
    page = pages.parse_page(text[:start] + text[end:])
    assert page.items == [] and page.context == "uuid:9C1E4D72-0B35-4A6F-8E21-7F3A5C9B1D03" and not page.done


def reply(items: str, *, ns: str = 'xmlns:p="urn:x"') -> str:
    return (
        '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
        'xmlns:n="http://schemas.xmlsoap.org/ws/2004/09/enumeration" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd">'
        f"<s:Body><n:PullResponse><n:Items>{items}</n:Items><n:EndOfSequence/></n:PullResponse></s:Body></s:Envelope>"
    )


def test_arrays_intervals_nil_array_members_and_embedded_text() -> None:
    item = (
        '<p:X xmlns:p="urn:x" xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        '<p:Groups>G1</p:Groups><p:Groups>G2</p:Groups><p:Groups xsi:nil="true"/><p:Groups>G4</p:Groups>'
        "<p:Age><cim:Interval>P1DT2H</cim:Interval></p:Age>"
        "<p:Nested><p:Inner>a</p:Inner><p:Inner>b</p:Inner></p:Nested>"
        "<p:Empty/></p:X>"
    )
    assert pages.parse_page(reply(item)).items == [
        {"Groups": ["G1", "G2", None, "G4"], "Age": "P1DT2H", "Nested": "ab", "Empty": ""}
    ]


def test_object_and_epr_items_are_unwrapped() -> None:
    item = (
        "<w:Item><w:XmlFragment><PackageID>ABC00001</PackageID></w:XmlFragment>"
        '<a:EndpointReference xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing"/></w:Item>'
    )
    assert pages.parse_page(reply(item)).items == [{"PackageID": "ABC00001"}]


def test_reply_must_relate_to_the_request_sent() -> None:
    data = fixture("pull_page_xmlfragment.xml")
    assert pages.parse_page(data, message_id="uuid:0a6b2c31-8e47-4f0b-b1c8-6a9d52e0f003").items
    with pytest.raises(PollError) as caught:
        pages.parse_page(data, message_id="uuid:0A6B2C31-8E47-4F0B-B1C8-6A9D52E0F999")
    assert caught.value.reason == "parse"
    assert "another request" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<Envelope/>", "not a SOAP 1.2 envelope"),
        ('<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body/></s:Envelope>', "empty SOAP body"),
        (
            '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope">'
            '<s:Body><x:Other xmlns:x="urn:x"/></s:Body></s:Envelope>',
            "got Other",
        ),
    ],
)
def test_replies_that_are_not_enumeration_responses(text: str, message: str) -> None:
    with pytest.raises(PollError) as caught:
        pages.parse_page(text)
    assert caught.value.reason == "parse"
    assert message in str(caught.value)


def test_a_fault_in_a_successful_reply_is_a_parse_error_naming_it() -> None:
    with pytest.raises(PollError) as caught:
        pages.parse_page(fixture("fault_timed_out.xml"))
    assert caught.value.reason == "parse"
    assert "OperationTimeout" in str(caught.value)


# --- hostile or broken XML ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["xml_bomb.xml", "external_entity.xml"])
def test_dtds_are_refused_before_parsing(name: str) -> None:
    started = time.monotonic()
    with pytest.raises(PollError) as caught:
        pages.parse_page(fixture(name))
    assert caught.value.reason == "parse"
    assert "DOCTYPE" in str(caught.value)
    assert "root:" not in str(caught.value)  # nothing of /etc/passwd
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_dtds_are_refused_in_utf16_too(encoding: str) -> None:
    data = fixture("external_entity.xml").decode().replace('<?xml version="1.0"?>', "").encode(encoding)
    with pytest.raises(PollError, match="DOCTYPE"):
        pages.parse_page(data)


def test_utf16_replies_with_a_bom_parse() -> None:
    data = fixture("pull_last_page_end_of_sequence.xml").decode().encode("utf-16")
    assert (pages.parse_page(data).items or [{}])[0]["PackageID"] == "ABC00015"


def test_a_declared_encoding_cannot_hide_a_dtd() -> None:
    # expat would honour the declaration on bytes; we decode ourselves, so it sees what we checked.
    data = b'<?xml version="1.0" encoding="ISO-8859-1"?>' + fixture("external_entity.xml").split(b"?>", 1)[1]
    with pytest.raises(PollError, match="DOCTYPE"):
        pages.parse_page(data)


def test_malformed_xml_is_a_parse_error_without_the_body() -> None:
    with pytest.raises(PollError) as caught:
        pages.parse_page(fixture("malformed.xml"))
    assert caught.value.reason == "parse"
    assert str(caught.value).startswith("malformed XML from the server: ")
    assert "ABC00016" not in str(caught.value)


def test_invalid_utf8_is_a_parse_error() -> None:
    with pytest.raises(PollError, match="not valid UTF-8"):
        pages.parse_page(b"<s:Envelope>caf\xe9</s:Envelope>")


# --- faults ------------------------------------------------------------------------------------


def test_fault_fields_nested_provider_fault() -> None:
    fault = faults.parse_fault(fixture("fault_invalid_namespace.xml"))
    message = (
        "The WS-Management service cannot process the request. The WMI service or the WMI provider "
        "returned an unknown error: HRESULT 0x8004100e"
    )
    assert fault == faults.Fault(
        code="Receiver",
        subcode="InternalError",
        reason=message,
        details=(),
        wsman_codes=(0x8004100E,),
        codes=(0x8004100E,),
        text=message,
    )


def test_fault_fields_cannot_process_filter_keeps_the_inner_wmi_code() -> None:
    fault = faults.parse_fault(fixture("fault_cannot_process_filter.xml"))
    assert (fault.code, fault.subcode) == ("Sender", "CannotProcessFilter")
    assert fault.wsman_codes == (2150858778, 0x80041017)
    assert fault.codes == (2150858778, 0x80041017)
    assert fault.text.endswith("HRESULT 0x80041017")
    assert fault.reason.startswith("The data source could not process the filter.")


def test_fault_fields_msft_wmierror() -> None:
    fault = faults.parse_fault(fixture("fault_msft_wmierror.xml"))
    assert (fault.code, fault.subcode, fault.wsman_codes) == ("Receiver", "InternalError", ())
    assert fault.codes == (0x80041001,)
    assert fault.text == "Generic failure"


def test_fault_fields_destination_unreachable_with_fault_detail() -> None:
    fault = faults.parse_fault(fixture("fault_invalid_resource_uri.xml"))
    assert (fault.code, fault.subcode, fault.details) == ("Sender", "DestinationUnreachable", ("InvalidResourceURI",))
    assert fault.codes == (2150858752,)


NS_XYZ = "root\\SMS\\site_XYZ"


@pytest.mark.parametrize(
    ("name", "namespace", "reason", "code", "says", "restartable"),
    [
        (
            "fault_invalid_namespace.xml",
            NS_XYZ,
            "wmi_fault",
            0x8004100E,
            "invalid namespace root\\SMS\\site_XYZ: wrong site_code?",
            False,
        ),
        (
            "fault_invalid_resource_uri.xml",
            NS_XYZ,
            "wmi_fault",
            2150858752,
            "namespace root\\SMS\\site_XYZ or class SMS_PackageStatus does not exist (wrong site_code?)",
            False,
        ),
        (
            "fault_invalid_class.xml",
            SITE_NS,
            "wmi_fault",
            0x80041010,
            "invalid class SMS_PackageStatus in root\\SMS\\site_ABC",
            False,
        ),
        (
            "fault_access_denied.xml",
            SITE_NS,
            "auth",
            5,
            "access denied reading SMS_PackageStatus in root\\SMS\\site_ABC",
            False,
        ),
        ("fault_access_denied_wmi.xml", SITE_NS, "auth", 0x80041003, "WMI Remote Enable", False),
        ("fault_cannot_process_filter.xml", SITE_NS, "wmi_fault", 0x80041017, "refused the WQL query", False),
        ("fault_invalid_query.xml", SITE_NS, "wmi_fault", 0x80041017, "refused the WQL query", False),
        ("fault_invalid_enumeration_context.xml", SITE_NS, "wmi_fault", 2150858779, "expired or unknown", True),
        ("fault_timed_out.xml", SITE_NS, "timeout", 2150858793, "did not answer within the operation timeout", True),
        ("fault_msft_wmierror.xml", SITE_NS, "wmi_fault", 0x80041001, "WMI provider failure", False),
        ("fault_quota_limit.xml", SITE_NS, "wmi_fault", 0x803381A6, "quota exceeded", False),
        ("fault_encoding_limit.xml", SITE_NS, "wmi_fault", 0x80338111, "envelope size limit", False),
    ],
)
def test_fault_to_poll_error(name: str, namespace: str, reason: str, code: int, says: str, restartable: bool) -> None:
    fault = faults.parse_fault(fixture(name))
    error = faults.fault_error(fault, namespace=namespace, class_name="SMS_PackageStatus")
    assert (error.reason, error.wmi_code) == (reason, code)
    assert says in str(error)
    assert str(error).endswith(f"(code 0x{code:08X})")
    assert fault.restartable is restartable


@pytest.mark.parametrize(
    ("name", "may_be"),
    [
        ("fault_cannot_process_filter.xml", True),  # the refusal expected of a provider
        ("fault_invalid_query.xml", True),  # the same as a plain MSFT_WmiError
        ("fault_msft_wmierror.xml", True),  # a generic failure: the plain query is worth a try
        ("fault_invalid_class.xml", True),
        ("fault_invalid_namespace.xml", True),
        ("fault_access_denied.xml", False),  # the account, not the query
        ("fault_access_denied_wmi.xml", False),
        ("fault_quota_limit.xml", False),  # the server's limits
        ("fault_encoding_limit.xml", False),
        ("fault_timed_out.xml", False),  # the time: restarted instead
        ("fault_invalid_enumeration_context.xml", False),
    ],
)
def test_which_faults_on_a_slice_may_be_the_filter_refused(name: str, may_be: bool) -> None:
    fault = faults.parse_fault(fixture(name))
    assert fault.may_be_the_filter is may_be
    assert fault.refuses_query is (name in ("fault_cannot_process_filter.xml", "fault_invalid_query.xml"))


def test_unknown_fault_keeps_its_subcode_and_code() -> None:
    text = (
        '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd">'
        "<s:Body><s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value>w:SchemaValidationError</s:Value>"
        "</s:Subcode></s:Code><s:Reason><s:Text>Reason text.</s:Text></s:Reason><s:Detail>"
        '<f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="2150858817">'
        "<f:Message>Detail message.</f:Message></f:WSManFault></s:Detail></s:Fault></s:Body></s:Envelope>"
    )
    error = faults.fault_error(faults.parse_fault(text), namespace=SITE_NS, class_name="SMS_PackageStatus")
    assert (error.reason, error.wmi_code) == ("wmi_fault", 0x80338041)
    assert "WS-Management fault SchemaValidationError" in str(error) and "Detail message." in str(error)


def test_provider_text_is_cut_short_and_flattened() -> None:
    long_text = "x" * 5000 + "\n\tSECRET-TAIL"
    text = fixture("fault_msft_wmierror.xml").decode().replace(">Generic failure <", f">{long_text}<")
    error = faults.fault_error(faults.parse_fault(text), namespace=SITE_NS, class_name="SMS_PackageStatus")
    assert "SECRET-TAIL" not in str(error) and "\n" not in str(error)
    assert len(str(error)) < 400


def test_signed_and_hex_codes_are_read_as_unsigned() -> None:
    text = fixture("fault_access_denied.xml").decode().replace('Code="5"', 'Code="-2147217405"')
    fault = faults.parse_fault(text)
    assert fault.wsman_codes == (0x80041003,)
    assert faults.fault_error(fault, namespace=SITE_NS, class_name="C").wmi_code == 0x80041003


def test_parse_fault_needs_a_fault() -> None:
    with pytest.raises(PollError, match="expected a SOAP fault"):
        faults.parse_fault(fixture("pull_page_xmlfragment.xml"))


def test_nul_characters_are_refused() -> None:
    # UTF-16 bytes that also decode as UTF-8: expat would still read them as UTF-16.
    data = b"  " + fixture("external_entity.xml").decode().encode("utf-16-le")
    with pytest.raises(PollError, match="NUL"):
        pages.parse_page(data)
    with pytest.raises(PollError, match="NUL"):
        pages.parse_page("<a>\x00</a>")
