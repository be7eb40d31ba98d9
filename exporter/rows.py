"""The `SMS_PackageStatus` row as the exporter sees it, and the field conversions every source shares.

Every source (WinRM, file, demo) produces `PackageStatusRow`s through the helpers here, so that a
row read from a CSV export and a row read over WS-Management become the same series.
See shared/spec/sms-packagestatus.md for the class.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import NamedTuple

# Enum names as they appear in the `status`, `type` and `personality` labels (design.md).
STATUS_NAMES: dict[int, str] = {
    0: "none",
    1: "sent",
    2: "received",
    3: "installed",
    4: "retry",
    5: "failed",
    6: "removed",
    7: "pending_remove",
}
TYPE_NAMES: dict[int, str] = {1: "master", 2: "copy"}
PERSONALITY_NAMES: dict[int, str] = {0: "none", 1: "mac", 2: "fpnw"}

TYPE_MASTER = 1
TYPE_COPY = 2
STATUS_INSTALLED = 3

# Reverse maps, so that a file written with names ("Installed", "COPY") reads back as numbers.
_STATUS_BY_NAME = {name.replace("_", ""): number for number, name in STATUS_NAMES.items()}
_TYPE_BY_NAME = {name: number for number, name in TYPE_NAMES.items()}
_PERSONALITY_BY_NAME = {name: number for number, name in PERSONALITY_NAMES.items()}


class RowError(ValueError):
    """A field of a row could not be understood; the message names the field and the value."""


class PackageStatusRow(NamedTuple):
    """One `SMS_PackageStatus` instance, typed.

    `server` is the host name taken from `PkgServer` (see `host_from_nal`); `pkg_server` keeps the
    raw value. Enums stay numbers so that values outside the documented tables survive.
    `update_time` is Unix seconds UTC with the fraction kept, or None when the field is nil.

    A tuple, not a dataclass: a large site yields a million of these per poll, and a tuple is
    built and unpacked several times faster than a frozen dataclass instance.
    """

    site: str
    package_id: str
    server: str
    type: int
    status: int
    personality: int
    update_time: float | None
    pkg_server: str = ""

    @property
    def key(self) -> tuple[str, str, str, int, int, int]:
        """The identity of a row as exported: two rows with the same key are one series."""
        return (self.site, self.package_id, self.server, self.type, self.status, self.personality)


def enum_label(value: int, names: dict[int, str]) -> str:
    """The label value of an enum: its name, or its number when it is outside the table."""
    return names.get(value) or str(value)


def _parse_enum(field: str, text: str | None, by_name: dict[str, int]) -> int:
    if text is None:
        raise RowError(f"{field} is missing")
    cleaned = text.strip()
    try:
        return int(cleaned)
    except ValueError:
        pass
    number = by_name.get(cleaned.lower().replace("_", "").replace(" ", ""))
    if number is None:
        raise RowError(f"{field} is not a number or a known name: {cleaned[:40]!r}")
    return number


def parse_status(text: str | None) -> int:
    return _parse_enum("Status", text, _STATUS_BY_NAME)


def parse_type(text: str | None) -> int:
    return _parse_enum("Type", text, _TYPE_BY_NAME)


def parse_personality(text: str | None) -> int:
    if text is None or not text.strip():
        return 0  # legacy property: absent means NONE
    return _parse_enum("Personality", text, _PERSONALITY_BY_NAME)


def item_text(item: Mapping[str, str | list[str | None] | None], name: str) -> str | None:
    """One property of an instance as `wsman.parse_items` gives it: its text, or None when nil."""
    value = item.get(name)
    if isinstance(value, list):
        raise RowError(f"{name} has {len(value)} values where one was expected")
    return value


def parse_int(field: str, text: str | None) -> int | None:
    """A WMI integer property; None when nil or empty."""
    if text is None or not text.strip():
        return None
    try:
        return int(text.strip())
    except ValueError:
        raise RowError(f"{field} is not a number: {text.strip()[:40]!r}") from None


_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0", ""})


def parse_bool(field: str, text: str | None) -> bool:
    """A WMI boolean (`true`/`false` over WS-Management, `True`/`False` in PowerShell exports); nil is false."""
    cleaned = (text or "").strip().lower()
    if cleaned in _TRUE:
        return True
    if cleaned in _FALSE:
        return False
    raise RowError(f"{field} is not a boolean: {cleaned[:40]!r}")


# --- NAL paths -------------------------------------------------------------------------------

_NAL_DISPLAY = re.compile(r'Display=\\\\([^\\"\]]+)')
_NAL_MSWNET = re.compile(r"MSWNET:(?:\[[^\]]*\])*\\\\([^\\\"\]]+)")
_UNC = re.compile(r"^\\\\([^\\]+)")


@lru_cache(maxsize=16384)
def host_from_nal(value: str) -> str:
    """The host name in a `PkgServer`/`Location` value: a NAL path, a UNC path or a bare host.

    `["Display=\\\\DP01.corp\\"]MSWNET:["SMS_SITE=ABC"]\\\\DP01.corp\\` -> `DP01.corp`. The host is
    kept exactly as written (case kept, not shortened), as design.md asks. A value with no
    recognisable host is returned stripped, so that nothing is lost. Memoised: a site names a few
    hundred servers over a million rows.
    """
    text = value.strip()
    for pattern in (_NAL_MSWNET, _NAL_DISPLAY, _UNC):
        match = pattern.search(text)
        if match:
            return match.group(1).strip()
    return text.strip("\\/")


# --- Datetimes -------------------------------------------------------------------------------

_XS_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$"
)
_DMTF = re.compile(r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})\.(\d{6})([+-])(\d{3})$")
_JSON_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The form WS-Management sends for nearly every row: UTC with `Z`. Its date part is looked up in
# a small cache, which makes it about five times cheaper than the general path.
_XS_UTC = re.compile(r"(\d{4}-\d\d-\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z", re.ASCII)
_POWERS: tuple[int, ...] = tuple(10**digits for digits in range(10))


def _seconds(moment: datetime, fraction: str | None) -> float:
    whole = (moment - _EPOCH) // timedelta(seconds=1)
    return whole + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


def parse_datetime(text: str | None, field: str = "UpdateTime") -> float | None:
    """Unix seconds UTC from any form a WMI datetime takes; None for nil or empty.

    Forms: xs:dateTime as WS-Management sends it (`2013-04-15T16:28:43.488171Z`, 0 to 9 fraction
    digits, `Z`, `+HH:MM` or no offset, which is read as UTC), the DMTF string
    (`20240501102233.000000+060`, offset in minutes) and the `/Date(ms)/` form that Windows
    PowerShell's ConvertTo-Json writes. Raises RowError on anything else.
    """
    if text is None:
        return None
    fast = _XS_UTC.fullmatch(text)
    if fast is not None:
        day, hour, minute, second, fraction = fast.groups()
        midnight = utc_midnight(day)
        if midnight is not None and hour < "24" and minute < "60" and second < "60":
            whole = midnight + int(hour) * 3600 + int(minute) * 60 + int(second)
            return whole + (int(fraction) / _POWERS[len(fraction)] if fraction else 0.0)
    value = text.strip()
    if not value:
        return None
    try:
        match = _XS_DATETIME.match(value)
        if match:
            year, month, day, hour, minute, second, fraction, offset = match.groups()
            tz = UTC if offset in (None, "Z") else _offset_tz(offset)
            moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=tz)
            return _seconds(moment, fraction)
        match = _DMTF.match(value)
        if match:
            year, month, day, hour, minute, second, micro, sign, minutes = match.groups()
            delta = timedelta(minutes=int(minutes))
            tz = timezone(delta if sign == "+" else -delta)
            moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=tz)
            return _seconds(moment, micro)
        match = _JSON_DATE.match(value.replace("\\/", "/"))
        if match:
            return int(match.group(1)) / 1000.0
    except (ValueError, OverflowError) as exc:
        raise RowError(f"{field} is not a valid date: {value[:40]!r} ({exc})") from None
    raise RowError(f"{field} is not a datetime this exporter knows: {value[:40]!r}")


@lru_cache(maxsize=4096)
def utc_midnight(day: str) -> int | None:
    """Unix seconds of 00:00 UTC on `day` (`2024-05-01`); None when it is no date (the general path
    then reports it)."""
    try:
        moment = datetime(int(day[:4]), int(day[5:7]), int(day[8:10]), tzinfo=UTC)
    except ValueError:
        return None
    return (moment - _EPOCH) // timedelta(seconds=1)


def _offset_tz(offset: str) -> timezone:
    sign = -1 if offset[0] == "-" else 1
    digits = offset[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def make_row(
    *,
    site: str | None,
    package_id: str | None,
    pkg_server: str | None,
    type_: str | None,
    status: str | None,
    personality: str | None,
    update_time: str | None,
) -> PackageStatusRow:
    """Build a typed row from the text of its properties, as every source reads them.

    Strings are interned: a site holds a handful of servers and sites repeated over many rows,
    and sharing them keeps a large poll small.
    """
    if not package_id:
        raise RowError("PackageID is missing")
    if pkg_server is None:
        raise RowError("PkgServer is missing")
    host = host_from_nal(pkg_server)
    return PackageStatusRow(
        site=sys.intern((site or "").strip()),
        package_id=sys.intern(package_id.strip()),
        server=sys.intern(host),
        type=parse_type(type_),
        status=parse_status(status),
        personality=parse_personality(personality),
        update_time=parse_datetime(update_time),
        pkg_server=sys.intern(pkg_server),
    )
