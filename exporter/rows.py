"""Conversions of WMI property text every collector shares: numbers, booleans, NAL paths, datetimes.

A property's text reads the same whether it came over WS-Management, from a CSV or JSON export
or from the demo site, so that every source gives the same series. A value that does not
convert raises `RowError`, which names the field and the value (`exporter.wmi.row_error` then
names the row).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache


class RowError(ValueError):
    """A field of a row could not be understood; the message names the field and the value."""


def enum_label(value: int, names: dict[int, str]) -> str:
    """The label value of an enum: its name, or its number when it is outside the table."""
    return names.get(value) or str(value)


def parse_enum(field: str, text: str | None, by_name: dict[str, int]) -> int:
    """A WMI enum: its number, or a name from `by_name` (files written with names: `Installed`)."""
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


def item_text(item: Mapping[str, str | list[str | None] | None], name: str) -> str | None:
    """One property of an instance (`exporter.wmi.Item`): its text, or None when nil or absent."""
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
    kept exactly as written (case kept, not shortened), as docs/metrics.md says. A value with no
    recognisable host is returned stripped, so that nothing is lost. Memoised: a site names a few
    hundred servers over a million rows.
    """
    text = value.strip()
    for pattern in (_NAL_MSWNET, _NAL_DISPLAY, _UNC):
        match = pattern.search(text)
        if match:
            return match.group(1).strip()
    return text.strip("\\/")


def nal_host(item: Mapping[str, str | list[str | None] | None], path: str, fallback: str | None = None) -> str:
    """The host of an instance's NAL path property `path`, read as `PkgServer` is, else the text of
    its `fallback` property (a server name); RowError naming both when neither holds one."""
    nal = item_text(item, path) or ""
    host = host_from_nal(nal) if nal.strip() else ""
    if not host and fallback:
        host = (item_text(item, fallback) or "").strip()
    if not host:
        raise RowError(f"{path} and {fallback} are both missing" if fallback else f"{path} is missing")
    return sys.intern(host)


_NAL_SITE = re.compile(r"SMS_SITE=([A-Za-z0-9]+)")


def site_from_nal(value: str | None, default: str) -> str:
    """The site code in a NAL path (`MSWNET:["SMS_SITE=ABC"]...`), or `default` (the target's site)
    when it names none: for classes that have a NAL path but no SiteCode."""
    match = _NAL_SITE.search(value or "")
    return sys.intern(match.group(1)) if match else default


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
