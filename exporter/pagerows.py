"""`SMS_PackageStatus` rows read straight from the items text of a Pull page: the poll's hot loop.

A large site is a million instances per poll, 300 to 400 MB of XML. Building an element per
property and a dict per instance (`wsman.parse_page`) reads some 85,000 rows a second; this
module about 500,000, and gives the same rows, or hands the page back to `parse_page`.

It relies on `wsman.split_page` having parsed the envelope around the items (with a probe
instance in their place, proving what the prefixes `w:` and `xsi:` mean there) and reads the
items text itself, accepting one shape only: the one Windows writes for our WQL property list,
`<w:XmlFragment>` (with the page's first start tag, namespace declarations and all) holding the
seven properties in alphabetical order, no whitespace or comments inside, `UpdateTime` as
`<Datetime>` or `xsi:nil`; whitespace between instances is allowed. The pattern matches every
instance back to back and must cover the whole items text, so nothing in it goes unread. Text
that needs no decoding (`PackageID`, the datetime) may hold no `&`, no carriage return (which a
parser would normalise), no `>` (so no `]]>`) and no character XML forbids; the usual datetime
form is captured in parts. The five properties in between (`Personality` to `Type`) repeat
across rows -- a few thousand distinct runs over a million rows -- so each distinct run is
parsed once by ElementTree, entity references and forbidden characters included, and
remembered. Whatever does not fit (another shape, a reference where none is expected, a field
that does not convert) sends the page to the general reader, which either reads it or reports
exactly what is wrong.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from operator import itemgetter

from exporter import wsman
from exporter.collectors.package_status import CLASS_NAME
from exporter.errors import PollError
from exporter.rows import PackageStatusRow, RowError, item_text, make_row, parse_datetime, utc_midnight

# Characters XML 1.0 does not allow in a document (besides tab, LF and CR).
_NOT_XML = "\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff"
# Text that means itself: no reference to decode, no line end to normalise, and no `>`, so that
# no `]]>` (forbidden in text) can hide in it.
_PLAIN = f"[^<>&\r{_NOT_XML}]*"
# Text that may hold anything but markup: read by ElementTree, once per distinct run, which
# refuses what XML forbids (so the pattern need not look at every character twice).
_TEXT = "[^<]*"
_MIDDLE = ("Personality", "PkgServer", "SiteCode", "Status", "Type")
# UpdateTime as nearly every row has it, in parts (date, HH:MM, seconds, fraction), or else as
# text for `parse_datetime`.
_DATETIME = (
    "(?:([0-9]{4}-[0-9]{2}-[0-9]{2})T([0-9]{2}:[0-9]{2}):([0-9]{2})(?:\\.([0-9]{1,9}))?Z" + f"|({_PLAIN}))"
)
# One instance after the start tag of its fragment, which is given per page (wsman.RawPage);
# whitespace between instances is allowed, as parse_items ignores it.
_ITEM_BODY = (
    f"<PackageID>({_PLAIN})</PackageID>("
    + "".join(f"<{name}>{_TEXT}</{name}>" for name in _MIDDLE)
    + f")(?:<UpdateTime><Datetime>{_DATETIME}</Datetime></UpdateTime>|<UpdateTime xsi:nil=\"true\"/>)"
    "</w:XmlFragment>)"
)
_CLOCK = {f"{hour:02d}:{minute:02d}": hour * 3600 + minute * 60 for hour in range(24) for minute in range(60)}
_SECOND = {f"{second:02d}": second for second in range(60)}
_POWERS = tuple(10**digits for digits in range(10))
_WHITESPACE = " \t\r\n"
_WHOLE = itemgetter(0)
_PATTERNS_KEPT = 16
# Bounds on what a reader remembers, should a provider send endless distinct values.
_MIDDLES_KEPT = 100_000
_PACKAGES_KEPT = 1_000_000
_DAYS_KEPT = 100_000

_Middle = tuple[str, str, int, int, int, str]  # site, server, type, status, personality, PkgServer
_new_row = tuple.__new__


def item_row(item: wsman.Item, site: str, number: int) -> PackageStatusRow:
    """The row of one instance as `wsman.parse_items` gives it; `site` stands in for a missing SiteCode."""
    try:
        return make_row(
            site=item_text(item, "SiteCode") or site,
            package_id=item_text(item, "PackageID"),
            pkg_server=item_text(item, "PkgServer"),
            type_=item_text(item, "Type"),
            status=item_text(item, "Status"),
            personality=item_text(item, "Personality"),
            update_time=item_text(item, "UpdateTime"),
        )
    except RowError as exc:
        raise PollError("parse", f"{CLASS_NAME} row {number}: {exc}") from None


class PageReader:
    """Rows of the pages of one site's enumerations, remembering what repeats between rows.

    One reader per source and site code; not shared between threads.
    """

    def __init__(self, site: str) -> None:
        self.site = site
        self._middles: dict[str, _Middle] = {}
        self._packages: dict[str, str] = {}
        self._patterns: dict[str, re.Pattern[str]] = {}  # by the start tag of the fragments
        self._days: dict[str, int] = {}  # date -> Unix seconds of its midnight UTC
        # How many pages took the fast way and how many the general one (tests, benchmark).
        self.fast_pages = 0
        self.general_pages = 0

    def rows(self, page: wsman.RawPage, first: int) -> list[PackageStatusRow]:
        """The page's rows; `first` is the number of its first row in the walk (for messages)."""
        if page.items is None:
            fast = self._scan(page.text, page.items_start, page.items_end, page.fragment_open)
            if fast is not None:
                self.fast_pages += 1
                return fast
            items = wsman.parse_page(page.text).items
        else:
            items = page.items
        self.general_pages += 1
        return [item_row(item, self.site, number) for number, item in enumerate(items, first)]

    def _scan(self, text: str, start: int, end: int, fragment_open: str) -> list[PackageStatusRow] | None:
        """The rows of the items text, or None when it is not wholly in the plain shape."""
        pattern = self._patterns.get(fragment_open)
        if pattern is None:
            if len(self._patterns) > _PATTERNS_KEPT:
                self._patterns.clear()
            pattern = self._patterns[fragment_open] = re.compile(
                f"([{_WHITESPACE}]*" + re.escape(fragment_open) + _ITEM_BODY
            )
        while end > start and text[end - 1] in _WHITESPACE:
            end -= 1
        found = pattern.findall(text, start, end)
        if sum(map(len, map(_WHOLE, found))) != end - start:
            return None
        middles, packages, days = self._middles, self._packages, self._days
        clocks, seconds, powers = _CLOCK, _SECOND, _POWERS
        if len(middles) > _MIDDLES_KEPT:
            middles.clear()
        if len(packages) > _PACKAGES_KEPT:
            packages.clear()
        rows: list[PackageStatusRow] = []
        append = rows.append
        try:
            for _, package, middle, date, clock, second, fraction, moment in found:
                fields = middles.get(middle)
                if fields is None:
                    fields = self._middle(middle)
                    if fields is None:
                        return None
                    middles[middle] = fields
                package_id = packages.get(package)
                if package_id is None:
                    if not package:
                        return None  # PackageID missing: the general reader says so
                    package_id = packages[package] = sys.intern(package.strip())
                site, server, type_, status, personality, pkg_server = fields
                if date:
                    day = days.get(date)
                    if day is None:
                        day = days[date] = self._day(date)
                    time_of_day = clocks.get(clock)
                    second_of_minute = seconds.get(second)
                    if time_of_day is None or second_of_minute is None:
                        return None  # hour 24, minute 60...: the general reader says what is wrong
                    # As parse_datetime computes it: whole seconds as an integer, plus the fraction.
                    whole = day + time_of_day + second_of_minute
                    update_time = whole + (int(fraction) / powers[len(fraction)] if fraction else 0.0)
                else:
                    update_time = parse_datetime(moment) if moment else None
                append(
                    _new_row(
                        PackageStatusRow,
                        (site, package_id, server, type_, status, personality, update_time, pkg_server),
                    )
                )
        except RowError:
            return None
        return rows

    def _day(self, date: str) -> int:
        midnight = utc_midnight(date)
        if midnight is None:
            raise RowError(f"not a date: {date}")  # caught in _scan: the general reader reports it
        if len(self._days) > _DAYS_KEPT:
            self._days.clear()
        return midnight

    def _middle(self, middle: str) -> _Middle | None:
        """Personality to Type of one distinct run, read by ElementTree as `parse_items` would."""
        try:
            element = ET.fromstring(f"<i>{middle}</i>")
        except ET.ParseError:
            return None
        item: wsman.Item = {child.tag: child.text or "" for child in element}
        item["PackageID"] = "-"
        try:
            row = item_row(item, self.site, 0)
        except PollError:
            return None
        return (row.site, row.server, row.type, row.status, row.personality, row.pkg_server)


# Any property of a fragment as Windows writes it: plain text, a datetime, or nil.
def _property(name: str) -> str:
    return f'(?:<{name}>(?:<Datetime>({_PLAIN})</Datetime>|({_PLAIN}))</{name}>|<{name} xsi:nil="true"/>)'


class FragmentReader:
    """The instances of any WQL property list read straight from the items text of a page.

    For the optional collectors' classes, `SMS_PackageStatusDistPointsSummarizer` above all (as
    many rows as the core table): the same idea as `PageReader`, without what is particular to
    `SMS_PackageStatus`. Each `<w:XmlFragment>` must hold the properties asked for in alphabetical
    order, each as `<P>text</P>`, `<P><Datetime>text</Datetime></P>` or `<P xsi:nil="true"/>`, the
    text plain (no reference to decode, no carriage return, no `>`), the fragments back to back
    covering the whole items text. The instances come out as `wsman.parse_items` gives them;
    a page in any other shape gives None, and the caller reads it with `wsman.parse_page`.
    Not shared between threads.
    """

    def __init__(self, properties: tuple[str, ...]) -> None:
        self._names = tuple(sorted(properties, key=str.lower))
        self._patterns: dict[str, re.Pattern[str]] = {}

    def items(self, page: wsman.RawPage) -> list[wsman.Item] | None:
        if page.items is not None:
            return page.items
        pattern = self._patterns.get(page.fragment_open)
        if pattern is None:
            if len(self._patterns) > _PATTERNS_KEPT:
                self._patterns.clear()
            body = "".join(_property(name) for name in self._names)
            pattern = self._patterns[page.fragment_open] = re.compile(
                f"[{_WHITESPACE}]*" + re.escape(page.fragment_open) + body + "</w:XmlFragment>"
            )
        text, start, end = page.text, page.items_start, page.items_end
        while end > start and text[end - 1] in _WHITESPACE:
            end -= 1
        names = self._names
        items: list[wsman.Item] = []
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
