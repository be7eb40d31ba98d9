"""The `dp_groups` collector: distribution point groups and their members, two classes in one collector.

ConfigMgr admins think in DP groups: content is assigned to a group, and the group is out of sync
while a package is not on every member. `SMS_DistributionPointGroup` gives each group's name and
counts, `SMS_DPGroupMembers` one row per (group, member DP). `server` of a member is the host of
its NAL path, read as `PkgServer` is, so that the membership joins every DP-level family on
`(target, server)`; `site` is the NAL path's `SMS_SITE=`, else the target's own site.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import NamedTuple

from exporter.collectors.spec import ClassRead, CollectorSpec
from exporter.families import Exposition, Family, PerRow, cached, escape_label_value, format_value, lines_piece
from exporter.rows import RowError, item_text, nal_host, parse_int, site_from_nal
from exporter.wmi import Item, Query

GROUP_CLASS = "SMS_DistributionPointGroup"
MEMBER_CLASS = "SMS_DPGroupMembers"
GROUPS = Query(GROUP_CLASS, ("GroupID", "Name", "MemberCount", "ContentCount", "OutOfSyncContentCount"))
MEMBERS = Query(MEMBER_CLASS, ("GroupID", "DPNALPath"))

INFO = Family(
    "sccm_dp_group_info",
    "gauge",
    "One series per distribution point group of SMS_DistributionPointGroup, value 1: its name "
    "(join on group_id to name the groups of the other families).",
)
MEMBER_COUNT = Family(
    "sccm_dp_group_members", "gauge", "SMS_DistributionPointGroup.MemberCount: distribution points in the group.",
)
PACKAGES = Family(
    "sccm_dp_group_packages", "gauge", "SMS_DistributionPointGroup.ContentCount: packages assigned to the group.",
)
OUT_OF_SYNC = Family(
    "sccm_dp_group_out_of_sync_packages",
    "gauge",
    "SMS_DistributionPointGroup.OutOfSyncContentCount: packages of the group not yet on every member.",
)
MEMBER = Family(
    "sccm_dp_group_member",
    "gauge",
    "One series per member distribution point of a group (SMS_DPGroupMembers), value 1.",
)
FAMILIES: tuple[Family, ...] = (INFO, MEMBER_COUNT, PACKAGES, OUT_OF_SYNC, MEMBER)


class GroupRow(NamedTuple):
    """One `SMS_DistributionPointGroup` instance, typed; None where a count is nil."""

    group_id: str
    name: str
    members: int | None = None
    packages: int | None = None
    out_of_sync: int | None = None


class MemberRow(NamedTuple):
    """One `SMS_DPGroupMembers` instance: a distribution point in a group."""

    group_id: str
    site: str
    server: str


def _group_id(item: Item) -> str:
    group_id = (item_text(item, "GroupID") or "").strip()
    if not group_id:
        raise RowError("GroupID is missing")
    return sys.intern(group_id)


def parse_group(item: Item, site: str) -> GroupRow:
    """The row of one group; the name is kept as the console shows it."""
    return GroupRow(
        group_id=_group_id(item),
        name=item_text(item, "Name") or "",
        members=parse_int("MemberCount", item_text(item, "MemberCount")),
        packages=parse_int("ContentCount", item_text(item, "ContentCount")),
        out_of_sync=parse_int("OutOfSyncContentCount", item_text(item, "OutOfSyncContentCount")),
    )


def parse_member(item: Item, site: str) -> MemberRow:
    """The row of one membership; `site` stands in where the NAL path names none."""
    server = nal_host(item, "DPNALPath")
    return MemberRow(group_id=_group_id(item), site=site_from_nal(item_text(item, "DPNALPath"), site), server=server)


class DPGroupsAggregate:
    """The groups of one poll by ID and their members; a repeated row keeps its last form."""

    def __init__(self, per_row: PerRow = "all") -> None:
        """`per_row` limits the per-row families of the large classes only: groups are all exported."""
        self._groups: dict[str, GroupRow] = {}
        self._members: dict[tuple[str, str, str], MemberRow] = {}

    @property
    def rows(self) -> int:
        return len(self._groups) + len(self._members)

    def add(self, rows: Iterable[GroupRow | MemberRow]) -> None:
        for row in rows:
            if isinstance(row, GroupRow):
                self._groups[row.group_id] = row
            else:
                self._members[(row.group_id, row.site, row.server)] = row

    def render(self, target: str, own_site: str | None) -> Exposition:
        esc = cached(escape_label_value)
        t = esc(target)
        info: list[str] = []
        counts: dict[str, list[str]] = {MEMBER_COUNT.name: [], PACKAGES.name: [], OUT_OF_SYNC.name: []}
        for row in self._groups.values():
            ids = f'{{target="{t}",group_id="{esc(row.group_id)}"'
            info.append(f'{INFO.name}{ids},name="{esc(row.name)}"}} 1\n')
            values = ((MEMBER_COUNT, row.members), (PACKAGES, row.packages), (OUT_OF_SYNC, row.out_of_sync))
            for family, value in values:
                if value is not None:
                    counts[family.name].append(f"{family.name}{ids}}} {format_value(value)}\n")
        members = [
            f'{MEMBER.name}{{target="{t}",site="{esc(row.site)}",server="{esc(row.server)}",'
            f'group_id="{esc(row.group_id)}"}} 1\n'
            for row in self._members.values()
        ]
        families = {INFO.name: lines_piece(info), **{name: lines_piece(lines) for name, lines in counts.items()},
                    MEMBER.name: lines_piece(members)}
        return Exposition.of(families, self.rows)


SPEC = CollectorSpec(
    "dp_groups", (ClassRead(GROUPS, parse_group), ClassRead(MEMBERS, parse_member)), FAMILIES, DPGroupsAggregate,
    default=True,
)
