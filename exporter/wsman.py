"""WS-Management Enumerate/Pull/Release for WMI classes, as Windows speaks it: envelopes and replies.

Pure protocol code, no I/O: `exporter.sources.winrm` sends what is built here through pywinrm and
hands the replies back. Written to shared/spec/wsman-wire.md:

* Requests are built here rather than with pywinrm's `build_wsman_header()`, which hard-codes a
  153600-byte `MaxEnvelopeSize`; we ask for 512000 (the server clamps it to its own limit).
* Replies are parsed with the standard library's expat-based ElementTree after refusing any
  DOCTYPE: SOAP forbids DTDs, and refusing them up front defeats entity expansion ("billion
  laughs") and external entities whatever the expat version.
* Faults are read from their raw XML, including what pywinrm's `WSManFaultError` leaves out
  (nested `f:ProviderFault`, inner `f:WSManFault`/`f:Message`, `MSFT_WmiError` `MessageID`), and
  turned into a `PollError` whose reason and message an administrator can act on.
"""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
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
    text = _decode(data)
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise PollError("parse", "refused a reply holding a DOCTYPE or entity declaration (not allowed in SOAP)")
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise PollError("parse", f"malformed XML from the server: {exc}") from None


def _decode(data: bytes | str) -> str:
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


def _qname_local(value: str | None) -> str:
    """`w:TimedOut` -> `TimedOut`: fault codes are QNames whose prefix varies between servers."""
    return (value or "").strip().rpartition(":")[2]


def clean_text(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Provider text for a log line: whitespace collapsed, control characters dropped, cut short."""
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# --- enumeration replies ---------------------------------------------------------------------

PropertyValue = str | None | list[str | None]
"""A property's text; None for `xsi:nil`; a list when the element repeats (a WMI array)."""

Item = dict[str, PropertyValue]
"""One instance: property local name -> value."""

_VALUE_WRAPPERS = frozenset({"Datetime", "Interval", "Date", "Time"})
_ENUM_OR_WSMAN = (NS_ENUMERATION, NS_WSMAN)


@dataclass(frozen=True, slots=True)
class Page:
    """One EnumerateResponse or PullResponse.

    `context` is the context to send in the next Pull (it changes on every reply), None when the
    reply had none or an empty one. `done` says there is nothing more to pull.
    """

    items: list[Item]
    context: str | None
    end_of_sequence: bool

    @property
    def done(self) -> bool:
        return self.end_of_sequence or self.context is None


def parse_page(data: bytes | str, *, message_id: str | None = None) -> Page:
    """Items, next context and end of sequence from an EnumerateResponse or PullResponse.

    With `message_id`, a reply whose `a:RelatesTo` names another request is refused: after a
    dropped connection that would be somebody else's page.
    """
    response = _response(parse_xml(data), message_id)
    context, end = _sequence(response)
    items_element = _find_either(response, "Items")
    items = list(parse_items(items_element)) if items_element is not None else []
    return Page(items=items, context=context, end_of_sequence=end)


def _response(root: ET.Element, message_id: str | None) -> ET.Element:
    _check_relates_to(root, message_id)
    response = _body_child(root)
    if response.tag not in (f"{{{NS_ENUMERATION}}}EnumerateResponse", f"{{{NS_ENUMERATION}}}PullResponse"):
        name = local_name(response.tag)
        raise PollError("parse", f"expected an EnumerateResponse or PullResponse, got {clean_text(name, 60)}")
    return response


def _sequence(response: ET.Element) -> tuple[str | None, bool]:
    context_element = response.find(f"{{{NS_ENUMERATION}}}EnumerationContext")
    context = (context_element.text or "").strip() if context_element is not None else ""
    return context or None, _find_either(response, "EndOfSequence") is not None


@dataclass(frozen=True, slots=True)
class RawPage:
    """A reply whose envelope is read but whose items are left as text, for a faster reader.

    `text[items_start:items_end]` is the content of its `Items` element, every instance in it as
    the server wrote it. `fragment_open` is the start tag of its first instance
    (`<w:XmlFragment>`, maybe with namespace declarations): an instance with that start tag
    stood in for them while the envelope was parsed (see `split_page`), which proves that `w:`
    and, inside it, `xsi:` mean there what a reader expects. A reply that `split_page` could not
    take apart this way was parsed whole instead: its `items` are then already read.
    """

    context: str | None
    end_of_sequence: bool
    text: str
    items_start: int
    items_end: int
    items: list[Item] | None = None
    fragment_open: str = ""

    @property
    def done(self) -> bool:
        return self.end_of_sequence or self.context is None

    @property
    def items_text(self) -> str:
        return self.text[self.items_start : self.items_end]

    @property
    def count(self) -> int:
        """How many instances the page holds (an upper bound, in the split form, until read)."""
        if self.items is not None:
            return len(self.items)
        return self.text.count("<w:XmlFragment", self.items_start, self.items_end)


# `Items` with the prefix the replies of Windows and of pywinrm's peers use, no attributes.
_ITEMS_OPEN = re.compile(r"<(n|w):Items>")
# The start tag of the first instance, after any whitespace.
_FRAGMENT_OPEN = re.compile(r"[ \t\r\n]*(<w:XmlFragment(?:\s[^<>]*)?(?<!/)>)")
_NIL_CHILD = '<UpdateTime xsi:nil="true"/>'


def split_page(data: bytes | str, *, message_id: str | None = None) -> RawPage:
    """An EnumerateResponse or PullResponse, its envelope parsed and its items kept as text.

    The items are most of a reply (a 500 KB page holds a thousand instances); building elements
    for them is what makes a general XML reader slow. So the `Items` content is cut out, a probe
    instance put in its place, and the rest (header, context, end of sequence, faults) parsed and
    checked exactly as `parse_page` does. The items text is then read by `exporter.pagerows`,
    which accepts only the one plain shape Windows writes and hands anything else back to
    `parse_page`. A reply without that layout is parsed whole here (`RawPage.items`).
    """
    text = _decode(data)
    opening = _ITEMS_OPEN.search(text)
    if opening is not None:
        start = opening.end()
        end = text.rfind(f"</{opening.group(1)}:Items>")
        fragment = _FRAGMENT_OPEN.match(text, start)
        if end >= start and fragment is not None and fragment.end() <= end:
            raw = _split(text, start, end, fragment.group(1), text.find("xsi:nil", start, end) >= 0, message_id)
            if raw is not None:
                return raw
    page = parse_page(text, message_id=message_id)
    return RawPage(page.context, page.end_of_sequence, text, 0, 0, page.items)


def _split(
    text: str, start: int, end: int, fragment_open: str, nil: bool, message_id: str | None
) -> RawPage | None:
    """The envelope with a probe instance for its items, parsed; None when not the expected layout."""
    probe = fragment_open + (_NIL_CHILD if nil else "") + "</w:XmlFragment>"
    envelope = text[:start] + probe + text[end:]
    # What parse_xml refuses, refused here in what ElementTree is given; a declaration among the
    # items cannot be read by the fast reader either, which then hands the page to parse_page.
    if "<!DOCTYPE" in envelope or "<!ENTITY" in envelope:
        raise PollError("parse", "refused a reply holding a DOCTYPE or entity declaration (not allowed in SOAP)")
    try:
        root = ET.fromstring(envelope)
    except ET.ParseError:
        return None  # parse_page reads the whole reply and says what is wrong with it
    if root.tag != f"{{{NS_SOAP}}}Envelope":
        return None
    body = root.find(f"{{{NS_SOAP}}}Body")
    response = body[0] if body is not None and len(body) else None
    if response is None or response.tag not in (
        f"{{{NS_ENUMERATION}}}EnumerateResponse",
        f"{{{NS_ENUMERATION}}}PullResponse",
    ):
        return None
    items = _find_either(response, "Items")
    if items is None or len(items) != 1 or items[0].tag != f"{{{NS_WSMAN}}}XmlFragment":
        return None
    if len(root.findall(f".//{{{NS_WSMAN}}}XmlFragment")) != 1:
        return None  # then the one in Items might not be the probe: not the layout we cut
    if nil and (len(items[0]) != 1 or items[0][0].get(f"{{{NS_XSI}}}nil") != "true"):
        return None
    _check_relates_to(root, message_id)
    context, end_of_sequence = _sequence(response)
    return RawPage(context, end_of_sequence, text, start, end, fragment_open=fragment_open)


def _find_either(parent: ET.Element, name: str) -> ET.Element | None:
    """`Items` and `EndOfSequence` come in the WS-Man namespace (optimized Enumerate) or WS-Enumeration."""
    for namespace in _ENUM_OR_WSMAN:
        found = parent.find(f"{{{namespace}}}{name}")
        if found is not None:
            return found
    return None


def _check_relates_to(root: ET.Element, message_id: str | None) -> None:
    if message_id is None:
        return
    relates = root.find(f"{{{NS_SOAP}}}Header/{{{NS_ADDRESSING}}}RelatesTo")
    if relates is None or not (relates.text or "").strip():
        return  # not every server echoes it; the spec only asks ours to
    if _uuid_text(relates.text or "") != _uuid_text(message_id):
        raise PollError("parse", "reply relates to another request than the one sent")


def _uuid_text(value: str) -> str:
    return value.strip().lower().removeprefix("uuid:")


def _body_child(root: ET.Element) -> ET.Element:
    if root.tag != f"{{{NS_SOAP}}}Envelope":
        raise PollError(
            "parse", f"reply is not a SOAP 1.2 envelope (root element {clean_text(local_name(root.tag), 60)})"
        )
    body = root.find(f"{{{NS_SOAP}}}Body")
    if body is None or len(body) == 0:
        raise PollError("parse", "reply has an empty SOAP body")
    child = body[0]
    if child.tag == f"{{{NS_SOAP}}}Fault":
        fault = fault_from_element(child)
        raise PollError("parse", f"unexpected fault in a successful reply: {clean_text(fault.text)}")
    return child


def parse_items(items: ET.Element) -> Iterator[Item]:
    """Each instance under `w:Items`/`n:Items`, whichever of the two shapes Windows used.

    `SELECT *` or a class URI: `<p:SMS_PackageStatus>` with namespaced property children (the
    namespace URI's casing varies, so only local names are used). A WQL property list: a
    `<w:XmlFragment>` whose children have no namespace. `w:Item` (object-and-EPR mode) wraps
    either; its endpoint reference is skipped.
    """
    for element in items:
        if local_name(element.tag) == "Item":
            inner = [child for child in element if local_name(child.tag) != "EndpointReference"]
            if not inner:
                continue
            element = inner[0]
        yield _properties(element)


def _properties(instance: ET.Element) -> Item:
    item: Item = {}
    for prop in instance:
        name = local_name(prop.tag)
        value = _value(prop)
        if name not in item:
            item[name] = value
            continue
        existing = item[name]
        if isinstance(existing, list):
            existing.append(value)
        else:
            item[name] = [existing, value]
    return item


def _value(prop: ET.Element) -> str | None:
    if prop.get(f"{{{NS_XSI}}}nil", "").strip().lower() in ("true", "1"):
        return None
    children = list(prop)
    if not children:
        return prop.text or ""
    first = children[0]
    if local_name(first.tag) in _VALUE_WRAPPERS:
        return first.text or ""
    # An embedded object: not something this exporter reads; keep its text rather than fail.
    return "".join(prop.itertext())


# --- faults ----------------------------------------------------------------------------------

# WMI (WBEM_E_*) and WS-Management (ERROR_WSMAN_*) codes, unsigned.
WBEM_E_FAILED = 0x80041001
WBEM_E_ACCESS_DENIED = 0x80041003
WBEM_E_INVALID_NAMESPACE = 0x8004100E
WBEM_E_INVALID_CLASS = 0x80041010
E_ACCESSDENIED = 0x80070005
ERROR_ACCESS_DENIED = 5
ERROR_INTERNAL_ERROR = 1359
WSMAN_RESOURCE_NOT_FOUND = 0x80338000  # 2150858752, with a:DestinationUnreachable
WSMAN_CANNOT_PROCESS_FILTER = 0x8033801A  # 2150858778
WSMAN_INVALID_ENUMERATION_CONTEXT = 0x8033801B  # 2150858779
WSMAN_ENUMERATE_TIMED_OUT = 0x8033801C
WSMAN_OPERATION_TIMEDOUT = 0x80338029  # 2150858793
WSMAN_CANNOT_PROCESS_FILTER_CLIENT = 0x80338122
WSMAN_ENCODING_LIMIT = 0x80338111
WSMAN_QUOTA_CODES = frozenset({0x803381A5, 0x803381A6})

_HEX_CODE = re.compile(r"\b0x([0-9A-Fa-f]{8})\b")


@dataclass(frozen=True, slots=True)
class Fault:
    """What a SOAP fault says, from every place Windows puts it.

    `codes` holds every numeric code found, unsigned, outermost first: `f:WSManFault Code`
    attributes (nested ones too), `MSFT_WmiError` `error_Code` and `MessageID` HRESULTs, and
    `0x...` codes quoted in the messages. `text` is the most specific message (the innermost
    provider message, else the WMI error message, else the reason).
    """

    code: str
    subcode: str
    reason: str
    details: tuple[str, ...]
    wsman_codes: tuple[int, ...]
    codes: tuple[int, ...]
    text: str

    def has(self, *codes: int) -> bool:
        return any(code in self.codes for code in codes)

    @property
    def is_timed_out(self) -> bool:
        return self.subcode == "TimedOut" or self.has(WSMAN_OPERATION_TIMEDOUT, WSMAN_ENUMERATE_TIMED_OUT)

    @property
    def is_invalid_context(self) -> bool:
        return self.subcode == "InvalidEnumerationContext" or self.has(WSMAN_INVALID_ENUMERATION_CONTEXT)

    @property
    def restartable(self) -> bool:
        """The enumeration can be started again (spec: TimedOut, InvalidEnumerationContext)."""
        return self.is_timed_out or self.is_invalid_context


def parse_fault(data: bytes | str) -> Fault:
    """A `Fault` from a fault reply (pywinrm's `WSManFaultError.response`)."""
    root = parse_xml(data)
    fault = root.find(f"{{{NS_SOAP}}}Body/{{{NS_SOAP}}}Fault")
    if fault is None:
        raise PollError("parse", "expected a SOAP fault, found none")
    return fault_from_element(fault)


def fault_from_element(fault: ET.Element) -> Fault:
    code = fault.findtext(f"{{{NS_SOAP}}}Code/{{{NS_SOAP}}}Value") or ""
    subcode = fault.findtext(f"{{{NS_SOAP}}}Code/{{{NS_SOAP}}}Subcode/{{{NS_SOAP}}}Value") or ""
    reason = (fault.findtext(f"{{{NS_SOAP}}}Reason/{{{NS_SOAP}}}Text") or "").strip()
    detail = fault.find(f"{{{NS_SOAP}}}Detail")
    details: tuple[str, ...] = ()
    wsman_codes: list[int] = []
    codes: list[int] = []
    messages: list[str] = []
    if detail is not None:
        # w:FaultDetail is a URI (.../faultDetail/InvalidResourceURI): its last segment says it all.
        details = tuple(
            (el.text or "").strip().rstrip("/").rpartition("/")[2] for el in detail.iter(f"{{{NS_WSMAN}}}FaultDetail")
        )
        _read_wsman_faults(detail, wsman_codes, messages)
        _read_wmi_errors(detail, codes, messages)
    codes[:0] = wsman_codes
    for text in [*messages, reason]:
        codes.extend(int(match, 16) for match in _HEX_CODE.findall(text))
    text = next((m for m in reversed(messages) if m.strip()), reason)
    return Fault(
        code=_qname_local(code),
        subcode=_qname_local(subcode),
        reason=reason,
        details=details,
        wsman_codes=tuple(_unique(wsman_codes)),
        codes=tuple(_unique(codes)),
        text=text.strip(),
    )


def _read_wsman_faults(detail: ET.Element, codes: list[int], messages: list[str]) -> None:
    """`f:WSManFault Code=...`, possibly holding `f:Message/f:ProviderFault/f:WSManFault/f:Message`.

    Document order puts the outer fault first, so the last non-empty message is the innermost.
    """
    for wsman_fault in detail.iter(f"{{{NS_WSMAN_FAULT}}}WSManFault"):
        number = _int(wsman_fault.get("Code"))
        if number is not None:
            codes.append(number)
        message = wsman_fault.find(f"{{{NS_WSMAN_FAULT}}}Message")
        if message is None:
            continue
        own = (message.text or "").strip()
        if own:
            messages.append(own)
        for provider in message.iter(f"{{{NS_WSMAN_FAULT}}}ProviderFault"):
            provider_text = (provider.text or "").strip()
            if provider_text:
                messages.append(provider_text)


def _read_wmi_errors(detail: ET.Element, codes: list[int], messages: list[str]) -> None:
    for wmi in detail.iter(f"{{{NS_WMI_ERROR}}}MSFT_WmiError"):
        number = _int(wmi.findtext(f"{{{NS_WMI_ERROR}}}error_Code"))
        if number is not None:
            codes.append(number)
        message_id = wmi.findtext(f"{{{NS_WMI_ERROR}}}MessageID") or ""
        codes.extend(int(match, 16) for match in _HEX_CODE.findall(message_id))
        message = (wmi.findtext(f"{{{NS_WMI_ERROR}}}Message") or "").strip()
        if message:
            messages.append(message)


def _int(text: str | None) -> int | None:
    """A code as Windows writes it: decimal, possibly negative (a signed HRESULT), or 0x hex."""
    if text is None:
        return None
    value = text.strip()
    try:
        number = int(value, 16) if value.lower().startswith("0x") else int(value)
    except ValueError:
        return None
    return number & 0xFFFFFFFF


def _unique(values: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(values))


def fault_error(fault: Fault, *, namespace: str, class_name: str) -> PollError:
    """The `PollError` for a fault, per the spec's table; the message says what to check.

    Order matters: access denied wins over everything (a denied namespace also looks missing),
    then timeouts, then the WMI codes (more specific than the WS-Management wrapper around them).
    """
    where = f"{class_name} in {namespace}"
    said = clean_text(fault.text)
    if (
        fault.subcode == "AccessDenied"
        or fault.has(WBEM_E_ACCESS_DENIED, E_ACCESSDENIED)
        or (ERROR_ACCESS_DENIED in fault.wsman_codes)
    ):
        code = _first(fault, WBEM_E_ACCESS_DENIED, E_ACCESSDENIED, ERROR_ACCESS_DENIED)
        return PollError(
            "auth",
            f"access denied reading {where}: the account needs WMI Remote Enable on the namespace "
            f"and membership of Remote Management Users on the SMS Provider ({said})",
            wmi_code=code,
        )
    if fault.is_timed_out:
        code = _first(fault, WSMAN_OPERATION_TIMEDOUT, WSMAN_ENUMERATE_TIMED_OUT)
        return PollError("timeout", f"the provider did not answer within the operation timeout ({said})", wmi_code=code)
    return _wmi_fault(fault, namespace=namespace, class_name=class_name, said=said)


def _wmi_fault(fault: Fault, *, namespace: str, class_name: str, said: str) -> PollError:
    where = f"{class_name} in {namespace}"
    if fault.has(WBEM_E_INVALID_NAMESPACE):
        return PollError(
            "wmi_fault", f"invalid namespace {namespace}: wrong site_code? ({said})", wmi_code=WBEM_E_INVALID_NAMESPACE
        )
    if fault.has(WBEM_E_INVALID_CLASS):
        return PollError(
            "wmi_fault",
            f"invalid class {class_name} in {namespace}: is this host an SMS Provider of that site? ({said})",
            wmi_code=WBEM_E_INVALID_CLASS,
        )
    if (
        fault.subcode == "DestinationUnreachable"
        or "InvalidResourceURI" in fault.details
        or (fault.has(WSMAN_RESOURCE_NOT_FOUND))
    ):
        return PollError(
            "wmi_fault",
            f"resource not found: namespace {namespace} or class {class_name} does not exist "
            f"(wrong site_code?) ({said})",
            wmi_code=_first(fault, WSMAN_RESOURCE_NOT_FOUND) or _best_code(fault),
        )
    if fault.subcode == "CannotProcessFilter" or fault.has(
        WSMAN_CANNOT_PROCESS_FILTER, WSMAN_CANNOT_PROCESS_FILTER_CLIENT
    ):
        return PollError(
            "wmi_fault", f"the provider refused the WQL query on {where} ({said})", wmi_code=_best_code(fault)
        )
    if fault.has(WBEM_E_FAILED) or ERROR_INTERNAL_ERROR in fault.wsman_codes:
        return PollError(
            "wmi_fault",
            f"WMI provider failure reading {where}: see the SMS Provider's smsprov.log ({said})",
            wmi_code=_first(fault, WBEM_E_FAILED) or _best_code(fault),
        )
    if fault.subcode == "QuotaLimit" or fault.has(*WSMAN_QUOTA_CODES):
        return PollError(
            "wmi_fault",
            f"WinRM quota exceeded (too many open operations or shells for this user?) ({said})",
            wmi_code=_first(fault, *WSMAN_QUOTA_CODES) or _best_code(fault),
        )
    if fault.subcode == "EncodingLimit" or fault.has(WSMAN_ENCODING_LIMIT):
        return PollError(
            "wmi_fault",
            f"WinRM envelope size limit hit (MaxEnvelopeSizekb too small?) ({said})",
            wmi_code=_first(fault, WSMAN_ENCODING_LIMIT) or _best_code(fault),
        )
    if fault.is_invalid_context:
        return PollError(
            "wmi_fault",
            f"enumeration context of {where} expired or unknown to the server ({said})",
            wmi_code=WSMAN_INVALID_ENUMERATION_CONTEXT,
        )
    label = fault.subcode or fault.code or "fault"
    return PollError(
        "wmi_fault", f"WS-Management fault {clean_text(label, 60)} reading {where} ({said})", wmi_code=_best_code(fault)
    )


def _first(fault: Fault, *wanted: int) -> int | None:
    return next((code for code in fault.codes if code in wanted), None)


def _best_code(fault: Fault) -> int | None:
    """The most telling code: the first WMI one (0x8004....) if any, else the first code found."""
    wmi = [code for code in fault.codes if code & 0xFFFF0000 == 0x80040000]
    if wmi:
        return wmi[0]
    return fault.codes[0] if fault.codes else None
