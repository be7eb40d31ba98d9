"""The `dp_info` collector: what each distribution point is, from `SMS_DistributionPointInfo`.

One instance per distribution point of the hierarchy the provider sees (tens to a few thousand):
whether it is a pull DP, answers PXE, does multicast or faces the internet, and in how many
distribution point groups it is. `server` is the host of `NALPath`, read as `PkgServer` is read
for `sccm_package_status`, so that the two join on it; `ServerName` stands in when the path holds
no host.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable
from typing import NamedTuple

from exporter.collectors.spec import ClassRead, CollectorSpec, LastRows
from exporter.families import Exposition, Family, cached, escape_label_value, format_value, lines_piece
from exporter.rows import item_text, nal_host, parse_bool, parse_int
from exporter.wmi import Item, Query

CLASS_NAME = "SMS_DistributionPointInfo"
PROPERTIES = ("NALPath", "ServerName", "SiteCode", "IsPullDP", "IsPXE", "IsMulticast", "InternetFacing", "GroupCount")
QUERY = Query(CLASS_NAME, PROPERTIES)  # one enumeration: a few thousand DPs at most

DP_INFO = Family(
    "sccm_distribution_point_info",
    "gauge",
    "One series per distribution point of SMS_DistributionPointInfo, value 1: whether it is a pull DP "
    "(IsPullDP), answers PXE (IsPXE), does multicast (IsMulticast) and faces the internet (InternetFacing).",
)
DP_GROUPS = Family(
    "sccm_distribution_point_groups",
    "gauge",
    "SMS_DistributionPointInfo.GroupCount: the distribution point groups the distribution point is in.",
)
FAMILIES: tuple[Family, ...] = (DP_INFO, DP_GROUPS)


class DPInfoRow(NamedTuple):
    """One `SMS_DistributionPointInfo` instance, typed."""

    site: str
    server: str
    pull: bool = False
    pxe: bool = False
    multicast: bool = False
    internet_facing: bool = False
    groups: int | None = None


def parse_item(item: Item, site: str) -> DPInfoRow:
    """The row of one instance; `site` stands in for a missing SiteCode."""
    return DPInfoRow(
        site=sys.intern((item_text(item, "SiteCode") or "").strip() or site),
        server=nal_host(item, "NALPath", "ServerName"),
        pull=parse_bool("IsPullDP", item_text(item, "IsPullDP")),
        pxe=parse_bool("IsPXE", item_text(item, "IsPXE")),
        multicast=parse_bool("IsMulticast", item_text(item, "IsMulticast")),
        internet_facing=parse_bool("InternetFacing", item_text(item, "InternetFacing")),
        groups=parse_int("GroupCount", item_text(item, "GroupCount")),
    )


def _flag(value: bool) -> str:
    return "true" if value else "false"


class DPInfoAggregate(LastRows[DPInfoRow]):
    """The distribution points of one poll by (site, server); a repeated one keeps its last row."""

    @staticmethod
    def key(row: DPInfoRow) -> Hashable:
        return (row.site, row.server)

    def render(self, target: str, own_site: str | None) -> Exposition:
        esc = cached(escape_label_value)
        t = esc(target)
        info: list[str] = []
        groups: list[str] = []
        for row in self.kept.values():
            ids = f'{{target="{t}",site="{esc(row.site)}",server="{esc(row.server)}"'
            info.append(
                f'{DP_INFO.name}{ids},pull="{_flag(row.pull)}",pxe="{_flag(row.pxe)}",'
                f'multicast="{_flag(row.multicast)}",internet_facing="{_flag(row.internet_facing)}"}} 1\n'
            )
            if row.groups is not None:
                groups.append(f"{DP_GROUPS.name}{ids}}} {format_value(row.groups)}\n")
        families = {DP_INFO.name: lines_piece(info), DP_GROUPS.name: lines_piece(groups)}
        return Exposition.of(families, self.rows)


SPEC = CollectorSpec("dp_info", (ClassRead(QUERY, parse_item),), FAMILIES, DPInfoAggregate, default=True)
