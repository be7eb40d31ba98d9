"""The `package_info` collector: names, versions and sizes of packages from `SMS_PackageBaseclass`.

`SMS_PackageStatus` names a package by its ID only; the console shows names. The abstract class
`SMS_PackageBaseclass` returns every kind of package (regular, driver, task sequence, software
update, application content, images...) in one enumeration. Only the properties below are asked
for: several others of the class are lazy and large (icons, the content XML of applications),
and a `SELECT *` would carry them. The class has no `SiteCode`: `site` is the target's own site.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable, Iterator
from typing import NamedTuple

from exporter.collectors.spec import ClassRead, CollectorSpec, LastRows
from exporter.families import Exposition, Family, cached, escape_label_value, format_value, lines_piece
from exporter.rows import RowError, enum_label, item_text, parse_datetime, parse_int
from exporter.wmi import Item, Query

CLASS_NAME = "SMS_PackageBaseclass"
PROPERTIES = ("PackageID", "Name", "Version", "PackageType", "SourceVersion", "SourceDate", "PackageSize")
QUERY = Query(CLASS_NAME, PROPERTIES)  # one enumeration: a site has a few thousand packages

# SMS_PackageBaseclass.PackageType as the `package_type` label; any other value as its number.
PACKAGE_TYPE_NAMES: dict[int, str] = {
    0: "regular",
    3: "driver",
    4: "task_sequence",
    5: "software_update",
    6: "device_setting",
    7: "virtual_app",
    8: "application",
    257: "image",
    258: "boot_image",
    259: "os_upgrade",
}

PACKAGE_INFO = Family(
    "sccm_package_info",
    "gauge",
    "One series per package of SMS_PackageBaseclass, value 1: its Name, Version and PackageType "
    "(join on package_id to name the packages of the other families).",
)
SOURCE_VERSION = Family(
    "sccm_package_source_version",
    "gauge",
    "SMS_PackageBaseclass.SourceVersion: the version of the package's content, raised by every "
    "update of its source.",
)
SIZE_BYTES = Family(
    "sccm_package_size_bytes",
    "gauge",
    "SMS_PackageBaseclass.PackageSize (reported in KB) in bytes: the size of the package's content.",
)
SOURCE_TIMESTAMP = Family(
    "sccm_package_source_timestamp_seconds",
    "gauge",
    "SMS_PackageBaseclass.SourceDate as Unix seconds UTC: when the package's source was last updated.",
)
FAMILIES: tuple[Family, ...] = (PACKAGE_INFO, SOURCE_VERSION, SIZE_BYTES, SOURCE_TIMESTAMP)


class PackageInfoRow(NamedTuple):
    """One `SMS_PackageBaseclass` instance, typed; None where the property is nil."""

    package_id: str
    name: str
    version: str
    package_type: int
    source_version: int | None = None
    source_date: float | None = None  # Unix seconds UTC
    size_bytes: int | None = None  # PackageSize is in KB; this is bytes


def parse_item(item: Item, site: str = "") -> PackageInfoRow:
    """The row of one instance; RowError names what is wrong. The class has no SiteCode: the
    families take the target's own site, so `site` is not needed here."""
    package_id = (item_text(item, "PackageID") or "").strip()
    if not package_id:
        raise RowError("PackageID is missing")
    package_type = parse_int("PackageType", item_text(item, "PackageType"))
    if package_type is None:
        raise RowError("PackageType is missing")
    size_kb = parse_int("PackageSize", item_text(item, "PackageSize"))
    return PackageInfoRow(
        package_id=sys.intern(package_id),
        name=item_text(item, "Name") or "",
        version=item_text(item, "Version") or "",
        package_type=package_type,
        source_version=parse_int("SourceVersion", item_text(item, "SourceVersion")),
        source_date=parse_datetime(item_text(item, "SourceDate"), "SourceDate"),
        size_bytes=None if size_kb is None else size_kb * 1024,
    )


class PackageInfoAggregate(LastRows[PackageInfoRow]):
    """The packages of one poll by ID (a site has a few thousand); a repeated ID keeps its last row."""

    @staticmethod
    def key(row: PackageInfoRow) -> Hashable:
        return row.package_id

    def render(self, target: str, own_site: str | None) -> Exposition:
        esc = cached(escape_label_value)
        head = f'{{target="{esc(target)}",site="{esc(own_site or "")}",package_id="'
        packages = [(f'{head}{esc(row.package_id)}"', row) for row in self.kept.values()]

        def values(family: Family, field: str) -> Iterator[str]:
            for ids, row in packages:
                value = getattr(row, field)
                if value is not None:
                    yield f"{family.name}{ids}}} {format_value(value)}\n"

        info = (
            f'{PACKAGE_INFO.name}{ids},name="{esc(row.name)}",version="{esc(row.version)}",'
            f'package_type="{esc(enum_label(row.package_type, PACKAGE_TYPE_NAMES))}"}} 1\n'
            for ids, row in packages
        )
        families = {
            PACKAGE_INFO.name: lines_piece(info),
            SOURCE_VERSION.name: lines_piece(values(SOURCE_VERSION, "source_version")),
            SIZE_BYTES.name: lines_piece(values(SIZE_BYTES, "size_bytes")),
            SOURCE_TIMESTAMP.name: lines_piece(values(SOURCE_TIMESTAMP, "source_date")),
        }
        return Exposition.of(families, self.rows)


SPEC = CollectorSpec("package_info", (ClassRead(QUERY, parse_item),), FAMILIES, PackageInfoAggregate, default=True)
