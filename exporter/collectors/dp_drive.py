"""The `dp_drive` collector: the drives of each distribution point, from `SMS_DistributionPointDriveInfo`.

A content library on a full drive is the usual reason content stops arriving on a DP. The class
gives sizes in kilobytes whatever its property names say (`BytesFree`, `BytesTotal`); they are
exported in bytes. A negative `BytesTotal` means the size is unknown: neither series of that drive
is exported, rather than a free share nobody can compute. `server` is the host of `NALPath`, read
as `PkgServer` is; `site` is `SiteCode`, else the NAL path's `SMS_SITE=`, else the target's site.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable
from typing import NamedTuple

from exporter.collectors.spec import ClassRead, CollectorSpec, LastRows
from exporter.families import Exposition, Family, cached, escape_label_value, format_value, lines_piece
from exporter.rows import RowError, item_text, nal_host, parse_int, site_from_nal
from exporter.wmi import Item, Query

CLASS_NAME = "SMS_DistributionPointDriveInfo"
# What the families use; PercentFree is derived from these, Status (a copy error code) is not exported.
PROPERTIES = ("NALPath", "SiteCode", "Drive", "BytesFree", "BytesTotal")
QUERY = Query(CLASS_NAME, PROPERTIES)  # one enumeration: a few drives per DP

FREE = Family(
    "sccm_distribution_point_drive_free_bytes",
    "gauge",
    "Free space of the distribution point's drive in bytes (SMS_DistributionPointDriveInfo.BytesFree, "
    "reported in KB); drives of unknown size are left out.",
)
SIZE = Family(
    "sccm_distribution_point_drive_size_bytes",
    "gauge",
    "Size of the distribution point's drive in bytes (SMS_DistributionPointDriveInfo.BytesTotal, reported "
    "in KB); drives of unknown size (negative BytesTotal) are left out.",
)
FAMILIES: tuple[Family, ...] = (FREE, SIZE)


class DriveRow(NamedTuple):
    """One `SMS_DistributionPointDriveInfo` instance, typed; sizes in KB as the class gives them."""

    site: str
    server: str
    drive: str
    free_kb: int | None = None
    total_kb: int | None = None

    @property
    def known(self) -> bool:
        """Whether the drive's size is known (the class says unknown with a negative total)."""
        return self.total_kb is not None and self.total_kb >= 0 and self.free_kb is not None


def parse_item(item: Item, site: str) -> DriveRow:
    """The row of one instance; `site` stands in where neither SiteCode nor the NAL path names one."""
    server = nal_host(item, "NALPath")
    drive = (item_text(item, "Drive") or "").strip()
    if not drive:
        raise RowError("Drive is missing")
    return DriveRow(
        site=sys.intern((item_text(item, "SiteCode") or "").strip() or site_from_nal(item_text(item, "NALPath"), site)),
        server=server,
        drive=drive,
        free_kb=parse_int("BytesFree", item_text(item, "BytesFree")),
        total_kb=parse_int("BytesTotal", item_text(item, "BytesTotal")),
    )


class DriveAggregate(LastRows[DriveRow]):
    """The drives of one poll by (site, server, drive); a repeated one keeps its last row."""

    @staticmethod
    def key(row: DriveRow) -> Hashable:
        return (row.site, row.server, row.drive)

    def render(self, target: str, own_site: str | None) -> Exposition:
        esc = cached(escape_label_value)
        t = esc(target)
        free: list[str] = []
        size: list[str] = []
        for row in self.kept.values():
            if not row.known:
                continue
            ids = f'{{target="{t}",site="{esc(row.site)}",server="{esc(row.server)}",drive="{esc(row.drive)}"}}'
            free.append(f"{FREE.name}{ids} {format_value((row.free_kb or 0) * 1024)}\n")
            size.append(f"{SIZE.name}{ids} {format_value((row.total_kb or 0) * 1024)}\n")
        return Exposition.of({FREE.name: lines_piece(free), SIZE.name: lines_piece(size)}, self.rows)


SPEC = CollectorSpec("dp_drive", (ClassRead(QUERY, parse_item),), FAMILIES, DriveAggregate, default=True)
