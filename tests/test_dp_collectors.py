"""The DP collectors: dp_status (SMS_DPStatusInfo), dp_drive (SMS_DistributionPointDriveInfo) and
dp_groups (SMS_DistributionPointGroup + SMS_DPGroupMembers), and the demo site's answers for them.

Each turns instances into typed rows (`parse_item`, a `RowError` naming the field when a value does
not convert), counts a poll's rows (a repeated key keeps its last row) and renders its families
exactly; the demo's classes describe the same site as its status rows at the same moment.
"""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import collector_rows
from prometheus_client.parser import text_string_to_metric_families

from exporter.collectors import dp_drive, dp_groups, dp_status
from exporter.collectors.dp_drive import DriveAggregate, DriveRow
from exporter.collectors.dp_groups import DPGroupsAggregate, GroupRow, MemberRow
from exporter.collectors.dp_status import DPStatusAggregate, DPStatusRow
from exporter.collectors.package_status.row import TYPE_COPY
from exporter.config import TargetConfig
from exporter.rows import RowError
from exporter.sources.demo import DemoSource
from exporter.wmi import Item

NAL = '["Display=\\\\DP01.corp\\"]MSWNET:["SMS_SITE=XYZ"]\\\\DP01.corp\\'
T0 = 1_714_558_953.0


def status_item(**overrides: str | None) -> Item:
    item: Item = {
        "NALPath": NAL, "Name": "DP01.corp", "MessageState": "3", "LastStatusTime": "2024-05-01T10:22:33.5Z",
        "NumberErrors": "2", "NumberInProgress": "1", "NumberInstalled": "40", "NumberUnknown": "0",
        "IsDPMonEnabled": "true",
    }
    return item | overrides


def test_dp_status_reads_every_property_and_takes_the_site_from_the_nal_path() -> None:
    assert dp_status.parse_item(status_item(), "OWN") == DPStatusRow(
        "XYZ", "DP01.corp", 3, 1714558953.5, installed=40, in_progress=1, errors=2, unknown=0, monitored=True)


def test_dp_status_without_a_site_in_the_path_is_the_targets_and_nil_counts_are_zero() -> None:
    row = dp_status.parse_item(status_item(NALPath="\\\\DP02\\", MessageState=None, NumberErrors=None,
                                           LastStatusTime=None, IsDPMonEnabled=None), "OWN")
    assert row == DPStatusRow("OWN", "DP02", None, None, installed=40, in_progress=1, errors=0, unknown=0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"NALPath": None, "Name": " "}, "NALPath and Name are both missing"),
        ({"MessageState": "Error"}, "MessageState is not a number"),
        ({"NumberInstalled": "many"}, "NumberInstalled is not a number"),
        ({"IsDPMonEnabled": "yes"}, "IsDPMonEnabled is not a boolean"),
        ({"LastStatusTime": "yesterday"}, "LastStatusTime is not a datetime"),
    ],
)
def test_dp_status_bad_properties_name_the_field(overrides: dict[str, str | None], message: str) -> None:
    with pytest.raises(RowError, match=message):
        dp_status.parse_item(status_item(**overrides), "OWN")


def test_dp_status_renders_every_family_exactly() -> None:
    aggregate = DPStatusAggregate()
    aggregate.add([
        DPStatusRow("ABC", "DP01", 1, 10.0, 5, 0, 0, 0, True),
        DPStatusRow("ABC", 'D"P\\2', 7, None, 1, 2, 3, 4, False),
        DPStatusRow("ABC", "DP03"),  # never reported
        DPStatusRow("ABC", "DP01", 3, 20.5, 4, 0, 1, 0, True),  # DP01 again: the last row wins
    ])
    samples = aggregate.render("abc", "ABC").samples
    one, two, three = ('target="abc",site="ABC",server="DP01"', 'target="abc",site="ABC",server="D\\"P\\\\2"',
                       'target="abc",site="ABC",server="DP03"')
    assert samples == {
        "sccm_distribution_point_status": (
            f'sccm_distribution_point_status{{{one},state="error"}} 1\n'
            f'sccm_distribution_point_status{{{two},state="7"}} 1\n'),
        "sccm_distribution_point_status_packages": "".join(
            f'sccm_distribution_point_status_packages{{{ids},state="{state}"}} {count}\n'
            for ids, counts in ((one, (4, 0, 1, 0)), (two, (1, 2, 3, 4)), (three, (0, 0, 0, 0)))
            for state, count in zip(("installed", "in_progress", "error", "unknown"), counts, strict=True)),
        "sccm_distribution_point_last_status_timestamp_seconds": (
            f"sccm_distribution_point_last_status_timestamp_seconds{{{one}}} 20.5\n"),
        "sccm_distribution_point_monitored": (
            f"sccm_distribution_point_monitored{{{one}}} 1\n"
            f"sccm_distribution_point_monitored{{{two}}} 0\n"
            f"sccm_distribution_point_monitored{{{three}}} 0\n"),
    }
    assert aggregate.rows == 3


def drive_item(**overrides: str | None) -> Item:
    item: Item = {"NALPath": NAL, "SiteCode": "ABC", "Drive": "D:", "BytesFree": "1024", "BytesTotal": "4096"}
    return item | overrides


def test_dp_drive_keeps_kilobytes_until_rendered_and_takes_the_site_code_first() -> None:
    assert dp_drive.parse_item(drive_item(), "OWN") == DriveRow("ABC", "DP01.corp", "D:", 1024, 4096)
    assert dp_drive.parse_item(drive_item(SiteCode=""), "OWN").site == "XYZ"
    assert dp_drive.parse_item(drive_item(SiteCode=None, NALPath="\\\\DP9\\"), "OWN").site == "OWN"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"NALPath": ""}, "NALPath is missing"), ({"Drive": None}, "Drive is missing"),
     ({"BytesFree": "lots"}, "BytesFree is not a number")],
)
def test_dp_drive_bad_properties_name_the_field(overrides: dict[str, str | None], message: str) -> None:
    with pytest.raises(RowError, match=message):
        dp_drive.parse_item(drive_item(**overrides), "OWN")


def test_dp_drive_renders_bytes_and_leaves_drives_of_unknown_size_out() -> None:
    aggregate = DriveAggregate()
    aggregate.add([
        DriveRow("ABC", "DP01", "C:", 100, 200), DriveRow("ABC", "DP01", "D:", 1, 2_000_000_000),
        DriveRow("ABC", "DP01", "E:", 0, -1), DriveRow("ABC", "DP02", "D:", None, 10),
        DriveRow("ABC", "DP01", "C:", 150, 200),  # again: the last row wins
    ])
    ids = 'target="abc",site="ABC",server="DP01"'
    assert aggregate.render("abc", "ABC").samples == {
        "sccm_distribution_point_drive_free_bytes": (
            f'sccm_distribution_point_drive_free_bytes{{{ids},drive="C:"}} 153600\n'
            f'sccm_distribution_point_drive_free_bytes{{{ids},drive="D:"}} 1024\n'),
        "sccm_distribution_point_drive_size_bytes": (
            f'sccm_distribution_point_drive_size_bytes{{{ids},drive="C:"}} 204800\n'
            f'sccm_distribution_point_drive_size_bytes{{{ids},drive="D:"}} 2048000000000\n'),
    }


def test_dp_groups_read_both_classes_and_render_every_family_exactly() -> None:
    group = dp_groups.parse_group({"GroupID": " {G1} ", "Name": 'Süd "2" & Nord', "MemberCount": "2",
                                   "ContentCount": "30", "OutOfSyncContentCount": "1"}, "OWN")
    assert group == GroupRow("{G1}", 'Süd "2" & Nord', 2, 30, 1)
    member = dp_groups.parse_member({"GroupID": "{G1}", "DPNALPath": NAL}, "OWN")
    assert member == MemberRow("{G1}", "XYZ", "DP01.corp")
    aggregate = DPGroupsAggregate()
    aggregate.add([group, GroupRow("{G2}", "Empty"), member, MemberRow("{G1}", "OWN", "DP02"), member])
    text = "".join(aggregate.render("abc", "OWN").samples.values())
    parsed = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for family in text_string_to_metric_families(text) for s in family.samples}
    assert parsed == {
        ("sccm_dp_group_info", (("group_id", "{G1}"), ("name", 'Süd "2" & Nord'), ("target", "abc"))): 1,
        ("sccm_dp_group_info", (("group_id", "{G2}"), ("name", "Empty"), ("target", "abc"))): 1,
        ("sccm_dp_group_members", (("group_id", "{G1}"), ("target", "abc"))): 2,
        ("sccm_dp_group_packages", (("group_id", "{G1}"), ("target", "abc"))): 30,
        ("sccm_dp_group_out_of_sync_packages", (("group_id", "{G1}"), ("target", "abc"))): 1,
        ("sccm_dp_group_member", (("group_id", "{G1}"), ("server", "DP01.corp"), ("site", "XYZ"),
                                  ("target", "abc"))): 1,
        ("sccm_dp_group_member", (("group_id", "{G1}"), ("server", "DP02"), ("site", "OWN"), ("target", "abc"))): 1,
    }
    assert aggregate.rows == 4


@pytest.mark.parametrize(
    ("parse", "item", "message"),
    [(dp_groups.parse_group, {"GroupID": " ", "Name": "x"}, "GroupID is missing"),
     (dp_groups.parse_group, {"GroupID": "{G}", "MemberCount": "two"}, "MemberCount is not a number"),
     (dp_groups.parse_member, {"GroupID": "{G}", "DPNALPath": None}, "DPNALPath is missing")],
)
def test_dp_groups_bad_properties_name_the_field(parse: object, item: Item, message: str) -> None:
    assert callable(parse)
    with pytest.raises(RowError, match=message):
        parse(item, "OWN")


# --- the demo site ----------------------------------------------------------------------------------


def demo(packages: int = 40, servers: int = 12) -> DemoSource:
    return DemoSource(TargetConfig(name="demo", source="demo", interval=60.0, timeout=10.0, per_row="all",
                                   stale_after=600.0, packages=packages, servers=servers, seed=3),
                      clock=lambda: T0)


def test_the_demos_dp_status_counts_its_status_rows_on_each_dp() -> None:
    source = demo()
    copies = [r for r in source.site.rows_at(T0) if r.type == TYPE_COPY]
    rows = list(collector_rows(source, "dp_status", 0))
    assert [r.server for r in rows] == [s.host for s in source.site.servers]
    for row in rows:
        statuses = Counter(r.status for r in copies if r.server == row.server)
        assert row.installed == statuses[3] and row.errors == statuses[5]
        assert row.in_progress == statuses[1] + statuses[2] + statuses[4]
        assert row.installed + row.in_progress + row.errors + row.unknown == 40
        assert row.state == (3 if row.errors else 2 if row.in_progress else 1)
        times = [r.update_time for r in copies if r.server == row.server and r.update_time is not None]
        assert row.last_status == max(times)


def test_the_demos_groups_agree_with_dp_info_and_the_status_rows() -> None:
    source = demo()
    group_rows = list(collector_rows(source, "dp_groups", 0))
    groups = [r for r in group_rows if isinstance(r, GroupRow)]
    members = [r for r in group_rows if isinstance(r, MemberRow)]
    per_dp = Counter(m.server for m in members)
    for dp in source.site.distribution_points:
        assert per_dp[dp.server] == dp.groups  # GroupCount is the number of memberships
    copies = [r for r in source.site.rows_at(T0) if r.type == TYPE_COPY]
    for group in groups:
        servers = {m.server for m in members if m.group_id == group.group_id}
        assert group.members == len(servers) > 0 and group.packages == 40
        behind = {r.package_id for r in copies if r.server in servers and r.status != 3}
        assert group.out_of_sync == len(behind)
    assert len({g.group_id for g in groups}) == len(groups) and all(g.group_id.startswith("{") for g in groups)


def test_the_demos_drives_cover_every_dp_with_one_nearly_full() -> None:
    source = demo()
    drives = list(collector_rows(source, "dp_drive", 0))
    assert {d.server for d in drives} == {s.host for s in source.site.servers}
    library = [d for d in drives if d.drive == "D:"]
    assert len(library) == 12 and sum(1 for d in library if (d.free_kb or 0) < 0.1 * (d.total_kb or 1)) == 1
    assert all(d.known for d in drives if d.drive != "E:") and not any(d.known for d in drives if d.drive == "E:")
    assert list(collector_rows(demo(), "dp_drive", 0)) == drives  # a pure function of the seed
