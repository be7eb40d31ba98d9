"""The replies of an enumeration: the one page type (`RawPage`), and the readers of its instances.

`parse_page` reads a reply whole with ElementTree. `split_page` parses only the envelope and
leaves the instances as text (`RawPage.wire`): a 500 KB page holds a thousand instances, and
building elements for them is what makes a general reader slow. `FragmentReader` reads the text
of any property list in the one plain shape Windows writes, about 2.5 times faster, and gives
None for anything else, which `parse_page` then reads or reports exactly. Collectors may bring a
faster reader of their own for the same text (`exporter.collectors.package_status_pages`).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass

from exporter.errors import PollError
from exporter.winrm.envelopes import (
    NS_ADDRESSING,
    NS_ENUMERATION,
    NS_SOAP,
    NS_WSMAN,
    NS_XSI,
    clean_text,
    decode,
    local_name,
    parse_xml,
    refuse_declarations,
)
from exporter.winrm.faults import fault_from_element
from exporter.wmi import PATTERNS_KEPT, PLAIN, WHITESPACE, Item, WireItems

_VALUE_WRAPPERS = frozenset({"Datetime", "Interval", "Date", "Time"})
_ENUM_OR_WSMAN = (NS_ENUMERATION, NS_WSMAN)


@dataclass(frozen=True, slots=True)
class RawPage:
    """One EnumerateResponse or PullResponse: the one page type of the WinRM wing.

    `context` is the context to send in the next Pull (it changes on every reply), None when the
    reply had none or an empty one; `done` says there is nothing more to pull. `items` holds the
    instances when the reply was parsed whole (`parse_page`); `split_page` leaves them as text
    for a faster reader instead (`wire`), and `items` is then None.

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
    def wire(self) -> WireItems | None:
        """The instances as text, for `FragmentReader` and the collectors' own readers; None once read."""
        if self.items is not None:
            return None
        return WireItems(self.text, self.items_start, self.items_end, self.fragment_open)

    @property
    def count(self) -> int:
        """How many instances the page holds (an upper bound, in the split form, until read)."""
        if self.items is not None:
            return len(self.items)
        return self.text.count("<w:XmlFragment", self.items_start, self.items_end)


def parse_page(data: bytes | str, *, message_id: str | None = None) -> RawPage:
    """Items, next context and end of sequence from an EnumerateResponse or PullResponse.

    With `message_id`, a reply whose `a:RelatesTo` names another request is refused: after a
    dropped connection that would be somebody else's page.
    """
    response = _response(parse_xml(data), message_id)
    context, end = _sequence(response)
    items_element = _find_either(response, "Items")
    items = list(parse_items(items_element)) if items_element is not None else []
    return RawPage(context, end, "", 0, 0, items)


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
    checked exactly as `parse_page` does. The items text is then read by `FragmentReader` (or a collector's own reader),
    which accepts only the one plain shape Windows writes and hands anything else back to
    `parse_page`. A reply without that layout is parsed whole here (`RawPage.items`).
    """
    text = decode(data)
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
    # items cannot be read by the fast readers either, which then hand the page to parse_page.
    refuse_declarations(envelope)
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


@dataclass(frozen=True, slots=True)
class ReplyPage:
    """A reply as an `exporter.wmi.Page`: its instances read by the fragment reader or, failing
    that, whole; each named by its number in its enumeration (and the slice, when there are several)."""

    raw: RawPage
    reader: FragmentReader | None
    class_name: str
    first: int = 1  # the number of its first instance in its enumeration
    slice: str = ""

    @property
    def wire(self) -> WireItems | None:
        return self.raw.wire

    def items(self) -> list[Item]:
        if self.raw.items is not None:
            return self.raw.items
        wire = self.raw.wire
        items = self.reader.items(wire) if self.reader is not None and wire is not None else None
        return items if items is not None else parse_page(self.raw.text).items or []

    def name(self, index: int) -> str:
        """`SMS_PackageStatus row 61`, with the slice when the class is read in several."""
        row = f"{self.class_name} row {self.first + index}"
        return f"{row} ({self.slice})" if self.slice else row


# Any property of a fragment as Windows writes it: plain text, a datetime, or nil.
def _property(name: str) -> str:
    return f'(?:<{name}>(?:<Datetime>({PLAIN})</Datetime>|({PLAIN}))</{name}>|<{name} xsi:nil="true"/>)'


class FragmentReader:
    """The instances of any WQL property list read straight from the items text of a page.

    For every class read with a property list, `SMS_PackageStatusDistPointsSummarizer` above all
    (as many rows as the core table): about 2.5 times faster than building elements. Each
    `<w:XmlFragment>` must hold the properties asked for in alphabetical order, each as
    `<P>text</P>`, `<P><Datetime>text</Datetime></P>` or `<P xsi:nil="true"/>`, the text plain
    (no reference to decode, no carriage return, no `>`), the fragments back to back covering the
    whole items text. The instances come out as `parse_items` gives them; a page
    in any other shape gives None, and the caller reads it with `parse_page`.
    Not shared between threads.
    """

    def __init__(self, properties: tuple[str, ...]) -> None:
        self._names = tuple(sorted(properties, key=str.lower))
        self._patterns: dict[str, re.Pattern[str]] = {}

    def items(self, wire: WireItems) -> list[Item] | None:
        pattern = self._patterns.get(wire.fragment_open)
        if pattern is None:
            if len(self._patterns) > PATTERNS_KEPT:
                self._patterns.clear()
            body = "".join(_property(name) for name in self._names)
            pattern = self._patterns[wire.fragment_open] = re.compile(
                f"[{WHITESPACE}]*" + re.escape(wire.fragment_open) + body + "</w:XmlFragment>"
            )
        text, start, end = wire.text, wire.start, wire.end
        while end > start and text[end - 1] in WHITESPACE:
            end -= 1
        names = self._names
        items: list[Item] = []
        position = start
        for match in pattern.finditer(text, start, end):
            if match.start() != position:
                return None  # something between two instances that is not one
            position = match.end()
            values = match.groups()
            items.append({
                name: when if when is not None else plain
                for name, when, plain in zip(names, values[::2], values[1::2], strict=True)
            })
        return items if position == end else None
