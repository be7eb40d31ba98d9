"""The `package_status` collector, the core one: `SMS_PackageStatus` -> the families `sccm_up` follows.

`row` says what an instance is, `pages` reads a million of them from Windows' replies fast, and
`aggregate` counts them into the families; `SPEC` puts them together.
"""

from __future__ import annotations

from exporter.collectors.package_status.aggregate import FAMILIES, PackageStatusAggregate
from exporter.collectors.package_status.pages import PageReader
from exporter.collectors.package_status.row import QUERY, parse_item
from exporter.collectors.spec import ClassRead, CollectorSpec

SPEC = CollectorSpec(
    "package_status",
    (ClassRead(QUERY, parse_item, wire_reader=PageReader),),
    FAMILIES,
    PackageStatusAggregate,
    default=True,
    core=True,
)
