"""The `dp_status` collector: the console's Distribution Point Configuration Status, from `SMS_DPStatusInfo`.

One instance per distribution point: the state the console shows it in (success, in progress,
error), how many packages it holds installed, in progress, in error or in an unknown state, when
it last reported, and whether the distribution point monitor watches it. The class has no
`SiteCode`: `site` is the `SMS_SITE=` of its NAL path, else the target's own site. `server` is
the host of `NALPath`, read as `PkgServer` is, so that every family joins the others on
`(target, server)`; `Name` stands in when the path holds no host.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import NamedTuple

from exporter.collectors.spec import ClassRead, CollectorSpec, LastRows
from exporter.families import Exposition, Family, cached, escape_label_value, format_value, lines_piece
from exporter.rows import (
    enum_label,
    item_text,
    nal_host,
    parse_bool,
    parse_datetime,
    parse_int,
    site_from_nal,
)
from exporter.wmi import Item, Query

CLASS_NAME = "SMS_DPStatusInfo"
PROPERTIES = (
    "NALPath", "Name", "MessageState", "LastStatusTime", "NumberErrors", "NumberInProgress", "NumberInstalled",
    "NumberUnknown", "IsDPMonEnabled",
)
QUERY = Query(CLASS_NAME, PROPERTIES)  # one enumeration: one instance per DP

# SMS_DPStatusInfo.MessageState as the `state` label; any other value as its number.
STATE_NAMES: dict[int, str] = {1: "success", 2: "in_progress", 3: "error"}
STATE_ERROR = 3
# The package counts, in the order of the `state` label of sccm_distribution_point_status_packages.
PACKAGE_STATES = ("installed", "in_progress", "error", "unknown")

STATUS = Family(
    "sccm_distribution_point_status",
    "gauge",
    "One series per distribution point of SMS_DPStatusInfo, value 1: the state the console's "
    "Distribution Point Configuration Status shows it in (MessageState: success, in_progress, error).",
)
PACKAGES = Family(
    "sccm_distribution_point_status_packages",
    "gauge",
    "Packages on the distribution point by state, from SMS_DPStatusInfo (NumberInstalled, NumberInProgress, "
    "NumberErrors, NumberUnknown); all four states are present per distribution point.",
)
LAST_STATUS = Family(
    "sccm_distribution_point_last_status_timestamp_seconds",
    "gauge",
    "SMS_DPStatusInfo.LastStatusTime as Unix seconds UTC: the distribution point's last status message; "
    "left out while it has none.",
)
MONITORED = Family(
    "sccm_distribution_point_monitored",
    "gauge",
    "1 if the distribution point monitor watches the distribution point (SMS_DPStatusInfo.IsDPMonEnabled), else 0.",
)
FAMILIES: tuple[Family, ...] = (STATUS, PACKAGES, LAST_STATUS, MONITORED)


class DPStatusRow(NamedTuple):
    """One `SMS_DPStatusInfo` instance, typed; `state` None while the DP has reported none."""

    site: str
    server: str
    state: int | None = None
    last_status: float | None = None  # Unix seconds UTC
    installed: int = 0
    in_progress: int = 0
    errors: int = 0
    unknown: int = 0
    monitored: bool = False


def parse_item(item: Item, site: str) -> DPStatusRow:
    """The row of one instance; `site` stands in where the NAL path names none."""
    return DPStatusRow(
        site=site_from_nal(item_text(item, "NALPath"), site),
        server=nal_host(item, "NALPath", "Name"),
        state=parse_int("MessageState", item_text(item, "MessageState")),
        last_status=parse_datetime(item_text(item, "LastStatusTime"), "LastStatusTime"),
        installed=parse_int("NumberInstalled", item_text(item, "NumberInstalled")) or 0,
        in_progress=parse_int("NumberInProgress", item_text(item, "NumberInProgress")) or 0,
        errors=parse_int("NumberErrors", item_text(item, "NumberErrors")) or 0,
        unknown=parse_int("NumberUnknown", item_text(item, "NumberUnknown")) or 0,
        monitored=parse_bool("IsDPMonEnabled", item_text(item, "IsDPMonEnabled")),
    )


class DPStatusAggregate(LastRows[DPStatusRow]):
    """The distribution points of one poll by (site, server); a repeated one keeps its last row."""

    @staticmethod
    def key(row: DPStatusRow) -> Hashable:
        return (row.site, row.server)

    def render(self, target: str, own_site: str | None) -> Exposition:
        esc = cached(escape_label_value)
        t = esc(target)
        status: list[str] = []
        packages: list[str] = []
        last: list[str] = []
        monitored: list[str] = []
        for row in self.kept.values():
            ids = f'{{target="{t}",site="{esc(row.site)}",server="{esc(row.server)}"'
            if row.state is not None:
                status.append(f'{STATUS.name}{ids},state="{esc(enum_label(row.state, STATE_NAMES))}"}} 1\n')
            counts = (row.installed, row.in_progress, row.errors, row.unknown)
            for state, count in zip(PACKAGE_STATES, counts, strict=True):
                packages.append(f'{PACKAGES.name}{ids},state="{state}"}} {count}\n')
            if row.last_status is not None:
                last.append(f"{LAST_STATUS.name}{ids}}} {format_value(row.last_status)}\n")
            monitored.append(f"{MONITORED.name}{ids}}} {int(row.monitored)}\n")
        families = {
            STATUS.name: lines_piece(status), PACKAGES.name: lines_piece(packages),
            LAST_STATUS.name: lines_piece(last), MONITORED.name: lines_piece(monitored),
        }
        return Exposition.of(families, self.rows)


SPEC = CollectorSpec("dp_status", (ClassRead(QUERY, parse_item),), FAMILIES, DPStatusAggregate, default=True)
