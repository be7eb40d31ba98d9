"""What the exporter must serve for a data set of tests/datasets.py, computed from the rows themselves.

Used by the end-to-end tests of every source fed with the same data set (WinRM, file), so that
they are checked against one independent reading of the data, not against the exporter's parsers.

`check_target` checks the `package_status` families; `check_package_info`, `check_dp_content_state`
and `check_dp_info` the optional collectors' (docs/metrics.md), each comparing
the whole family of that target for exact equality (timestamps to a microsecond);
`check_dp_status`, `check_dp_drive`, `check_dp_groups` the DP collectors';
`check_collectors` runs them on a site's classes and checks that disabled collectors serve
nothing.  `got` is what `conftest.parse_samples` returns (label values unescaped).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from conftest import Labels, Samples, labels
from datasets import (
    DP_CONTENT_SUMMARIZER,
    DP_DRIVE,
    DP_GROUP,
    DP_GROUP_MEMBERS,
    DP_INFO,
    DP_STATUS,
    PACKAGE_BASECLASS,
    THREE_SITES,
    Row,
    dp_host,
    site_server,
)

STATUS = {0: "none", 1: "sent", 2: "received", 3: "installed", 4: "retry", 5: "failed", 6: "removed",
          7: "pending_remove"}
TYPE = {1: "master", 2: "copy"}
PERSONALITY = {0: "none", 1: "mac", 2: "fpnw"}


def host_of(row: Row) -> str:
    """The host a row names, found among the data set's known hosts (not by the exporter's parser)."""
    site = row["SiteCode"]
    servers = next(count for code, _, count, _ in THREE_SITES if code == site)
    known = [site_server(site)] + [dp_host(site, i) for i in range(1, servers + 1)]
    value = row["PkgServer"]
    (host,) = [h for h in known if value == h or f"\\\\{h}\\" in value]
    return host


def expected_series(rows: list[Row], target: str) -> dict[Labels, Row]:
    return {
        labels(target=target, site=r["SiteCode"], package_id=r["PackageID"], server=host_of(r),
               type=TYPE[r["Type"]], status=STATUS.get(r["Status"], str(r["Status"])),
               personality=PERSONALITY[r["Personality"]]): r
        for r in rows
    }


def of_target(family: dict[Labels, float], target: str) -> dict[Any, float]:
    return {k: v for k, v in family.items() if dict(k)["target"] == target}


def check_target(got: Samples, target: str, site: str, rows: list[Row]) -> None:
    expected = expected_series(rows, target)
    assert len(expected) == len(rows)  # the data set has no duplicate keys
    assert of_target(got["sccm_package_status"], target) == dict.fromkeys(expected, 1.0)
    stamps = of_target(got["sccm_package_status_update_timestamp_seconds"], target)
    timed = {k: r["UpdateTime"].timestamp() for k, r in expected.items() if r["UpdateTime"] is not None}
    assert stamps.keys() == timed.keys()
    assert all(stamps[k] == pytest.approx(v, abs=1e-6) for k, v in timed.items())

    by_status = Counter((TYPE[r["Type"]], STATUS.get(r["Status"], str(r["Status"]))) for r in rows)
    counts = of_target(got["sccm_package_status_rows"], target)
    for type_name in ("master", "copy"):
        for status in STATUS.values():  # complete: every known status, zeros included
            key = labels(target=target, site=site, type=type_name, status=status)
            assert counts[key] == by_status[(type_name, status)]
    assert counts[labels(target=target, site=site, type="copy", status="9")] == by_status[("copy", "9")] > 0
    assert sum(counts.values()) == len(rows)

    copies = [r for r in rows if r["Type"] == 2]
    per_server = of_target(got["sccm_server_package_status_rows"], target)
    assert sum(per_server.values()) == len(copies)
    dp = dp_host(site, 1)
    dp_failed = sum(1 for r in copies if host_of(r) == dp and r["Status"] == 5)
    assert per_server[labels(target=target, site=site, server=dp, status="failed")] == dp_failed

    holders = of_target(got["sccm_package_status_servers"], target)
    failing = next(r for r in copies if r["Status"] == 5)
    servers = {host_of(r) for r in copies if r["PackageID"] == failing["PackageID"] and r["Status"] == 5}
    assert holders[labels(target=target, site=site, package_id=failing["PackageID"], status="failed")] == len(servers)
    assert len({dict(k)["package_id"] for k in holders}) == len({r["PackageID"] for r in rows})


# --------------------------------------------------------------------------- optional collectors

PACKAGE_TYPE = {0: "regular", 3: "driver", 4: "task_sequence", 5: "software_update", 6: "device_setting",
                7: "virtual_app", 8: "application", 257: "image", 258: "boot_image", 259: "os_upgrade"}
DP_STATE = {0: "installed", 1: "install_pending", 2: "install_retrying", 3: "install_failed",
            4: "removal_pending", 5: "removal_retrying", 6: "removal_failed", 7: "content_updating",
            8: "content_monitoring"}
PER_ROW = ("all", "not_installed", "none")
COLLECTOR_FAMILIES: dict[str, tuple[str, ...]] = {
    "package_info": ("sccm_package_info", "sccm_package_source_version", "sccm_package_size_bytes",
                     "sccm_package_source_timestamp_seconds"),
    "dp_content_state": ("sccm_dp_content_state", "sccm_dp_content_state_packages",
                         "sccm_dp_content_last_copied_timestamp_seconds"),
    "dp_info": ("sccm_distribution_point_info", "sccm_distribution_point_groups"),
    "dp_status": ("sccm_distribution_point_status", "sccm_distribution_point_status_packages",
                  "sccm_distribution_point_last_status_timestamp_seconds", "sccm_distribution_point_monitored"),
    "dp_drive": ("sccm_distribution_point_drive_free_bytes", "sccm_distribution_point_drive_size_bytes"),
    "dp_groups": ("sccm_dp_group_info", "sccm_dp_group_members", "sccm_dp_group_packages",
                  "sccm_dp_group_out_of_sync_packages", "sccm_dp_group_member"),
}
DEFAULT_COLLECTORS = ("package_info", "dp_info", "dp_status", "dp_drive", "dp_groups")
MESSAGE_STATE = {1: "success", 2: "in_progress", 3: "error"}
# The site code a NAL path names (what tests/datasets.py writes).
_NAL_SITE = re.compile(r"SMS_SITE=([A-Za-z0-9]+)")
# The host in `\\host\` at the end of a NAL or UNC path (what tests/datasets.py writes).
_TRAILING_HOST = re.compile(r"\\\\([^\\]+)\\?$")


def enum_text(value: int, names: Mapping[int, str]) -> str:
    return names.get(value, str(value))


def path_host(value: str | None) -> str:
    """The host of a NAL path, a UNC path or a bare host name, as written ("" for none)."""
    text = (value or "").strip()
    if not text:
        return ""
    match = _TRAILING_HOST.search(text)
    if match:
        return match.group(1)
    return "" if "\\" in text else text


def family_of(got: Samples, name: str, target: str) -> dict[Any, float]:
    """One family's series of one target; {} when the family is absent altogether."""
    return of_target(got.get(name, {}), target)


def _assert_timestamps(got: dict[Any, float], expected: dict[Labels, float], name: str) -> None:
    assert got.keys() == expected.keys(), (name, sorted(set(got) ^ set(expected))[:5])
    wrong = {k: (got[k], v) for k, v in expected.items() if got[k] != pytest.approx(v, abs=1e-6)}
    assert not wrong, (name, list(wrong.items())[:5])


def check_package_info(got: Samples, target: str, site: str, rows: list[Row]) -> None:
    """The package_info families of `target` are exactly those of `rows` (SMS_PackageBaseclass).

    `site` is the target's own site code: the class has no SiteCode.
    """
    assert len({r["PackageID"] for r in rows}) == len(rows)  # the data set has no duplicate IDs

    def ids(r: Row) -> Labels:
        return labels(target=target, site=site, package_id=r["PackageID"])

    info = {
        labels(target=target, site=site, package_id=r["PackageID"], name=r["Name"] or "",
               version=r["Version"] or "", package_type=enum_text(r["PackageType"], PACKAGE_TYPE)): 1.0
        for r in rows
    }
    assert family_of(got, "sccm_package_info", target) == info
    versions = {ids(r): float(r["SourceVersion"]) for r in rows if r["SourceVersion"] is not None}
    assert family_of(got, "sccm_package_source_version", target) == versions
    sizes = {ids(r): float(r["PackageSize"] * 1024) for r in rows if r["PackageSize"] is not None}
    assert family_of(got, "sccm_package_size_bytes", target) == sizes
    dates = {ids(r): r["SourceDate"].timestamp() for r in rows if r["SourceDate"] is not None}
    name = "sccm_package_source_timestamp_seconds"
    _assert_timestamps(family_of(got, name, target), dates, name)


def check_dp_content_state(got: Samples, target: str, site: str, rows: list[Row], per_row: str = "all") -> None:
    """The dp_content_state families of `target` are exactly those of `rows`
    (SMS_PackageStatusDistPointsSummarizer) under the `per_row` setting.

    Per-row families (`sccm_dp_content_state`, `..._last_copied_timestamp_seconds`): every row for
    `all`, rows whose State is not 0 (installed) for `not_installed`, none for `none`. The counts
    per DP and state are complete whatever `per_row` says: every known state of every DP seen,
    0 where none, plus the unknown states that occur. `site` stands in for a missing SiteCode.
    """
    assert per_row in PER_ROW, per_row

    def where(r: Row) -> tuple[str, str]:
        return (r.get("SiteCode") or site, path_host(r["ServerNALPath"]))

    keys = [(where(r), r["PackageID"]) for r in rows]
    assert len(set(keys)) == len(keys)  # one row per package per DP in the data set
    assert all(server for (_, server), _ in keys)
    exported = [r for r in rows if per_row == "all" or (per_row == "not_installed" and r["State"] != 0)]

    def ids(r: Row) -> dict[str, str]:
        row_site, server = where(r)
        return {"target": target, "site": row_site, "package_id": r["PackageID"], "server": server}

    states = {labels(**ids(r), state=enum_text(r["State"], DP_STATE)): 1.0 for r in exported}
    assert family_of(got, "sccm_dp_content_state", target) == states

    by_state = Counter((*where(r), r["State"]) for r in rows)
    counts: dict[Labels, float] = {}
    for row_site, server in {where(r) for r in rows}:
        unknown = {s for (a, b, s) in by_state if (a, b) == (row_site, server)} - set(DP_STATE)
        for state in [*DP_STATE, *sorted(unknown)]:
            key = labels(target=target, site=row_site, server=server, state=enum_text(state, DP_STATE))
            counts[key] = float(by_state[(row_site, server, state)])
    assert family_of(got, "sccm_dp_content_state_packages", target) == counts

    copied = {labels(**ids(r)): r["LastCopied"].timestamp() for r in exported if r["LastCopied"] is not None}
    name = "sccm_dp_content_last_copied_timestamp_seconds"
    _assert_timestamps(family_of(got, name, target), copied, name)


def _flag(value: object) -> str:
    return "true" if value else "false"


def check_dp_info(got: Samples, target: str, site: str, rows: list[Row]) -> None:
    """The dp_info families of `target` are exactly those of `rows` (SMS_DistributionPointInfo).

    `server` is the host of NALPath, ServerName when NALPath has none; a nil boolean is false;
    `site` stands in for a missing SiteCode.
    """

    def ids(r: Row) -> dict[str, str]:
        server = path_host(r.get("NALPath")) or (r.get("ServerName") or "").strip()
        return {"target": target, "site": r.get("SiteCode") or site, "server": server}

    keys = [tuple(ids(r).items()) for r in rows]
    assert len(set(keys)) == len(keys) and all(dict(k)["server"] for k in keys)
    info = {
        labels(**ids(r), pull=_flag(r.get("IsPullDP")), pxe=_flag(r.get("IsPXE")),
               multicast=_flag(r.get("IsMulticast")), internet_facing=_flag(r.get("InternetFacing"))): 1.0
        for r in rows
    }
    assert family_of(got, "sccm_distribution_point_info", target) == info
    groups = {labels(**ids(r)): float(r["GroupCount"]) for r in rows if r.get("GroupCount") is not None}
    assert family_of(got, "sccm_distribution_point_groups", target) == groups


def _nal_site(value: str | None, site: str) -> str:
    match = _NAL_SITE.search(value or "")
    return match.group(1) if match else site


def _timestamp(value: Any) -> float:
    return float(value.timestamp())


def check_dp_status(got: Samples, target: str, site: str, rows: list[Row]) -> None:
    """The dp_status families of `target` are exactly those of `rows` (SMS_DPStatusInfo): `state` by
    MessageState (its number when unknown, no series when nil), all four package counts (nil: 0),
    the last status time where there is one, monitored 1/0 (nil: 0)."""

    def ids(r: Row) -> dict[str, str]:
        return {"target": target, "site": _nal_site(r["NALPath"], site), "server": path_host(r["NALPath"])}

    status = {labels(**ids(r), state=enum_text(r["MessageState"], MESSAGE_STATE)): 1.0
              for r in rows if r["MessageState"] is not None}
    assert family_of(got, "sccm_distribution_point_status", target) == status
    counts = {("installed", "NumberInstalled"), ("in_progress", "NumberInProgress"), ("error", "NumberErrors"),
              ("unknown", "NumberUnknown")}
    packages = {labels(**ids(r), state=state): float(r[prop] or 0) for r in rows for state, prop in counts}
    assert family_of(got, "sccm_distribution_point_status_packages", target) == packages
    last = {labels(**ids(r)): _timestamp(r["LastStatusTime"]) for r in rows if r["LastStatusTime"] is not None}
    _assert_timestamps(family_of(got, "sccm_distribution_point_last_status_timestamp_seconds", target), last,
                       "last status")
    monitored = {labels(**ids(r)): 1.0 if r["IsDPMonEnabled"] else 0.0 for r in rows}
    assert family_of(got, "sccm_distribution_point_monitored", target) == monitored


def check_dp_drive(got: Samples, target: str, site: str, rows: list[Row]) -> None:
    """The dp_drive families of `target` are exactly those of `rows` (SMS_DistributionPointDriveInfo):
    KB as bytes, drives with a negative BytesTotal left out; an empty SiteCode is the NAL path's site."""
    known = [r for r in rows if r["BytesTotal"] is not None and r["BytesTotal"] >= 0]

    def ids(r: Row) -> Labels:
        return labels(target=target, site=r["SiteCode"] or _nal_site(r["NALPath"], site),
                      server=path_host(r["NALPath"]), drive=r["Drive"])

    assert family_of(got, "sccm_distribution_point_drive_free_bytes", target) == {
        ids(r): float(r["BytesFree"] * 1024) for r in known}
    assert family_of(got, "sccm_distribution_point_drive_size_bytes", target) == {
        ids(r): float(r["BytesTotal"] * 1024) for r in known}


def check_dp_groups(got: Samples, target: str, site: str, groups: list[Row], members: list[Row]) -> None:
    """The dp_groups families of `target` are exactly those of `groups` (SMS_DistributionPointGroup)
    and `members` (SMS_DPGroupMembers): a nil count leaves its series out."""
    assert family_of(got, "sccm_dp_group_info", target) == {
        labels(target=target, group_id=g["GroupID"], name=g["Name"]): 1.0 for g in groups}
    for family, prop in (("sccm_dp_group_members", "MemberCount"), ("sccm_dp_group_packages", "ContentCount"),
                         ("sccm_dp_group_out_of_sync_packages", "OutOfSyncContentCount")):
        assert family_of(got, family, target) == {
            labels(target=target, group_id=g["GroupID"]): float(g[prop]) for g in groups if g[prop] is not None}
    assert family_of(got, "sccm_dp_group_member", target) == {
        labels(target=target, site=_nal_site(m["DPNALPath"], site), server=path_host(m["DPNALPath"]),
               group_id=m["GroupID"]): 1.0
        for m in members
    }


def check_collectors(
    got: Samples, target: str, site: str, classes: Mapping[str, list[Row]],
    collectors: Iterable[str] = DEFAULT_COLLECTORS, per_row: str = "all",
) -> None:
    """The optional collectors' families of `target` for a site namespace's `classes` (a value of
    `three_site_dataset()`): exact for each enabled collector (default: those on by default),
    no series at all for the disabled ones."""
    enabled = set(collectors)
    assert enabled <= set(COLLECTOR_FAMILIES), enabled
    if "package_info" in enabled:
        check_package_info(got, target, site, classes[PACKAGE_BASECLASS])
    if "dp_content_state" in enabled:
        check_dp_content_state(got, target, site, classes[DP_CONTENT_SUMMARIZER], per_row)
    if "dp_info" in enabled:
        check_dp_info(got, target, site, classes[DP_INFO])
    if "dp_status" in enabled:
        check_dp_status(got, target, site, classes[DP_STATUS])
    if "dp_drive" in enabled:
        check_dp_drive(got, target, site, classes[DP_DRIVE])
    if "dp_groups" in enabled:
        check_dp_groups(got, target, site, classes[DP_GROUP], classes[DP_GROUP_MEMBERS])
    for collector in set(COLLECTOR_FAMILIES) - enabled:
        for name in COLLECTOR_FAMILIES[collector]:
            assert family_of(got, name, target) == {}, (collector, name)


def check_collector_up(got: Samples, target: str, up: Mapping[str, float]) -> None:
    """`sccm_collector_up` of `target` is exactly `up` (collector -> 0 or 1): one series per
    enabled collector, none for a disabled one."""
    expected = {labels(target=target, collector=name): float(value) for name, value in up.items()}
    assert family_of(got, "sccm_collector_up", target) == expected
