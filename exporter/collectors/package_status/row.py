"""The `SMS_PackageStatus` row: the class, the properties read, and how an instance becomes a row.

Every source gives the same instance text (over WS-Management, from a CSV or JSON export, from
the demo site), and `parse_item` turns it into the same `PackageStatusRow`.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

from exporter.rows import RowError, host_from_nal, item_text, parse_datetime, parse_enum
from exporter.wmi import Item, Query

CLASS_NAME = "SMS_PackageStatus"
# The properties the families use: a property list costs ~400 bytes a row instead of ~720.
PROPERTIES = ("PackageID", "PkgServer", "Personality", "SiteCode", "Status", "Type", "UpdateTime")
# Read in PackageID slices at once (parallel_enumerations): the core table is the large one.
QUERY = Query(CLASS_NAME, PROPERTIES, slice_by="PackageID")


# Enum names as they appear in the `status`, `type` and `personality` labels (docs/metrics.md).
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


KNOWN_STATUSES: tuple[int, ...] = tuple(STATUS_NAMES)


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


def parse_status(text: str | None) -> int:
    return parse_enum("Status", text, _STATUS_BY_NAME)


def parse_type(text: str | None) -> int:
    return parse_enum("Type", text, _TYPE_BY_NAME)


def parse_personality(text: str | None) -> int:
    if text is None or not text.strip():
        return 0  # legacy property: absent means NONE
    return parse_enum("Personality", text, _PERSONALITY_BY_NAME)


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


def parse_item(item: Item, site: str) -> PackageStatusRow:
    """The row of one instance; `site` (the target's) stands in for a missing SiteCode."""
    return make_row(
        site=item_text(item, "SiteCode") or site,
        package_id=item_text(item, "PackageID"),
        pkg_server=item_text(item, "PkgServer"),
        type_=item_text(item, "Type"),
        status=item_text(item, "Status"),
        personality=item_text(item, "Personality"),
        update_time=item_text(item, "UpdateTime"),
    )
