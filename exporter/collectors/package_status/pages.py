"""`SMS_PackageStatus` rows read straight from the items text of a Pull page: the poll's hot loop.

A large site is a million instances per poll, 300 to 400 MB of XML. Building an element per
property and a dict per instance (`exporter.winrm.pages.parse_page`) reads some 85,000 rows a
second, the general fragment reader some 210,000; this module about 500,000, and gives the same
rows, or None, and the page is then read instance by instance (`exporter.collectors.spec.page_rows`).

It relies on `exporter.winrm.pages.split_page` having parsed the envelope around the items (with
a probe instance in their place, proving what the prefixes `w:` and `xsi:` mean there) and reads
the items text itself, accepting one shape only: the one Windows writes for our WQL property list,
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
that does not convert) gives None, and the general path either reads the page or reports exactly
what is wrong.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from operator import itemgetter

from exporter.collectors.package_status.row import PackageStatusRow, parse_item
from exporter.rows import RowError, parse_datetime, utc_midnight
from exporter.wmi import PATTERNS_KEPT, PLAIN, WHITESPACE, Item, WireItems

# Text that may hold anything but markup: read by ElementTree, once per distinct run, which
# refuses what XML forbids (so the pattern need not look at every character twice).
_TEXT = "[^<]*"
_MIDDLE = ("Personality", "PkgServer", "SiteCode", "Status", "Type")
# UpdateTime as nearly every row has it, in parts (date, HH:MM, seconds, fraction), or else as
# text for `parse_datetime`.
_DATETIME = (
    "(?:([0-9]{4}-[0-9]{2}-[0-9]{2})T([0-9]{2}:[0-9]{2}):([0-9]{2})(?:\\.([0-9]{1,9}))?Z" + f"|({PLAIN}))"
)
# One instance after the start tag of its fragment, which is given per page (`WireItems.fragment_open`);
# whitespace between instances is allowed, as parse_items ignores it.
_ITEM_BODY = (
    f"<PackageID>({PLAIN})</PackageID>("
    + "".join(f"<{name}>{_TEXT}</{name}>" for name in _MIDDLE)
    + f")(?:<UpdateTime><Datetime>{_DATETIME}</Datetime></UpdateTime>|<UpdateTime xsi:nil=\"true\"/>)"
    "</w:XmlFragment>)"
)
_CLOCK = {f"{hour:02d}:{minute:02d}": hour * 3600 + minute * 60 for hour in range(24) for minute in range(60)}
_SECOND = {f"{second:02d}": second for second in range(60)}
_POWERS = tuple(10**digits for digits in range(10))
_WHOLE = itemgetter(0)
# Bounds on what a reader remembers, should a provider send endless distinct values.
_MIDDLES_KEPT = 100_000
_PACKAGES_KEPT = 1_000_000
_DAYS_KEPT = 100_000

_Middle = tuple[str, str, int, int, int, str]  # site, server, type, status, personality, PkgServer
_new_row = tuple.__new__


class PageReader:
    """Rows of the pages of one site's enumerations, remembering what repeats between rows.

    One reader per target and site code, kept from poll to poll; not shared between threads.
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

    def rows(self, wire: WireItems) -> list[PackageStatusRow] | None:
        """The page's rows, or None when its text is not wholly in the plain shape."""
        rows = self._scan(wire.text, wire.start, wire.end, wire.fragment_open)
        if rows is None:
            self.general_pages += 1
        else:
            self.fast_pages += 1
        return rows

    def _scan(self, text: str, start: int, end: int, fragment_open: str) -> list[PackageStatusRow] | None:
        """The rows of the items text, or None when it is not wholly in the plain shape."""
        pattern = self._patterns.get(fragment_open)
        if pattern is None:
            if len(self._patterns) > PATTERNS_KEPT:
                self._patterns.clear()
            pattern = self._patterns[fragment_open] = re.compile(
                f"([{WHITESPACE}]*" + re.escape(fragment_open) + _ITEM_BODY
            )
        while end > start and text[end - 1] in WHITESPACE:
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
        item: Item = {child.tag: child.text or "" for child in element}
        item["PackageID"] = "-"
        try:
            row = parse_item(item, self.site)
        except RowError:
            return None
        return (row.site, row.server, row.type, row.status, row.personality, row.pkg_server)
