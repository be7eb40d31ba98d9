"""End to end: the optional collectors (issue 6) read over real pywinrm from the loopback
WS-Management server, served by the installed exporter, checked against the data set itself.

What is pinned here: every family of every collector, exact; each class asked for with its own
explicit property list (never `SELECT *`); one class failing in any way hides nothing else; and
the cost: the extra enumerations leave the core table's requests as they were and add only the
pages of their own rows.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from conftest import ExporterProcess, Samples, StartExporter, labels, parse_samples, promtool_check_metrics
from expected import (
    check_dp_content_state,
    check_dp_drive,
    check_dp_groups,
    check_dp_info,
    check_dp_status,
    check_package_info,
    check_target,
)
from wsman_server import DEFAULT_USERS, WSManServer

USER, PASSWORD = next(iter(DEFAULT_USERS.items()))
ALL = ["package_status", "package_info", "dp_info", "dp_content_state", "dp_status", "dp_drive", "dp_groups"]
CLASSES = {
    "package_status": "SMS_PackageStatus",
    "package_info": "SMS_PackageBaseclass",
    "dp_info": "SMS_DistributionPointInfo",
    "dp_content_state": "SMS_PackageStatusDistPointsSummarizer",
    "dp_status": "SMS_DPStatusInfo",
    "dp_drive": "SMS_DistributionPointDriveInfo",
    "dp_groups": "SMS_DPGroupMembers",  # the second of its two classes: the first read, then this one fails
}
PROPERTY_LISTS = {
    "SMS_PackageBaseclass": "PackageID, Name, Version, PackageType, SourceVersion, SourceDate, PackageSize",
    # Only what the families export (IsPeerDP, PackageType, SourceVersion and SummaryDate were read
    # and never exported: no longer asked for).
    "SMS_DistributionPointInfo": (
        "NALPath, ServerName, SiteCode, IsPullDP, IsPXE, IsMulticast, InternetFacing, GroupCount"
    ),
    "SMS_PackageStatusDistPointsSummarizer": "PackageID, ServerNALPath, SiteCode, State, LastCopied",
    "SMS_DPStatusInfo": (
        "NALPath, Name, MessageState, LastStatusTime, NumberErrors, NumberInProgress, NumberInstalled, "
        "NumberUnknown, IsDPMonEnabled"
    ),
    "SMS_DistributionPointDriveInfo": "NALPath, SiteCode, Drive, BytesFree, BytesTotal",
    "SMS_DistributionPointGroup": "GroupID, Name, MemberCount, ContentCount, OutOfSyncContentCount",
    "SMS_DPGroupMembers": "GroupID, DPNALPath",
}
SITES = (("abc", "ABC"), ("def", "DEF"), ("ghi", "GHI"))


def rows_of(dataset: dict[str, Any], site: str, class_name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = dataset[f"root\\SMS\\site_{site}"][class_name]
    return rows


def config(tmp_path: Path, port: int, collectors: list[str], *, sites: tuple[tuple[str, str], ...] = SITES,
           timeout: str = "3s", interval: str = "4s", per_row: str = "all") -> Path:
    secret = tmp_path / "cm_password"
    secret.write_text(PASSWORD + "\n")
    lines = [
        f"defaults: {{interval: {interval}, timeout: {timeout}, stale_after: 10m, per_row: {per_row}, "
        f"collectors: [{', '.join(collectors)}]}}",
        "targets:",
    ]
    for name, site in sites:
        lines += [
            f"  - {{name: {name}, source: winrm, host: 127.0.0.1, port: {port}, scheme: http, site_code: {site},",
            f"     auth: {{transport: ntlm, username: '{USER}', password_file: {secret}}}}}",
        ]
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def check_dp_classes(got: Samples, target: str, site: str, dataset: dict[str, Any]) -> None:
    """The families of dp_status, dp_drive and dp_groups, exact."""
    check_dp_status(got, target, site, rows_of(dataset, site, "SMS_DPStatusInfo"))
    check_dp_drive(got, target, site, rows_of(dataset, site, "SMS_DistributionPointDriveInfo"))
    check_dp_groups(got, target, site, rows_of(dataset, site, "SMS_DistributionPointGroup"),
                    rows_of(dataset, site, "SMS_DPGroupMembers"))


def collector_up(got: Samples, target: str) -> dict[str, float]:
    return {dict(k)["collector"]: v for k, v in got["sccm_collector_up"].items() if dict(k)["target"] == target}


def errors_of(got: Samples, target: str, collector: str) -> dict[str, float]:
    return {
        dict(k)["reason"]: v
        for k, v in got["sccm_collector_errors_total"].items()
        if dict(k)["target"] == target and dict(k)["collector"] == collector
    }


# --- every family, exact --------------------------------------------------------------------------


def test_every_collector_of_three_sites_every_family_exact(
    tmp_path: Path, provider: WSManServer, dataset: dict[str, Any], run_exporter: StartExporter, promtool: str,
) -> None:
    exporter = run_exporter(config(tmp_path, provider.port, ALL))
    exporter.wait_ready()
    text = exporter.scrape()
    promtool_check_metrics(promtool, text)
    got = parse_samples(text)
    for target, site in SITES:
        assert collector_up(got, target) == dict.fromkeys(ALL, 1.0)
        check_target(got, target, site, rows_of(dataset, site, "SMS_PackageStatus"))
        check_package_info(got, target, site, rows_of(dataset, site, "SMS_PackageBaseclass"))
        check_dp_info(got, target, site, rows_of(dataset, site, "SMS_DistributionPointInfo"))
        check_dp_content_state(got, target, site, rows_of(dataset, site, "SMS_PackageStatusDistPointsSummarizer"))
        check_dp_classes(got, target, site, dataset)
    assert got["sccm_up"] == {labels(target=t): 1.0 for t, _ in SITES}
    assert PASSWORD not in exporter.log()


@pytest.mark.parametrize("per_row", ["not_installed", "none"])
def test_per_row_limits_the_content_state_rows_and_keeps_the_counts(
    tmp_path: Path, provider: WSManServer, dataset: dict[str, Any], run_exporter: StartExporter, per_row: str,
) -> None:
    exporter = run_exporter(config(tmp_path, provider.port, ["dp_content_state"], sites=SITES[:1], per_row=per_row))
    exporter.wait_ready()
    got = exporter.samples()
    rows = rows_of(dataset, "ABC", "SMS_PackageStatusDistPointsSummarizer")
    check_dp_content_state(got, "abc", "ABC", rows, per_row=per_row)


def test_each_class_is_asked_for_with_its_own_property_list_never_select_star(
    tmp_path: Path, provider: WSManServer, run_exporter: StartExporter,
) -> None:
    exporter = run_exporter(config(tmp_path, provider.port, ALL, sites=SITES[:1]))
    exporter.wait_ready()
    for class_name, properties in PROPERTY_LISTS.items():
        enumerates = provider.requests_of(class_name, "Enumerate")
        assert enumerates, class_name
        for request in enumerates:
            assert request.wql is not None and request.wql.startswith(f"SELECT {properties} FROM {class_name}")
            assert request.resource_uri is not None and request.resource_uri.endswith("/*")  # WQL, not the class URI
    # The large one is read in the core table's PackageID slices; the small ones in one enumeration.
    first_poll = {class_name: [r.wql for r in provider.requests_of(class_name, "Enumerate")][:1]
                  for class_name in ("SMS_PackageBaseclass", "SMS_DistributionPointInfo")}
    assert all(re.fullmatch(rf"SELECT [^*]+ FROM {c}", wql[0] or "") for c, wql in first_poll.items())
    slices = {r.wql for r in provider.requests_of("SMS_PackageStatusDistPointsSummarizer", "Enumerate")}
    assert len(slices) == 4 and all(" WHERE PackageID LIKE '%[" in (wql or "") for wql in slices)


# --- one class failing hides nothing ------------------------------------------------------------


def wait_for_collector(exporter: ExporterProcess, collector: str, value: float) -> Samples:
    return exporter.wait_for(
        f"sccm_collector_up{{collector={collector!r}}} == {value}",
        lambda got: collector_up(got, "abc").get(collector) == value,
    )


@pytest.mark.parametrize(
    ("collector", "fault", "reason"),
    [
        ("package_info", "access_denied", "auth"),
        ("dp_info", "invalid_class", "wmi_fault"),
        ("dp_content_state", "provider_failure", "wmi_fault"),
        ("package_info", "hang", "timeout"),
        ("dp_status", "provider_failure", "wmi_fault"),
        ("dp_drive", "access_denied", "auth"),
        ("dp_groups", "invalid_class", "wmi_fault"),
    ],
)
def test_one_class_failing_leaves_the_others_served_and_keeps_its_last_good_families(
    tmp_path: Path, provider: WSManServer, dataset: dict[str, Any], run_exporter: StartExporter,
    collector: str, fault: str, reason: str,
) -> None:
    class_name = CLASSES[collector]
    exporter = run_exporter(config(tmp_path, provider.port, ALL, sites=SITES[:1], interval="2s", timeout="1500ms"))
    exporter.wait_ready()
    before = exporter.samples()
    assert collector_up(before, "abc") == dict.fromkeys(ALL, 1.0)
    if fault == "hang":
        provider.hang_classes = {class_name}
    else:
        provider.class_faults = {class_name: fault}
    got = wait_for_collector(exporter, collector, 0.0)
    assert f"{collector}: down ({reason})" in exporter.get("/").text
    assert collector_up(got, "abc") == {c: 0.0 if c == collector else 1.0 for c in ALL}
    assert got["sccm_up"] == {labels(target="abc"): 1.0}
    assert errors_of(got, "abc", collector)[reason] >= 1
    assert sum(got["sccm_poll_errors_total"].values()) == 0  # the poll (package_status) did not fail
    for other in ALL:
        if other != collector:
            assert sum(errors_of(got, "abc", other).values()) == 0, other
    # Every family is still there, the failing collector's from its last good poll.
    check_target(got, "abc", "ABC", rows_of(dataset, "ABC", "SMS_PackageStatus"))
    check_package_info(got, "abc", "ABC", rows_of(dataset, "ABC", "SMS_PackageBaseclass"))
    check_dp_info(got, "abc", "ABC", rows_of(dataset, "ABC", "SMS_DistributionPointInfo"))
    check_dp_content_state(got, "abc", "ABC", rows_of(dataset, "ABC", "SMS_PackageStatusDistPointsSummarizer"))
    check_dp_classes(got, "abc", "ABC", dataset)
    log = exporter.log()
    assert re.search(rf'msg="collector failed" target=abc collector={collector} reason={reason} ', log), log
    # It comes back by itself once the class answers again.
    provider.hang_classes = set()
    provider.class_faults = {}
    wait_for_collector(exporter, collector, 1.0)


def test_a_class_missing_from_the_start_is_down_alone_and_exports_nothing(
    tmp_path: Path, dataset: dict[str, Any], run_exporter: StartExporter,
) -> None:
    with WSManServer(dataset) as provider:
        provider.remove_class("root\\SMS\\site_ABC", "SMS_DistributionPointInfo")
        exporter = run_exporter(config(tmp_path, provider.port, ALL, sites=SITES[:1]))
        exporter.wait_ready()
        got = exporter.samples()
    assert collector_up(got, "abc") == {c: 0.0 if c == "dp_info" else 1.0 for c in ALL}
    assert errors_of(got, "abc", "dp_info")["wmi_fault"] == 1
    assert "sccm_distribution_point_info" not in got and "sccm_distribution_point_groups" not in got
    check_package_info(got, "abc", "ABC", rows_of(dataset, "ABC", "SMS_PackageBaseclass"))


def test_disabled_collectors_read_nothing_and_report_nothing(
    tmp_path: Path, provider: WSManServer, run_exporter: StartExporter,
) -> None:
    exporter = run_exporter(config(tmp_path, provider.port, ["package_status"], sites=SITES[:1]))
    exporter.wait_ready()
    got = exporter.samples()
    assert collector_up(got, "abc") == {"package_status": 1.0}
    assert not any(name.startswith(("sccm_package_info", "sccm_dp_", "sccm_distribution_point")) for name in got)
    assert {r.class_name for r in provider.requests} == {"SMS_PackageStatus"}


# --- cost ------------------------------------------------------------------------------------------


def requests_by_class(provider: WSManServer) -> dict[str | None, list[tuple[str, int]]]:
    by_class: dict[str | None, list[tuple[str, int]]] = {}
    for request in provider.requests:
        by_class.setdefault(request.class_name, []).append((request.action.lower(), request.items))
    return by_class


def one_poll(tmp_path: Path, dataset: dict[str, Any], run_exporter: StartExporter,
             collectors: list[str]) -> dict[str | None, list[tuple[str, int]]]:
    """The requests of the first poll of site ABC with these collectors (interval long: one poll)."""
    tmp_path.mkdir()
    with WSManServer(dataset) as provider:
        exporter = run_exporter(config(tmp_path, provider.port, collectors, sites=SITES[:1], interval="10m"))
        exporter.wait_ready()
        requests = requests_by_class(provider)
        exporter.stop()
    return requests


def test_the_extra_enumerations_cost_only_their_own_rows(
    tmp_path: Path, dataset: dict[str, Any], run_exporter: StartExporter,
) -> None:
    alone = one_poll(tmp_path / "alone", dataset, run_exporter, ["package_status"])
    together = one_poll(tmp_path / "together", dataset, run_exporter, ALL)
    # The core table is read exactly as it is read alone: the same requests, the same pages.
    core = "SMS_PackageStatus"
    assert sorted(together[core]) == sorted(alone[core])
    assert set(together) - set(alone) == set(PROPERTY_LISTS)
    for class_name in PROPERTY_LISTS:
        requests = together[class_name]
        rows = len(rows_of(dataset, "ABC", class_name))
        assert sum(items for _, items in requests) == rows  # each row once: nothing read twice
        enumerations = sum(1 for action, _ in requests if action == "enumerate")
        assert enumerations == (4 if class_name == "SMS_PackageStatusDistPointsSummarizer" else 1)
        # No round trip wasted: every reply carries rows but, at most, the last of an enumeration.
        assert sum(1 for _, items in requests if items == 0) <= enumerations
        assert {action for action, _ in requests} <= {"enumerate", "pull"}
