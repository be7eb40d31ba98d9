"""Properties of the test data sets (tests/datasets.py) and of the independent checks built on them.

Why: every end-to-end test trusts these rows to look like what an SMS Provider returns and to be
consistent across classes (a package's status rows, its SMS_PackageBaseclass instance, its
per-DP summary, the DPs themselves), and trusts tests/expected.py to say what the exporter must
serve for them.  Here: the data are deterministic, the core rows never change, the classes agree
with each other, every enum case the exporter must handle occurs, and each `expected.check_*`
accepts what the exporter's own collectors render from the data set read off the wire (and
refuses it once a series is wrong).
"""

from __future__ import annotations

import collections
import hashlib
import json
from datetime import datetime
from typing import Any, cast

import pytest
from conftest import Samples, labels, parse_samples
from datasets import (
    DP_CONTENT_SUMMARIZER,
    DP_DRIVE,
    DP_GROUP,
    DP_GROUP_MEMBERS,
    DP_INFO,
    DP_STATUS,
    NASTY_PACKAGE_NAMES,
    PACKAGE_BASECLASS,
    PACKAGE_STATUS,
    PROVIDER_LOCATION,
    STATE_OF_STATUS,
    THREE_SITES,
    UNDISTRIBUTED_PACKAGES,
    UNKNOWN_PACKAGE_TYPE,
    UNKNOWN_STATE,
    UNKNOWN_STATUS,
    UNREQUESTED_PACKAGE_PROPERTIES,
    Row,
    dp_host,
    make_dp_content,
    make_dp_info,
    make_package_info,
    make_site,
    make_site_classes,
    nal_path,
    package_id,
    single_site_dataset,
    site_namespace,
    site_server,
    three_site_dataset,
)
from expected import (
    DP_STATE,
    PACKAGE_TYPE,
    check_collectors,
    check_dp_content_state,
    check_dp_info,
    check_package_info,
    path_host,
)
from wsman_server import ACTION_PULL, envelope, pull_body, render_fragment

from exporter import wmi
from exporter.collectors import dp_content_state, dp_drive, dp_groups, dp_info, dp_status, package_info
from exporter.families import PerRow
from exporter.winrm import pages

DATA = three_site_dataset()
SITES = [code for code, *_ in THREE_SITES]
# Before issue 6 (sha256 of the canonical JSON of the whole data set): the core classes must stay so.
CORE_DIGESTS = {
    "three_site_dataset": "6ead1477b939970fe425a50205a6ffaac53de3b62a6ed534069e6c841e78c0eb",
    "single_site_dataset": "4d67655cfebe6e2f4d12d531963500b4fe7fb12d76c0e8bf3170edfc87d9f653",
}


def classes(site: str) -> dict[str, list[Row]]:
    return DATA[site_namespace(site)]


def digest(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, default=lambda v: v.isoformat())
    return hashlib.sha256(text.encode()).hexdigest()


def core(data: dict[str, dict[str, list[Row]]]) -> dict[str, dict[str, list[Row]]]:
    wanted = (PACKAGE_STATUS, PROVIDER_LOCATION)
    return {ns: {name: rows for name, rows in found.items() if name in wanted} for ns, found in data.items()}


# --------------------------------------------------------------------------- determinism, shape


def test_core_classes_are_exactly_what_they_were_before_the_optional_classes() -> None:
    assert digest(core(three_site_dataset())) == CORE_DIGESTS["three_site_dataset"]
    assert digest(core(single_site_dataset())) == CORE_DIGESTS["single_site_dataset"]
    for code, packages, servers, seed in THREE_SITES:
        assert classes(code)[PACKAGE_STATUS] == make_site(code, packages, servers, seed)


def test_every_site_namespace_holds_every_class_deterministically() -> None:
    assert three_site_dataset() == DATA and single_site_dataset() == single_site_dataset()
    for code, packages, servers, seed in THREE_SITES:
        assert set(classes(code)) == {PACKAGE_STATUS, PACKAGE_BASECLASS, DP_CONTENT_SUMMARIZER, DP_INFO, DP_STATUS,
                                      DP_DRIVE, DP_GROUP, DP_GROUP_MEMBERS}
        assert classes(code) == make_site_classes(code, packages, servers, seed)
    single = single_site_dataset("XYZ", 30, 4, 9)[site_namespace("XYZ")]
    assert single == make_site_classes("XYZ", 30, 4, 9)
    assert make_package_info("ABC", 40, 1) != make_package_info("ABC", 40, 2)
    assert make_dp_info("ABC", 6, 1) != make_dp_info("ABC", 6, 3)


def test_small_and_empty_sites_are_generated_without_errors() -> None:
    for packages, servers in ((0, 0), (1, 0), (2, 1), (5, 2), (12, 3)):
        found = make_site_classes("SML", packages, servers, 4)
        assert len(found[PACKAGE_BASECLASS]) == packages + UNDISTRIBUTED_PACKAGES
        assert len(found[DP_INFO]) == servers
        assert (found[DP_CONTENT_SUMMARIZER] == []) == (servers == 0 or packages == 0)


# --------------------------------------------------------------------------- SMS_PackageBaseclass


@pytest.mark.parametrize("site", SITES)
def test_package_info_covers_the_sites_packages_plus_undistributed_ones(site: str) -> None:
    status_ids = {r["PackageID"] for r in classes(site)[PACKAGE_STATUS]}
    infos = classes(site)[PACKAGE_BASECLASS]
    ids = [r["PackageID"] for r in infos]
    assert len(ids) == len(set(ids))
    assert status_ids < set(ids)
    undistributed = set(ids) - status_ids
    assert len(undistributed) == UNDISTRIBUTED_PACKAGES
    packages = next(p for code, p, *_ in THREE_SITES if code == site)
    assert undistributed == {package_id(site, packages + i) for i in range(UNDISTRIBUTED_PACKAGES)}


@pytest.mark.parametrize("site", SITES)
def test_package_info_has_every_kind_and_each_oddity(site: str) -> None:
    infos = classes(site)[PACKAGE_BASECLASS]
    types = collections.Counter(r["PackageType"] for r in infos)
    assert set(types) == set(PACKAGE_TYPE) | {UNKNOWN_PACKAGE_TYPE}
    assert types[UNKNOWN_PACKAGE_TYPE] == 1 and UNKNOWN_PACKAGE_TYPE not in PACKAGE_TYPE
    assert types[0] == max(types.values())  # regular packages are the most common
    status_ids = {r["PackageID"] for r in classes(site)[PACKAGE_STATUS]}
    by_name = {r["Name"]: r for r in infos}
    for name in NASTY_PACKAGE_NAMES:
        assert by_name[name]["PackageID"] in status_ids  # distributed: it shows in every family
    assert any("&" in n and "<" in n for n in by_name)
    assert any("é" in n and "ü" in n for n in by_name)
    assert any('"' in n and "\\" in n for n in by_name)
    versions = [r["Version"] for r in infos]
    assert None in versions and "" in versions
    assert sum(isinstance(v, str) and v != "" for v in versions) > len(infos) / 2
    assert sum(r["PackageSize"] is None for r in infos) == 1
    assert 1 <= sum(r["SourceDate"] is None for r in infos) < len(infos) / 5
    for row in infos:
        assert isinstance(row["SourceVersion"], int) and not isinstance(row["SourceVersion"], bool)
        assert row["PackageSize"] is None or (isinstance(row["PackageSize"], int) and row["PackageSize"] >= 0)
        assert row["SourceDate"] is None or (isinstance(row["SourceDate"], datetime) and row["SourceDate"].tzinfo)
        assert isinstance(row["Name"], str) and row["Name"]
        assert set(UNREQUESTED_PACKAGE_PROPERTIES) <= set(row)
        assert len(row["Icon"]) > 4000  # the lazy, large property a property list leaves out
    assert any(r["PackageType"] == 4 and r["PackageSize"] == 0 for r in infos)  # task sequences have no content


# --------------------------------------------------------------------------- SMS_PackageStatusDistPointsSummarizer


@pytest.mark.parametrize("site", SITES)
def test_dp_content_has_one_instance_per_package_and_dp_with_copy_rows(site: str) -> None:
    copies = [r for r in classes(site)[PACKAGE_STATUS] if r["Type"] == 2]
    summaries = classes(site)[DP_CONTENT_SUMMARIZER]
    pairs = [(r["PackageID"], path_host(r["ServerNALPath"])) for r in summaries]
    assert len(pairs) == len(set(pairs))
    assert set(pairs) == {(r["PackageID"], path_host(r["PkgServer"])) for r in copies}
    packages = {r["PackageID"]: r for r in classes(site)[PACKAGE_BASECLASS]}
    for row in summaries:
        host = path_host(row["ServerNALPath"])
        assert row["ServerNALPath"] == nal_path(host, site) and host.startswith(f"{site}-DP")
        assert row["SiteCode"] == site
        assert row["PackageType"] == packages[row["PackageID"]]["PackageType"]
        assert row["SourceVersion"] == packages[row["PackageID"]]["SourceVersion"]
        assert isinstance(row["SummaryDate"], datetime) and row["SummaryDate"].tzinfo is not None
        if row["LastCopied"] is not None:
            assert row["LastCopied"].tzinfo is not None and row["SummaryDate"] > row["LastCopied"]


@pytest.mark.parametrize("site", SITES)
def test_dp_content_states_follow_the_status_rows_and_cover_every_state(site: str) -> None:
    statuses: dict[tuple[str, str], list[int]] = {}
    for row in classes(site)[PACKAGE_STATUS]:
        if row["Type"] == 2:
            statuses.setdefault((row["PackageID"], path_host(row["PkgServer"])), []).append(row["Status"])
    summaries = classes(site)[DP_CONTENT_SUMMARIZER]
    states = collections.Counter(r["State"] for r in summaries)
    assert set(states) == set(DP_STATE) | {UNKNOWN_STATE} and states[UNKNOWN_STATE] == 1
    assert states[0] > len(summaries) / 2
    derived = 0
    for row in summaries:
        found = statuses[(row["PackageID"], path_host(row["ServerNALPath"]))]
        from_status = STATE_OF_STATUS[next((s for s in found if s != 3), 3)]
        if row["State"] == from_status:
            derived += 1
        else:  # one of the few installed ones given a state the status rows cannot give
            assert from_status == 0 and row["State"] in (1, 2, 3, 4, 5, 6, 7, 8, UNKNOWN_STATE)
    assert derived >= len(summaries) - 12
    unknown_status_pairs = [k for k, found in statuses.items() if UNKNOWN_STATUS in found]
    assert unknown_status_pairs and all(
        r["State"] == 7 for r in summaries if (r["PackageID"], path_host(r["ServerNALPath"])) in unknown_status_pairs
    )
    nil = sum(r["LastCopied"] is None for r in summaries)
    assert 1 <= nil <= max(1, round(len(summaries) * 0.02))


def test_make_dp_content_takes_the_not_installed_status_of_a_pair_with_two_copy_rows() -> None:
    host = dp_host("ABC", 1)
    rows = [
        {"PackageID": "ABC00010", "PkgServer": nal_path(host, "ABC"), "Type": 2, "Status": 3, "UpdateTime": None},
        {"PackageID": "ABC00010", "PkgServer": f"\\\\{host}\\", "Type": 2, "Status": 4, "UpdateTime": None},
        {"PackageID": "ABC00010", "PkgServer": nal_path(site_server("ABC"), "ABC"), "Type": 1, "Status": 3,
         "UpdateTime": None},
    ]
    (only,) = make_dp_content("ABC", rows, make_package_info("ABC", 1, 1), 1)
    assert (only["PackageID"], only["ServerNALPath"], only["State"]) == ("ABC00010", nal_path(host, "ABC"), 2)


# --------------------------------------------------------------------------- SMS_DistributionPointInfo


@pytest.mark.parametrize("site", SITES)
def test_dp_info_has_one_instance_per_dp_in_a_realistic_mix(site: str) -> None:
    servers = next(s for code, _, s, _ in THREE_SITES if code == site)
    infos = classes(site)[DP_INFO]
    assert [r["ServerName"] for r in infos] == [dp_host(site, i) for i in range(1, servers + 1)]
    assert all(r["NALPath"] == nal_path(r["ServerName"], site) and r["SiteCode"] == site for r in infos)
    assert site_server(site) not in {r["ServerName"] for r in infos}
    copy_hosts = {path_host(r["PkgServer"]) for r in classes(site)[PACKAGE_STATUS] if r["Type"] == 2}
    assert copy_hosts <= {r["ServerName"] for r in infos}
    flags = ("IsPullDP", "IsPXE", "IsMulticast", "IsPeerDP", "InternetFacing")
    assert all(isinstance(r[f], bool) for r in infos for f in flags)
    assert sum(r["InternetFacing"] for r in infos) == 1
    assert 1 <= sum(r["IsPullDP"] for r in infos) < len(infos) / 2
    assert 1 <= sum(r["IsPXE"] for r in infos) < len(infos)
    assert any(r["IsMulticast"] for r in infos) and not all(r["IsMulticast"] for r in infos)
    groups = [r["GroupCount"] for r in infos]
    assert groups.count(None) == 1 and all(isinstance(g, int) for g in groups if g is not None)


# --------------------------------------------------------------------------- expected.py against the exporter


def _wire_items(rows: list[Row], properties: tuple[str, ...]) -> list[wmi.Item]:
    """The rows as the exporter reads them: rendered as the test server renders a property list."""
    fragments = [render_fragment(sorted(properties, key=str.lower), row) for row in rows]
    text = envelope(ACTION_PULL + "Response", "uuid:1", pull_body(None, fragments, True))
    return pages.parse_page(text).items or []


def _exporter_samples(site: str, per_row: str = "all") -> Samples:
    """What the exporter's collectors render for a site of the data set (target = site in lower case)."""
    target = site.lower()
    found = classes(site)
    info = package_info.PackageInfoAggregate()
    info.add(package_info.parse_item(i) for i in _wire_items(found[PACKAGE_BASECLASS], package_info.PROPERTIES))
    content = dp_content_state.DPContentAggregate(cast(PerRow, per_row))
    items = _wire_items(found[DP_CONTENT_SUMMARIZER], dp_content_state.PROPERTIES)
    content.add(dp_content_state.parse_item(i, site) for i in items)
    points = dp_info.DPInfoAggregate()
    points.add(dp_info.parse_item(i, site) for i in _wire_items(found[DP_INFO], dp_info.PROPERTIES))
    status = dp_status.DPStatusAggregate()
    status.add(dp_status.parse_item(i, site) for i in _wire_items(found[DP_STATUS], dp_status.PROPERTIES))
    drives = dp_drive.DriveAggregate()
    drives.add(dp_drive.parse_item(i, site) for i in _wire_items(found[DP_DRIVE], dp_drive.PROPERTIES))
    groups = dp_groups.DPGroupsAggregate()
    groups.add(dp_groups.parse_group(i, site) for i in _wire_items(found[DP_GROUP], dp_groups.GROUPS.properties))
    groups.add(dp_groups.parse_member(i, site)
               for i in _wire_items(found[DP_GROUP_MEMBERS], dp_groups.MEMBERS.properties))
    text = "".join(
        "".join(aggregate.render(target, site).samples.values())
        for aggregate in (info, content, points, status, drives, groups)
    )
    return parse_samples(text)


@pytest.mark.parametrize("site", SITES)
def test_the_checks_accept_what_the_exporters_collectors_render(site: str) -> None:
    got = _exporter_samples(site)
    check_collectors(got, site.lower(), site, classes(site),
                     ("package_info", "dp_content_state", "dp_info", "dp_status", "dp_drive", "dp_groups"))


@pytest.mark.parametrize("per_row", ["all", "not_installed", "none"])
def test_the_dp_content_check_follows_per_row(per_row: str) -> None:
    got = _exporter_samples("DEF", per_row)
    rows = classes("DEF")[DP_CONTENT_SUMMARIZER]
    check_dp_content_state(got, "def", "DEF", rows, per_row)
    other = {"all": "none", "not_installed": "all", "none": "not_installed"}[per_row]
    with pytest.raises(AssertionError):
        check_dp_content_state(got, "def", "DEF", rows, other)


def test_the_checks_refuse_a_wrong_or_missing_series() -> None:
    got = _exporter_samples("GHI")
    found = classes("GHI")
    info_key = next(iter(got["sccm_package_info"]))
    broken = {**got, "sccm_package_info": {k: v for k, v in got["sccm_package_info"].items() if k != info_key}}
    with pytest.raises(AssertionError):
        check_package_info(broken, "ghi", "GHI", found[PACKAGE_BASECLASS])
    sizes = dict(got["sccm_package_size_bytes"])
    first = next(iter(sizes))
    sizes[first] += 1024
    with pytest.raises(AssertionError):
        check_package_info({**got, "sccm_package_size_bytes": sizes}, "ghi", "GHI", found[PACKAGE_BASECLASS])
    counts = dict(got["sccm_dp_content_state_packages"])
    zero = next(k for k, v in counts.items() if v == 0)
    del counts[zero]  # a known state left out where it has no package
    with pytest.raises(AssertionError):
        check_dp_content_state({**got, "sccm_dp_content_state_packages": counts}, "ghi", "GHI",
                               found[DP_CONTENT_SUMMARIZER])
    extra = {**got["sccm_distribution_point_info"]}
    extra[labels(target="ghi", site="GHI", server="x", pull="false", pxe="false", multicast="false",
                 internet_facing="false")] = 1.0
    with pytest.raises(AssertionError):
        check_dp_info({**got, "sccm_distribution_point_info": extra}, "ghi", "GHI", found[DP_INFO])
    with pytest.raises(AssertionError):  # a disabled collector must serve nothing
        check_collectors(got, "ghi", "GHI", found, ("package_info", "dp_info"))
    check_collectors({k: v for k, v in got.items() if not k.startswith("sccm_dp_content")}, "ghi", "GHI", found)
