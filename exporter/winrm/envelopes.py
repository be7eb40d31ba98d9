"""WS-Management envelopes for WMI classes as Windows speaks them: requests built, replies parsed safely.

Pure protocol code, no I/O: `exporter.winrm.source` sends what is built here through pywinrm.

* Requests are built here rather than with pywinrm's `build_wsman_header()`, which hard-codes a
  153600-byte `MaxEnvelopeSize`; we ask for 512000 (the server clamps it to its own limit).
* Replies are parsed with the standard library's expat-based ElementTree after refusing any
  DOCTYPE (`refuse_declarations`, the one guard every parse goes through): SOAP forbids DTDs,
  and refusing them up front defeats entity expansion ("billion laughs") and external entities
  whatever the expat version.

The replies' content is read in `exporter.winrm.pages`, faults in `exporter.winrm.faults`.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from exporter.errors import PollError

NS_SOAP = "http://www.w3.org/2003/05/soap-envelope"
NS_ADDRESSING = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
NS_ENUMERATION = "http://schemas.xmlsoap.org/ws/2004/09/enumeration"
NS_WSMAN = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
NS_WSMAN_FAULT = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"
NS_WMI_ERROR = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/MSFT_WmiError"
NS_XSI = "http://www.w3.org/2001/XMLSchema-instance"
NS_IDENTITY = "http://schemas.dmtf.org/wbem/wsman/identity/1/wsmanidentity.xsd"

WMI_RESOURCE_BASE = "http://schemas.microsoft.com/wbem/wsman/1/wmi/"
WQL_DIALECT = "http://schemas.microsoft.com/wbem/wsman/1/WQL"
ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
ACTION_ENUMERATE = NS_ENUMERATION + "/Enumerate"
ACTION_PULL = NS_ENUMERATION + "/Pull"
ACTION_RELEASE = NS_ENUMERATION + "/Release"

MAX_ENVELOPE_SIZE = 512000
MAX_ELEMENTS = 32000
# The server caps OperationTimeout at MaxTimeoutms (60 s by default): asking for more buys nothing.
MAX_OPERATION_TIMEOUT = 60.0
DEFAULT_LOCALE = "en-US"
# Provider text copied into an error message is cut here: enough to act on, never a whole body.
MESSAGE_LIMIT = 200

# --- requests --------------------------------------------------------------------------------


def resource_uri(namespace: str, class_name: str | None) -> str:
    """The WMI resource URI of a class, or of the namespace (`.../*`) when a WQL filter names it.

    `root\\SMS\\site_ABC` + `SMS_PackageStatus` ->
    `http://schemas.microsoft.com/wbem/wsman/1/wmi/root/sms/site_ABC/SMS_PackageStatus`.
    Namespace segments are written in lower case as Microsoft's examples do, except the site code
    of a `site_<CODE>` segment, which keeps the case ConfigMgr gives it; WMI namespaces are
    case-insensitive, so Windows accepts either.
    """
    segments = [segment for segment in namespace.replace("\\", "/").split("/") if segment]
    if not segments:
        raise ValueError("empty WMI namespace")
    path = "/".join(_uri_segment(segment) for segment in segments)
    return f"{WMI_RESOURCE_BASE}{path}/{class_name or '*'}"


def _uri_segment(segment: str) -> str:
    if segment.lower().startswith("site_"):
        return "site_" + segment[5:]
    return segment.lower()


@dataclass(frozen=True, slots=True)
class Envelope:
    """A request ready for `Protocol.send_message()`, and the MessageID its reply must relate to."""

    text: str
    message_id: str


def format_duration(seconds: float) -> str:
    """An xs:duration as WinRM clients send it (`PT60.000S`), capped at what the server allows."""
    bounded = min(max(seconds, 0.001), MAX_OPERATION_TIMEOUT)
    return f"PT{bounded:.3f}S"


def _envelope(
    *, to: str, uri: str, action: str, body: str, operation_timeout: float, message_id: str | None, locale: str
) -> Envelope:
    mid = message_id or f"uuid:{str(uuid.uuid4()).upper()}"
    text = (
        f'<s:Envelope xmlns:s="{NS_SOAP}" xmlns:a="{NS_ADDRESSING}" xmlns:n="{NS_ENUMERATION}" '
        f'xmlns:w="{NS_WSMAN}">'
        "<s:Header>"
        f"<a:To>{escape(to)}</a:To>"
        f'<w:ResourceURI s:mustUnderstand="true">{escape(uri)}</w:ResourceURI>'
        f'<a:ReplyTo><a:Address s:mustUnderstand="true">{ANONYMOUS}</a:Address></a:ReplyTo>'
        f'<a:Action s:mustUnderstand="true">{action}</a:Action>'
        f'<w:MaxEnvelopeSize s:mustUnderstand="true">{MAX_ENVELOPE_SIZE}</w:MaxEnvelopeSize>'
        f"<a:MessageID>{escape(mid)}</a:MessageID>"
        f'<w:Locale xml:lang={quoteattr(locale)} s:mustUnderstand="false"/>'
        f"<w:OperationTimeout>{format_duration(operation_timeout)}</w:OperationTimeout>"
        "</s:Header>"
        f"<s:Body>{body}</s:Body>"
        "</s:Envelope>"
    )
    return Envelope(text, mid)


def build_identify() -> Envelope:
    """A WS-Management Identify (DSP0226 11, [MS-WSMV] 3.1.4.16): what `Test-WSMan` sends. No
    addressing headers; the reply names the vendor and the product version."""
    text = (f'<s:Envelope xmlns:s="{NS_SOAP}" xmlns:wsmid="{NS_IDENTITY}"><s:Header/>'
            "<s:Body><wsmid:Identify/></s:Body></s:Envelope>")
    return Envelope(text, "")


def read_identify(data: bytes | str) -> dict[str, str]:
    """The IdentifyResponse's fields (ProtocolVersion, ProductVendor, ProductVersion) by name."""
    root = parse_xml(data)
    response = root.find(f".//{{{NS_IDENTITY}}}IdentifyResponse")
    if response is None:
        raise PollError("parse", "the Identify reply holds no IdentifyResponse")
    return {
        local_name(child.tag): clean_text(child.text or "")
        for child in response
        if (child.text or "").strip()
    }


def build_enumerate(
    *,
    to: str,
    uri: str,
    wql: str | None = None,
    operation_timeout: float = MAX_OPERATION_TIMEOUT,
    max_elements: int = MAX_ELEMENTS,
    message_id: str | None = None,
    locale: str = DEFAULT_LOCALE,
) -> Envelope:
    """An optimized Enumerate: the reply already carries the first items (Windows sends one).

    With `wql`, `uri` must be the namespace form ending in `/*` (see `resource_uri`).
    """
    if wql is not None and not uri.endswith("/*"):
        raise ValueError("a WQL filter needs the namespace resource URI ending in /*")
    wql_filter = f"<w:Filter Dialect={quoteattr(WQL_DIALECT)}>{escape(wql)}</w:Filter>" if wql else ""
    body = (
        f"<n:Enumerate><w:OptimizeEnumeration/><w:MaxElements>{max_elements}</w:MaxElements>{wql_filter}</n:Enumerate>"
    )
    return _envelope(
        to=to,
        uri=uri,
        action=ACTION_ENUMERATE,
        body=body,
        operation_timeout=operation_timeout,
        message_id=message_id,
        locale=locale,
    )


def build_pull(
    *,
    to: str,
    uri: str,
    context: str,
    operation_timeout: float = MAX_OPERATION_TIMEOUT,
    max_elements: int = MAX_ELEMENTS,
    message_id: str | None = None,
    locale: str = DEFAULT_LOCALE,
) -> Envelope:
    """A Pull with the latest context; `n:MaxElements` matters: without it Windows sends one item."""
    body = (
        f"<n:Pull><n:EnumerationContext>{escape(context)}</n:EnumerationContext>"
        f"<n:MaxElements>{max_elements}</n:MaxElements></n:Pull>"
    )
    return _envelope(
        to=to,
        uri=uri,
        action=ACTION_PULL,
        body=body,
        operation_timeout=operation_timeout,
        message_id=message_id,
        locale=locale,
    )


def build_release(
    *,
    to: str,
    uri: str,
    context: str,
    operation_timeout: float = MAX_OPERATION_TIMEOUT,
    message_id: str | None = None,
    locale: str = DEFAULT_LOCALE,
) -> Envelope:
    """A Release, so an abandoned enumeration stops counting against the user's operation quota."""
    body = f"<n:Release><n:EnumerationContext>{escape(context)}</n:EnumerationContext></n:Release>"
    return _envelope(
        to=to,
        uri=uri,
        action=ACTION_RELEASE,
        body=body,
        operation_timeout=operation_timeout,
        message_id=message_id,
        locale=locale,
    )


# --- safe XML --------------------------------------------------------------------------------


def parse_xml(data: bytes | str) -> ET.Element:
    """Parse a reply, refusing DTDs; any problem is a `PollError("parse")` without the body in it.

    The bytes are decoded here and the parser is given text, which makes expat ignore the
    document's encoding declaration: the DOCTYPE check below then sees exactly what expat will.
    """
    text = decode(data)
    refuse_declarations(text)
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise PollError("parse", f"malformed XML from the server: {exc}") from None


def refuse_declarations(text: str) -> None:
    """The DOCTYPE/entity guard: SOAP allows no DTD, and expat is never given one to expand."""
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise PollError("parse", "refused a reply holding a DOCTYPE or entity declaration (not allowed in SOAP)")


def decode(data: bytes | str) -> str:
    text = data if isinstance(data, str) else _decode_bytes(data)
    # XML forbids NUL. Refusing it also stops UTF-16 smuggled past the check as "UTF-8": expat
    # would still recognise the 16-bit pattern and read a DOCTYPE we never saw.
    if "\x00" in text:
        raise PollError("parse", "reply holds NUL characters: not XML text in UTF-8 or UTF-16")
    return text


def _decode_bytes(data: bytes) -> str:
    try:
        if data.startswith(b"\xef\xbb\xbf"):
            return data[3:].decode("utf-8")
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            return data.decode("utf-16")
        if b"\x00" in data[:2]:  # UTF-16 without a byte order mark: markup is ASCII, one byte is 0
            return data.decode("utf-16-be" if data[0] == 0 else "utf-16-le")
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PollError("parse", f"reply is not valid UTF-8/UTF-16 text: {exc.reason} at byte {exc.start}") from None


def local_name(tag: str) -> str:
    """`{uri}Name` -> `Name`."""
    return tag.rpartition("}")[2]


def qname_local(value: str | None) -> str:
    """`w:TimedOut` -> `TimedOut`: fault codes are QNames whose prefix varies between servers."""
    return (value or "").strip().rpartition(":")[2]


def clean_text(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Provider text for a log line: whitespace collapsed, control characters dropped, cut short."""
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
