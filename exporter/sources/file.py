"""`SMS_PackageStatus` instances from a file written on the Windows side by `Export-Csv` or `ConvertTo-Json`.

For sites the exporter cannot reach over WinRM: a scheduled task on a Windows host runs
`Get-WmiObject`/`Get-CimInstance -ClassName SMS_PackageStatus` and writes the result to a share;
this source reads that file on every poll. The file is read whole and then parsed, so a file
replaced between polls is seen either old or new; a file caught half-written fails to parse and
the poll fails (the last good rows are kept), which is why one bad row fails the whole poll:
serving a partial table would show packages vanishing from distribution points.

The formats are those Windows PowerShell 5.1 and PowerShell 7 write by default: UTF-8 with or
without a BOM, or UTF-16 LE with a BOM; CRLF line ends; CSV with an optional `#TYPE` line and
every field quoted; JSON as an array of objects or a single object. Property names match
case-insensitively and unknown ones (`__PATH`, `CimClass`, `PSComputerName`...) are ignored.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal

from exporter.collectors.package_status.row import CLASS_NAME
from exporter.config import TargetConfig
from exporter.errors import PollError
from exporter.rows import RowError, item_text
from exporter.wmi import Item, ItemsPage, Page, Query, row_error

Format = Literal["csv", "json"]

# The properties a row is built from, by their lower-cased names; `SiteCode`, `Personality` and
# `UpdateTime` may be left out. `Location` and `ShareName` are read by nobody, so not looked up.
_REQUIRED = ("packageid", "pkgserver", "status", "type")
_NAMES = {
    "packageid": "PackageID",
    "pkgserver": "PkgServer",
    "status": "Status",
    "type": "Type",
    "sitecode": "SiteCode",
    "personality": "Personality",
    "updatetime": "UpdateTime",
}

# `_Fields` order, for reading a CSV record positionally.
_FIELD_ORDER = ("sitecode", "packageid", "pkgserver", "type", "status", "personality", "updatetime")

# How often, in rows, a long parse looks at the deadline. A file read is quick; this only keeps
# a runaway file (a million rows on a slow disk) from overrunning the poll by much.
_DEADLINE_EVERY = 10_000


@dataclass(slots=True)  # not frozen: built for every row and dropped at once, and faster so
class _Fields:
    """The text of the properties of one row, whatever the file format."""

    site: str | None
    package_id: str | None
    pkg_server: str | None
    type_: str | None
    status: str | None
    personality: str | None
    update_time: str | None


class FileSource:
    """A `Source` of `SMS_PackageStatus` reading `target.path` (`.csv` or `.json`; other names are sniffed)."""

    def __init__(self, target: TargetConfig) -> None:
        if not target.path:
            raise ValueError(f"target {target.name!r}: source file needs a path")
        self._path = Path(target.path)
        self._configured_site = target.site_code
        # The site code the last good poll's rows agreed on; the only state this source keeps.
        self._rows_site: str | None = None

    def read(self, query: Query, deadline: float) -> Iterator[Page]:
        """The file's instances, as one page; the file is read whole first, so that a record that
        does not read fails the poll before the collector has seen any of it."""
        if query.class_name != CLASS_NAME:
            # The configuration refuses other collectors on a file target; reaching here is a bug.
            raise PollError("other", f"the file source reads {CLASS_NAME} only, not {query.class_name}")
        records = read_items(self._path, deadline, default_site=self._configured_site)
        sites = {(item_text(item, "SiteCode") or "").strip() for _, item in records}
        self._rows_site = sites.pop() if len(sites) == 1 else None
        wheres = [where for where, _ in records]
        yield ItemsPage([item for _, item in records], lambda index: f"{self._path} {wheres[index]}")

    def site_code(self) -> str | None:
        return self._rows_site or self._configured_site

    def close(self) -> None:
        """Nothing to drop: the file is opened and closed within each poll."""


def read_items(path: Path, deadline: float, *, default_site: str | None = None) -> list[tuple[str, Item]]:
    """(where, instance) of every record of the file at `path`, or PollError: `other` when it
    cannot be read, `parse` when its content is not understood (the message names the line or
    object and the field). `where` names the record (`line 5`, `object at index 3`).

    `default_site` stands in for a missing or empty `SiteCode`.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PollError("other", f"{path}: file not found") from None
    except OSError as exc:
        raise PollError("other", f"{path}: cannot read the file: {exc.strerror or exc}") from None
    text = decode(data, path)
    if not text or text.isspace():
        # An empty file is far more often one being rewritten in place than a site without a
        # single package (every site holds the client package): fail rather than empty the table.
        raise PollError("parse", f"{path}: file is empty")
    fmt = detect_format(path, text)
    records = _csv_records(text, path) if fmt == "csv" else _json_records(text, path)
    items: list[tuple[str, Item]] = []
    for where, fields in records:
        if len(items) % _DEADLINE_EVERY == 0 and time.monotonic() > deadline:
            raise PollError("timeout", f"{path}: deadline passed after {len(items)} rows")
        try:
            items.append((where, _item(fields, default_site)))
        except RowError as exc:
            raise row_error(f"{path} {where}", exc) from None
    return items


# --- bytes to text ---------------------------------------------------------------------------


def decode(data: bytes, path: Path) -> str:
    """The text of the file: the BOM decides (UTF-8 or UTF-16), else UTF-8.

    PowerShell always writes a BOM with UTF-16 (`-Encoding Unicode`, PS 5.1 `Out-File` and `>`),
    so text without one is read as UTF-8, strictly: guessing an ANSI code page would turn a
    corrupt file into wrong rows instead of a parse error.
    """
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            return data.decode("utf-16")  # the BOM gives the byte order and is dropped
        return data.decode("utf-8-sig")  # drops a UTF-8 BOM when there is one
    except UnicodeDecodeError as exc:
        raise PollError("parse", f"{path}: not UTF-8 or UTF-16 with a BOM (bad byte at offset {exc.start})") from None


def detect_format(path: Path, text: str) -> Format:
    """`.csv` and `.json` by name; anything else by its first character (`[` or `{` is JSON)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix == ".json":
        return "json"
    return "json" if text.lstrip()[:1] in ("[", "{") else "csv"


def _item(fields: _Fields, default_site: str | None) -> Item:
    """The instance as a provider would send it: the culture's datetime rewritten, the site filled in."""
    return {
        "PackageID": fields.package_id,
        "PkgServer": fields.pkg_server,
        "Personality": fields.personality,
        "SiteCode": fields.site if fields.site and fields.site.strip() else default_site,
        "Status": fields.status,
        "Type": fields.type_,
        "UpdateTime": culture_datetime_as_iso(fields.update_time),
    }


# --- Get-CimInstance datetimes in CSV --------------------------------------------------------
# Export-Csv writes a CIM DateTime with the exporting host's culture and no offset. Only forms
# that read one way are accepted; `01/05/2024 10:22:33` (en-GB 1 May, or en-US with a 24-hour
# override 5 January) is refused rather than guessed.

_EN_US = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2}):(\d{2}) ?([AP]M)$", re.IGNORECASE)
_YEAR_FIRST = re.compile(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2}) (\d{1,2}):(\d{2}):(\d{2})$")
_DAY_DOT_MONTH = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4}) (\d{1,2}):(\d{2}):(\d{2})$")
_SLASHES_24H = re.compile(r"^\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}:\d{2}$")


def culture_datetime_as_iso(text: str | None) -> str | None:
    """A culture-formatted `UpdateTime` rewritten as xs:dateTime without offset, which
    `parse_datetime` reads as UTC; any other text is returned unchanged for it to judge.

    Accepted: en-US `5/1/2024 10:22:33 AM` (slashes with AM/PM are month first), year first
    `2024-05-01 10:22:33` or `2024/05/01 10:22:33` (sv-SE, ja-JP, zh-CN) and day first with dots
    `01.05.2024 10:22:33` (de-DE, ru-RU, ...). The time is the Windows host's local time: read
    as UTC, it is off by the host's offset, so export with Get-WmiObject (DMTF, with offset)
    where the exact time matters.
    """
    if text is None:
        return None
    value = text.strip()
    if " " not in value:
        return text  # DMTF, xs:dateTime, /Date()/: every culture form has a space before the time
    if match := _EN_US.match(value):
        month, day, year, hour, minute, second, half = match.groups()
        return _iso(year, month, day, _hour_24(int(hour), half.upper(), value), minute, second)
    if match := _YEAR_FIRST.match(value):
        year, month, day, hour, minute, second = match.groups()
        return _iso(year, month, day, int(hour), minute, second)
    if match := _DAY_DOT_MONTH.match(value):
        day, month, year, hour, minute, second = match.groups()
        return _iso(year, month, day, int(hour), minute, second)
    if _SLASHES_24H.match(value):
        raise RowError(
            f"UpdateTime {value!r} may be day/month or month/day depending on the exporting "
            "host's culture; export with Get-WmiObject or ConvertTo-Json, or format UpdateTime "
            "as yyyy-MM-dd HH:mm:ss"
        )
    return text


def _hour_24(hour: int, half: str, value: str) -> int:
    if not 1 <= hour <= 12:
        raise RowError(f"UpdateTime {value!r}: hour {hour} with {half}")
    return hour % 12 + (12 if half == "PM" else 0)


def _iso(year: str, month: str, day: str, hour: int, minute: str, second: str) -> str:
    # Ranges (month 13, hour 25) are left to parse_datetime, which names the value.
    return f"{int(year):04d}-{int(month):02d}-{int(day):02d}T{hour:02d}:{minute}:{second}"


# --- CSV -------------------------------------------------------------------------------------


def _csv_records(text: str, path: Path) -> Iterator[tuple[str, _Fields]]:
    """(`line N`, fields) per data row; N is the file's line number where the row ends."""
    stream = io.StringIO(text, newline="")
    skipped = 0
    if text.startswith("#"):
        # `#TYPE System.Management.ManagementObject#root\SMS\...`: PS 5.1 without
        # -NoTypeInformation. Read past rather than parsed, as it is not CSV.
        stream.readline()
        skipped = 1
    reader = csv.reader(stream, delimiter=_delimiter(text, stream.tell()), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise PollError("parse", f"{path}: no CSV header row")
        fields_of = _columns(header, path, f"line {reader.line_num + skipped}")
        for record in reader:
            where = f"line {reader.line_num + skipped}"
            if not record:
                continue  # a blank line, as at the end of some files
            if len(record) != len(header):
                raise PollError("parse", f"{path} {where}: {len(record)} fields where the header has {len(header)}")
            record.append("")
            yield where, _Fields(*fields_of(record))
    except csv.Error as exc:
        raise PollError("parse", f"{path} line {reader.line_num + skipped}: bad CSV: {exc}") from None


def _delimiter(text: str, start: int) -> str:
    """The field separator: `,` by default, `;` from `Export-Csv -UseCulture` on a German host.

    PowerShell quotes every header field, so the character after the first closing quote is the
    separator; an unquoted header (PS 7 `-UseQuotes Never`) falls back to the most common one.
    `start` is where the header line begins; slicing only that line keeps a large file uncopied.
    """
    end = text.find("\n", start)
    header = text[start:] if end == -1 else text[start:end]
    if header.startswith('"'):
        close = header.find('"', 1)
        if close != -1 and close + 1 < len(header) and header[close + 1] in ",;\t":
            return header[close + 1]
    return max(",;\t", key=header.count)


def _columns(header: list[str], path: Path, where: str) -> Callable[[list[str]], tuple[str, ...]]:
    """A getter of the needed fields of a record, in `_Fields` order; PollError when a required
    column is missing. A missing optional column reads as the empty string appended to every
    record, which `make_row` takes as absent (no SiteCode, Personality NONE, nil UpdateTime)."""
    index: dict[str, int] = {}
    for i, name in enumerate(header):
        index.setdefault(name.strip().lower(), i)
    missing = [_NAMES[name] for name in _REQUIRED if name not in index]
    if missing:
        shown = ", ".join(header)[:200]
        raise PollError("parse", f"{path} {where}: header lacks {', '.join(missing)} (has: {shown})")
    absent = len(header)  # the appended empty string
    return itemgetter(*(index.get(name, absent) for name in _FIELD_ORDER))


# --- JSON ------------------------------------------------------------------------------------


def _json_records(text: str, path: Path) -> Iterator[tuple[str, _Fields]]:
    """(`object at index N`, fields) per object of the array (or the one object)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PollError("parse", f"{path}: not valid JSON: {exc}") from None
    for index, item in enumerate(_json_items(document, path)):
        where = f"object at index {index}"
        if not isinstance(item, dict):
            raise PollError("parse", f"{path} {where}: not a JSON object but {type(item).__name__}")
        by_name = {str(key).lower(): value for key, value in item.items()}
        yield where, _json_fields(by_name, where, path)


def _json_items(document: Any, path: Path) -> list[Any]:
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        lowered = {str(key).lower(): value for key, value in document.items()}
        # Windows PowerShell 5.1 writes `ConvertTo-Json -InputObject $array` as
        # {"value": [...], "Count": n} (an ETS property on System.Array); unwrap it.
        if lowered.keys() == {"value", "count"} and isinstance(lowered["value"], list):
            return list(lowered["value"])
        return [document]  # one object: one row
    raise PollError("parse", f"{path}: expected a JSON array or object, not {type(document).__name__}")


def _json_fields(item: Mapping[str, Any], where: str, path: Path) -> _Fields:
    def text(name: str) -> str | None:
        return _json_text(item.get(name), name, where, path)

    update_time = item.get("updatetime")
    if isinstance(update_time, dict):
        # PS 5.1 with a DateTime carrying ETS properties:
        # {"value": "\/Date(ms)\/", "DisplayHint": 2, "DateTime": "Wednesday, May 1, 2024 ..."}
        update_time = {str(key).lower(): value for key, value in update_time.items()}.get("value")
    return _Fields(
        site=text("sitecode"),
        package_id=text("packageid"),
        pkg_server=text("pkgserver"),
        type_=text("type"),
        status=text("status"),
        personality=text("personality"),
        update_time=_json_text(update_time, "updatetime", where, path),
    )


def _json_text(value: Any, name: str, where: str, path: Path) -> str | None:
    """A property as the text `make_row` reads: strings as they are, integers (enums) as digits."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    shown = json.dumps(value)[:40]
    raise PollError("parse", f"{path} {where}: {_NAMES[name]} is neither a string nor an integer: {shown}")
