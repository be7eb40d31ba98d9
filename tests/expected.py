"""What the exporter must serve for a data set of tests/datasets.py, computed from the rows themselves.

Used by the end-to-end tests of every source fed with the same data set (WinRM, file), so that
they are checked against one independent reading of the data, not against the exporter's parsers.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from conftest import Labels, Samples, labels
from datasets import THREE_SITES, Row, dp_host, site_server

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
