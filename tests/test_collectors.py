"""The optional collectors (docs/metrics.md): package_info, dp_content_state and dp_info.

Each collector turns instances of its class, as `pages.parse_items` gives them (text values, None
for `xsi:nil`, a list for a repeated element), into typed rows (`parse_item`), counts the rows of
one poll into an aggregate (`add`) and renders its families once (`render`). Renderings are
checked exactly, and parsed back with prometheus_client's parser under each family's header.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from xml.sax.saxutils import escape

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter import wmi
from exporter.collectors import DATA_FAMILIES, SPECS, dp_content_state, dp_info, package_info
from exporter.collectors.dp_content_state import DPContentAggregate, DPContentRow
from exporter.collectors.dp_info import DPInfoAggregate, DPInfoRow
from exporter.collectors.package_info import PackageInfoAggregate, PackageInfoRow
from exporter.families import Exposition, Family
from exporter.rows import RowError
from exporter.winrm import envelopes, pages

Labels = tuple[tuple[str, str], ...]
Samples = dict[str, dict[Labels, float]]

T = 1714558953  # 2024-05-01T10:22:33Z
NAL = '["Display=\\\\{host}\\"]MSWNET:["SMS_SITE=ABC"]\\\\{host}\\'
ODD = 'DP "quoted" \\share\nsecond line \u00e9\u20ac'  # every character the text format escapes, and UTF-8
ODD_ESCAPED = 'DP \\"quoted\\" \\\\share\\nsecond line \u00e9\u20ac'


# --- helpers --------------------------------------------------------------------------------


def nal(host: str) -> str:
    return NAL.format(host=host)


def item(**properties: str | list[str | None] | None) -> wmi.Item:
    """One instance as the WinRM source gets it: a `<w:XmlFragment>` (an explicit property list)
    read by `pages.parse_items`. None is `xsi:nil`, a list a repeated element, a value starting
    with `@` a datetime in its `<Datetime>` wrapper."""

    def element(name: str, value: str | None) -> str:
        if value is None:
            return f'<{name} xsi:nil="true"/>'
        if value.startswith("@"):
            return f"<{name}><Datetime>{escape(value[1:])}</Datetime></{name}>"
        return f"<{name}>{escape(value)}</{name}>"

    body = "".join(
        "".join(element(name, v) for v in value) if isinstance(value, list) else element(name, value)
        for name, value in properties.items()
    )
    xml = (
        f'<w:Items xmlns:w="{envelopes.NS_WSMAN}" xmlns:xsi="{envelopes.NS_XSI}">'
        f"<w:XmlFragment>{body}</w:XmlFragment></w:Items>"
    )
    (parsed,) = pages.parse_items(ET.fromstring(xml))
    return parsed


def exposition_text(exposition: Exposition, families: Sequence[Family]) -> str:
    """The exposition as /metrics writes one target's families: each under its HELP and TYPE."""
    return "".join(family.header() + exposition.samples[family.name] for family in families)


def parse(exposition: Exposition, families: Sequence[Family]) -> Samples:
    """family -> labels -> value, through prometheus_client's parser (which must accept the text)."""
    assert set(exposition.families) == {family.name for family in families}
    parsed: Samples = {}
    for family in text_string_to_metric_families(exposition_text(exposition, families)):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            assert key not in parsed.get(sample.name, {}), f"{sample.name}{key} twice"
            parsed.setdefault(sample.name, {})[key] = sample.value
    return parsed


def labels(**kwargs: str) -> Labels:
    return tuple(sorted(kwargs.items()))


def lines(text: str) -> list[str]:
    return text.splitlines()


def label_names(samples: Samples) -> dict[str, set[str]]:
    return {name: {label for key in by_labels for label, _ in key} for name, by_labels in samples.items()}


# --- the registry ---------------------------------------------------------------------------


def test_each_collector_reads_its_class_and_its_families_are_served_in_order() -> None:
    assert {name: spec.classes for name, spec in SPECS.items()} == {
        "package_status": "SMS_PackageStatus",
        "package_info": "SMS_PackageBaseclass",
        "dp_content_state": "SMS_PackageStatusDistPointsSummarizer",
        "dp_info": "SMS_DistributionPointInfo",
        "dp_status": "SMS_DPStatusInfo",
        "dp_drive": "SMS_DistributionPointDriveInfo",
        "dp_groups": "SMS_DistributionPointGroup and SMS_DPGroupMembers",
    }
    names = [family.name for family in DATA_FAMILIES]
    assert names[5:] == [
        "sccm_package_info", "sccm_package_source_version", "sccm_package_size_bytes",
        "sccm_package_source_timestamp_seconds",
        "sccm_dp_content_state", "sccm_dp_content_state_packages", "sccm_dp_content_last_copied_timestamp_seconds",
        "sccm_distribution_point_info", "sccm_distribution_point_groups",
        "sccm_distribution_point_status", "sccm_distribution_point_status_packages",
        "sccm_distribution_point_last_status_timestamp_seconds", "sccm_distribution_point_monitored",
        "sccm_distribution_point_drive_free_bytes", "sccm_distribution_point_drive_size_bytes",
        "sccm_dp_group_info", "sccm_dp_group_members", "sccm_dp_group_packages", "sccm_dp_group_out_of_sync_packages",
        "sccm_dp_group_member",
    ]
    assert len(set(names)) == len(names)
    assert all(family.type == "gauge" and family.help for family in DATA_FAMILIES)


# --- package_info ---------------------------------------------------------------------------


def package_item(**overrides: str | list[str | None] | None) -> wmi.Item:
    properties: dict[str, str | list[str | None] | None] = {
        "PackageID": "ABC00012", "Name": "Office 365", "Version": "16.0", "PackageType": "0",
        "SourceVersion": "7", "SourceDate": "@2024-05-01T10:22:33.5Z", "PackageSize": "2048",
    }
    return item(**(properties | overrides))


def test_package_info_parse_item_reads_every_property() -> None:
    row = package_info.parse_item(package_item(PackageID=" ABC00012 "))
    assert row == PackageInfoRow(
        package_id="ABC00012", name="Office 365", version="16.0", package_type=0,
        source_version=7, source_date=T + 0.5, size_bytes=2048 * 1024,
    )


def test_package_info_nil_properties_are_empty_names_and_absent_values() -> None:
    row = package_info.parse_item(
        package_item(Name=None, Version=None, SourceVersion=None, SourceDate=None, PackageSize=None)
    )
    assert row == PackageInfoRow("ABC00012", "", "", 0, None, None, None)


def test_package_info_keeps_names_as_written_and_unknown_package_types_as_numbers() -> None:
    row = package_info.parse_item(package_item(Name=" Two  spaces ", PackageType="99"))
    assert row.name == " Two  spaces " and row.package_type == 99


def test_package_info_size_is_read_in_kb_and_kept_in_bytes() -> None:
    assert package_info.parse_item(package_item(PackageSize="0")).size_bytes == 0
    assert package_info.parse_item(package_item(PackageSize="4194304")).size_bytes == 4 * 1024**3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"PackageID": None}, "PackageID is missing"),
        ({"PackageID": "  "}, "PackageID is missing"),
        ({"PackageType": None}, "PackageType is missing"),
        ({"PackageType": "driver"}, "PackageType is not a number: 'driver'"),
        ({"PackageSize": "1.5"}, "PackageSize is not a number: '1.5'"),
        ({"SourceVersion": "v7"}, "SourceVersion is not a number: 'v7'"),
        ({"SourceDate": "@yesterday"}, "SourceDate is not a datetime this exporter knows: 'yesterday'"),
        ({"Name": ["a", "b"]}, "Name has 2 values where one was expected"),
    ],
)
def test_package_info_bad_properties_raise_row_error_naming_the_field(
    overrides: dict[str, str | list[str | None] | None], message: str
) -> None:
    with pytest.raises(RowError) as caught:
        package_info.parse_item(package_item(**overrides))
    assert str(caught.value) == message


def render_packages(rows: Iterable[PackageInfoRow], own_site: str | None = "ABC", target: str = "abc") -> Exposition:
    aggregate = PackageInfoAggregate()
    aggregate.add(rows)
    return aggregate.render(target, own_site)


def test_package_info_renders_exactly() -> None:
    exposition = render_packages([
        PackageInfoRow("ABC00012", "Office 365", "16.0", 0, 7, T + 0.5, 2048 * 1024),
        PackageInfoRow("ABC00013", "Boot image (x64)", "", 258, None, None, None),
        PackageInfoRow("ABC00014", "Future", "1", 99, 0, T, 0),
    ])
    ids = 'target="abc",site="ABC",package_id='
    assert exposition.samples == {
        "sccm_package_info": (
            f'sccm_package_info{{{ids}"ABC00012",name="Office 365",version="16.0",package_type="regular"}} 1\n'
            f'sccm_package_info{{{ids}"ABC00013",name="Boot image (x64)",version="",package_type="boot_image"}} 1\n'
            f'sccm_package_info{{{ids}"ABC00014",name="Future",version="1",package_type="99"}} 1\n'
        ),
        "sccm_package_source_version": (
            f'sccm_package_source_version{{{ids}"ABC00012"}} 7\n'
            f'sccm_package_source_version{{{ids}"ABC00014"}} 0\n'
        ),
        "sccm_package_size_bytes": (
            f'sccm_package_size_bytes{{{ids}"ABC00012"}} 2097152\n'
            f'sccm_package_size_bytes{{{ids}"ABC00014"}} 0\n'
        ),
        "sccm_package_source_timestamp_seconds": (
            f'sccm_package_source_timestamp_seconds{{{ids}"ABC00012"}} 1714558953.5\n'
            f'sccm_package_source_timestamp_seconds{{{ids}"ABC00014"}} 1714558953\n'
        ),
    }
    assert exposition.rows == 3 and exposition.series == 9


def test_package_info_every_package_type_has_its_name() -> None:
    rows = [PackageInfoRow(f"P{number}", "", "", number) for number in package_info.PACKAGE_TYPE_NAMES]
    got = parse(render_packages(rows), package_info.FAMILIES)["sccm_package_info"]
    assert sorted(dict(key)["package_type"] for key in got) == sorted([
        "regular", "driver", "task_sequence", "software_update", "device_setting", "virtual_app", "application",
        "image", "boot_image", "os_upgrade",
    ])


def test_package_info_is_accepted_by_the_parser_with_the_labels_of_design_md() -> None:
    got = parse(render_packages([PackageInfoRow("ABC00012", "Office", "16", 0, 7, T + 0.25, 1024)]),
                package_info.FAMILIES)
    ids = {"target": "abc", "site": "ABC", "package_id": "ABC00012"}
    assert got == {
        "sccm_package_info": {labels(**ids, name="Office", version="16", package_type="regular"): 1.0},
        "sccm_package_source_version": {labels(**ids): 7.0},
        "sccm_package_size_bytes": {labels(**ids): 1024.0},
        "sccm_package_source_timestamp_seconds": {labels(**ids): T + 0.25},
    }


def test_package_info_label_values_are_escaped() -> None:
    exposition = render_packages([PackageInfoRow(ODD, ODD, ODD, 0, 1)], own_site='S"1', target="t\\1")
    assert exposition.samples["sccm_package_source_version"] == (
        f'sccm_package_source_version{{target="t\\\\1",site="S\\"1",package_id="{ODD_ESCAPED}"}} 1\n'
    )
    got = parse(exposition, package_info.FAMILIES)
    assert got["sccm_package_info"] == {
        labels(target="t\\1", site='S"1', package_id=ODD, name=ODD, version=ODD, package_type="regular"): 1.0
    }


def test_package_info_site_is_the_targets_own_site() -> None:
    got = parse(render_packages([PackageInfoRow("P1", "", "", 0, 1)], own_site="XYZ"), package_info.FAMILIES)
    assert got["sccm_package_source_version"] == {labels(target="abc", site="XYZ", package_id="P1"): 1.0}


def test_package_info_a_package_seen_twice_keeps_its_last_row() -> None:
    aggregate = PackageInfoAggregate()
    aggregate.add([PackageInfoRow("P1", "old", "1", 0, 1, T, 1024), PackageInfoRow("P2", "other", "", 0)])
    aggregate.add([PackageInfoRow("P1", "new", "2", 0, 2, None, 2048)])  # a restarted enumeration
    assert aggregate.rows == 2
    got = parse(aggregate.render("abc", "ABC"), package_info.FAMILIES)
    p1 = {"target": "abc", "site": "ABC", "package_id": "P1"}
    assert [dict(key)["name"] for key in got["sccm_package_info"]] == ["new", "other"]
    assert got["sccm_package_source_version"] == {labels(**p1): 2.0}
    assert got["sccm_package_size_bytes"] == {labels(**p1): 2048.0}
    assert "sccm_package_source_timestamp_seconds" not in got


def test_package_info_without_rows_renders_empty_families() -> None:
    exposition = render_packages([])
    assert exposition.samples == {family.name: "" for family in package_info.FAMILIES}
    assert exposition.rows == exposition.series == 0
    assert parse(exposition, package_info.FAMILIES) == {}


# --- dp_content_state ---------------------------------------------------------------------------


def content_item(**overrides: str | list[str | None] | None) -> wmi.Item:
    properties: dict[str, str | list[str | None] | None] = {
        "PackageID": "ABC00012", "ServerNALPath": nal("DP01.corp.example.com"), "SiteCode": "ABC", "State": "0",
        "PackageType": "0", "SourceVersion": "7", "LastCopied": "@2024-05-01T10:22:33.488171Z",
        "SummaryDate": "@2024-05-01T10:30:00Z",
    }
    return item(**(properties | overrides))


def test_dp_content_state_parse_item_reads_every_property_it_exports() -> None:
    row = dp_content_state.parse_item(content_item(PackageID=" ABC00012 "), "OWN")
    assert row == DPContentRow("ABC", "ABC00012", "DP01.corp.example.com", 0, T + 0.488171)


def test_dp_content_state_server_is_the_host_of_the_nal_path_as_written() -> None:
    assert dp_content_state.parse_item(content_item(ServerNALPath=nal("Dp02.CORP")), "ABC").server == "Dp02.CORP"
    assert dp_content_state.parse_item(content_item(ServerNALPath="\\\\DP03\\SMSPKGD$"), "ABC").server == "DP03"


@pytest.mark.parametrize("site_code", [None, "", "  "])
def test_dp_content_state_missing_site_code_is_the_targets_site(site_code: str | None) -> None:
    assert dp_content_state.parse_item(content_item(SiteCode=site_code), "OWN").site == "OWN"


def test_dp_content_state_nil_last_copied_is_none_and_unknown_states_stay_numbers() -> None:
    row = dp_content_state.parse_item(content_item(LastCopied=None, State="42"), "ABC")
    assert row.last_copied is None and row.state == 42


def test_dp_content_state_properties_it_does_not_export_are_not_checked() -> None:
    row = dp_content_state.parse_item(content_item(PackageType="x", SourceVersion=None, SummaryDate="?"), "ABC")
    assert row.package_id == "ABC00012"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"PackageID": None}, "PackageID is missing"),
        ({"ServerNALPath": None}, "ServerNALPath is missing"),
        ({"ServerNALPath": " "}, "ServerNALPath is missing"),
        ({"State": None}, "State is missing"),
        ({"State": "Installed"}, "State is not a number: 'Installed'"),
        ({"LastCopied": "@2024-02-30T00:00:00Z"}, "LastCopied is not a valid date"),
        ({"ServerNALPath": ["\\\\DP01", "\\\\DP02"]}, "ServerNALPath has 2 values where one was expected"),
    ],
)
def test_dp_content_state_bad_properties_raise_row_error_naming_the_field(
    overrides: dict[str, str | list[str | None] | None], message: str
) -> None:
    with pytest.raises(RowError, match=message.replace("(", r"\(")):
        dp_content_state.parse_item(content_item(**overrides), "ABC")


def render_content(rows: Iterable[DPContentRow], per_row: str = "all", target: str = "abc") -> Exposition:
    aggregate = DPContentAggregate(per_row)  # type: ignore[arg-type]
    aggregate.add(rows)
    return aggregate.render(target, "ABC")


def zero_counts(server: str, site: str = "ABC", **counts: int) -> list[str]:
    """The count lines of one DP: every known state in order, then unknown ones (as `state_9=1`)."""
    states = [*dp_content_state.STATE_NAMES.values(), *(name[6:] for name in counts if name.startswith("state_"))]
    values = {name.removeprefix("state_"): value for name, value in counts.items()}
    return [
        f'sccm_dp_content_state_packages{{target="abc",site="{site}",server="{server}",state="{state}"}} '
        f"{values.get(state, 0)}"
        for state in states
    ]


def test_dp_content_state_renders_exactly() -> None:
    exposition = render_content([
        DPContentRow("ABC", "P1", "DP01", 0, T + 0.5),
        DPContentRow("ABC", "P2", "DP01", 3, None),
        DPContentRow("ABC", "P1", "DP02", 9, T),
    ])
    head = 'target="abc",site="ABC"'
    assert lines(exposition.samples["sccm_dp_content_state"]) == [
        f'sccm_dp_content_state{{{head},package_id="P1",server="DP01",state="installed"}} 1',
        f'sccm_dp_content_state{{{head},package_id="P2",server="DP01",state="install_failed"}} 1',
        f'sccm_dp_content_state{{{head},package_id="P1",server="DP02",state="9"}} 1',
    ]
    assert lines(exposition.samples["sccm_dp_content_state_packages"]) == [
        *zero_counts("DP01", installed=1, install_failed=1),
        *zero_counts("DP02", state_9=1),
    ]
    assert lines(exposition.samples["sccm_dp_content_last_copied_timestamp_seconds"]) == [
        f'sccm_dp_content_last_copied_timestamp_seconds{{{head},package_id="P1",server="DP01"}} 1714558953.5',
        f'sccm_dp_content_last_copied_timestamp_seconds{{{head},package_id="P1",server="DP02"}} 1714558953',
    ]
    assert exposition.rows == 3 and exposition.series == 3 + 2 * 9 + 1 + 2


def test_dp_content_state_every_known_state_has_its_name() -> None:
    rows = [DPContentRow("ABC", f"P{state}", "DP01", state) for state in range(9)]
    got = parse(render_content(rows), dp_content_state.FAMILIES)["sccm_dp_content_state"]
    assert [dict(key)["state"] for key in got] == [
        "installed", "install_pending", "install_retrying", "install_failed", "removal_pending",
        "removal_retrying", "removal_failed", "content_updating", "content_monitoring",
    ]


def test_dp_content_state_is_accepted_by_the_parser_with_the_labels_of_design_md() -> None:
    got = parse(render_content([DPContentRow("ABC", "P1", "DP01", 2, T + 0.25)]), dp_content_state.FAMILIES)
    assert label_names(got) == {
        "sccm_dp_content_state": {"target", "site", "package_id", "server", "state"},
        "sccm_dp_content_state_packages": {"target", "site", "server", "state"},
        "sccm_dp_content_last_copied_timestamp_seconds": {"target", "site", "package_id", "server"},
    }
    row = {"target": "abc", "site": "ABC", "package_id": "P1", "server": "DP01"}
    assert got["sccm_dp_content_last_copied_timestamp_seconds"] == {labels(**row): T + 0.25}
    assert got["sccm_dp_content_state"] == {labels(**row, state="install_retrying"): 1.0}


def test_dp_content_state_counts_are_complete_per_dp_and_per_site() -> None:
    got = parse(render_content([
        DPContentRow("ABC", "P1", "DP01", 0),
        DPContentRow("ABC", "P2", "DP01", 0),
        DPContentRow("ABC", "P3", "DP01", 7),
        DPContentRow("DEF", "P1", "DP01", 12),  # the same host under another site is another DP
    ]), dp_content_state.FAMILIES)["sccm_dp_content_state_packages"]
    abc = {dict(key)["state"]: value for key, value in got.items() if dict(key)["site"] == "ABC"}
    def_ = {dict(key)["state"]: value for key, value in got.items() if dict(key)["site"] == "DEF"}
    assert abc == dict.fromkeys(dp_content_state.STATE_NAMES.values(), 0.0) | {"installed": 2.0,
                                                                               "content_updating": 1.0}
    assert def_ == dict.fromkeys(dp_content_state.STATE_NAMES.values(), 0.0) | {"12": 1.0}


def test_dp_content_state_a_package_seen_twice_on_a_dp_is_one_row_the_last() -> None:
    aggregate = DPContentAggregate("all")
    aggregate.add([
        DPContentRow("ABC", "P1", "DP01", 1, T),  # install_pending, then...
        DPContentRow("ABC", "P2", "DP01", 0, T),
        DPContentRow("ABC", "P1", "DP02", 0, T),  # the same package on another DP: its own row
    ])
    aggregate.add([DPContentRow("ABC", "P1", "DP01", 3, T + 1)])  # ...failed, read again later
    assert aggregate.rows == 3
    got = parse(aggregate.render("abc", "ABC"), dp_content_state.FAMILIES)
    p1_dp01 = {"target": "abc", "site": "ABC", "package_id": "P1", "server": "DP01"}
    states = {(dict(key)["package_id"], dict(key)["server"]): dict(key)["state"]
              for key in got["sccm_dp_content_state"]}
    assert states == {("P1", "DP01"): "install_failed", ("P2", "DP01"): "installed", ("P1", "DP02"): "installed"}
    dp01 = {dict(key)["state"]: value for key, value in got["sccm_dp_content_state_packages"].items()
            if dict(key)["server"] == "DP01"}
    assert dp01["install_pending"] == 0 and dp01["install_failed"] == 1 and dp01["installed"] == 1
    assert sum(dp01.values()) == 2
    assert got["sccm_dp_content_last_copied_timestamp_seconds"][labels(**p1_dp01)] == T + 1


def test_dp_content_state_a_later_row_without_last_copied_drops_the_earlier_time() -> None:
    got = parse(render_content([DPContentRow("ABC", "P1", "DP01", 0, T), DPContentRow("ABC", "P1", "DP01", 1, None)]),
                dp_content_state.FAMILIES)
    assert "sccm_dp_content_last_copied_timestamp_seconds" not in got
    assert len(got["sccm_dp_content_state"]) == 1


ROWS_OF_EVERY_KIND = [
    DPContentRow("ABC", "P1", "DP01", 0, T),
    DPContentRow("ABC", "P2", "DP01", 3, T + 0.5),
    DPContentRow("ABC", "P3", "DP01", 42, None),
    DPContentRow("ABC", "P1", "DP02", 1, T),
    DPContentRow("ABC", "P2", "DP02", 1, T),
    DPContentRow("ABC", "P2", "DP02", 0, T + 2),  # read again, now installed: one row, installed
]


@pytest.mark.parametrize(
    ("per_row", "exported"),
    [
        ("all", {("P1", "DP01", "installed"), ("P2", "DP01", "install_failed"), ("P3", "DP01", "42"),
                 ("P1", "DP02", "install_pending"), ("P2", "DP02", "installed")}),
        ("not_installed", {("P2", "DP01", "install_failed"), ("P3", "DP01", "42"), ("P1", "DP02", "install_pending")}),
        ("none", set()),
    ],
)
def test_dp_content_state_per_row_limits_the_per_row_families_and_counts_stay_complete(
    per_row: str, exported: set[tuple[str, str, str]]
) -> None:
    got = parse(render_content(ROWS_OF_EVERY_KIND, per_row), dp_content_state.FAMILIES)
    rows = {(dict(key)["package_id"], dict(key)["server"], dict(key)["state"])
            for key in got.get("sccm_dp_content_state", {})}
    assert rows == exported
    copied = {(dict(key)["package_id"], dict(key)["server"])
              for key in got.get("sccm_dp_content_last_copied_timestamp_seconds", {})}
    assert copied == {(package, server) for package, server, _ in exported if package != "P3"}  # P3: nil time
    assert lines(render_content(ROWS_OF_EVERY_KIND, per_row).samples["sccm_dp_content_state_packages"]) == [
        *zero_counts("DP01", installed=1, install_failed=1, state_42=1),
        *zero_counts("DP02", installed=1, install_pending=1),
    ]
    assert render_content(ROWS_OF_EVERY_KIND, per_row).rows == 5


def test_dp_content_state_rows_added_page_by_page_give_what_all_at_once_gives() -> None:
    rows = [DPContentRow("ABC", f"P{n % 37}", f"DP{n % 5}", n % 11, T + n if n % 3 else None) for n in range(500)]
    whole = DPContentAggregate("not_installed")
    whole.add(rows)
    paged = DPContentAggregate("not_installed")
    for start in range(0, len(rows), 33):
        paged.add(rows[start : start + 33])
    assert paged.rows == whole.rows == len({(row.package_id, row.server) for row in rows})
    assert paged.render("abc", "ABC").samples == whole.render("abc", "ABC").samples


def test_dp_content_state_label_values_are_escaped() -> None:
    exposition = render_content([DPContentRow(ODD, ODD, ODD, 0, T)])
    assert lines(exposition.samples["sccm_dp_content_state"]) == [
        f'sccm_dp_content_state{{target="abc",site="{ODD_ESCAPED}",package_id="{ODD_ESCAPED}",'
        f'server="{ODD_ESCAPED}",state="installed"}} 1'
    ]
    got = parse(exposition, dp_content_state.FAMILIES)
    assert got["sccm_dp_content_last_copied_timestamp_seconds"] == {
        labels(target="abc", site=ODD, package_id=ODD, server=ODD): float(T)
    }
    assert len(got["sccm_dp_content_state_packages"]) == 9


def test_dp_content_state_without_rows_renders_empty_families() -> None:
    for per_row in ("all", "not_installed", "none"):
        exposition = render_content([], per_row)
        assert exposition.samples == {family.name: "" for family in dp_content_state.FAMILIES}
        assert exposition.rows == exposition.series == 0
        assert parse(exposition, dp_content_state.FAMILIES) == {}


# --- dp_info --------------------------------------------------------------------------------


def dp_item(**overrides: str | list[str | None] | None) -> wmi.Item:
    properties: dict[str, str | list[str | None] | None] = {
        "NALPath": nal("DP01.corp.example.com"), "ServerName": "DP01.corp.example.com", "SiteCode": "ABC",
        "IsPullDP": "true", "IsPXE": "false", "IsMulticast": "true", "IsPeerDP": "false",
        "InternetFacing": "true", "GroupCount": "3",
    }
    return item(**(properties | overrides))


def test_dp_info_parse_item_reads_every_property() -> None:
    row = dp_info.parse_item(dp_item(), "OWN")
    assert row == DPInfoRow("ABC", "DP01.corp.example.com", pull=True, pxe=False, multicast=True,
                            internet_facing=True, groups=3)


def test_dp_info_server_is_the_host_of_the_nal_path_as_written_not_the_server_name() -> None:
    row = dp_info.parse_item(dp_item(NALPath=nal("Dp01.CORP.example.com"), ServerName="dp01"), "ABC")
    assert row.server == "Dp01.CORP.example.com"


@pytest.mark.parametrize("nal_path", [None, "", "  "])
def test_dp_info_server_name_stands_in_when_the_nal_path_is_missing(nal_path: str | None) -> None:
    assert dp_info.parse_item(dp_item(NALPath=nal_path, ServerName=" DP09 "), "ABC").server == "DP09"


@pytest.mark.parametrize("site_code", [None, ""])
def test_dp_info_missing_site_code_is_the_targets_site(site_code: str | None) -> None:
    assert dp_info.parse_item(dp_item(SiteCode=site_code), "OWN").site == "OWN"


def test_dp_info_nil_flags_are_false_and_nil_group_count_is_none() -> None:
    row = dp_info.parse_item(
        dp_item(IsPullDP=None, IsPXE=None, IsMulticast=None, IsPeerDP=None, InternetFacing=None, GroupCount=None),
        "ABC",
    )
    assert row == DPInfoRow("ABC", "DP01.corp.example.com")


def test_dp_info_reads_flags_as_powershell_exports_write_them() -> None:
    row = dp_info.parse_item(dp_item(IsPullDP="False", IsPXE="True", GroupCount="0"), "ABC")
    assert (row.pull, row.pxe, row.groups) == (False, True, 0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"NALPath": None, "ServerName": None}, "NALPath and ServerName are both missing"),
        ({"NALPath": "", "ServerName": " "}, "NALPath and ServerName are both missing"),
        ({"IsPullDP": "yes"}, "IsPullDP is not a boolean: 'yes'"),
        ({"IsPXE": "2"}, "IsPXE is not a boolean: '2'"),
        ({"IsMulticast": "maybe"}, "IsMulticast is not a boolean"),
        ({"InternetFacing": "x"}, "InternetFacing is not a boolean"),
        ({"GroupCount": "many"}, "GroupCount is not a number: 'many'"),
        ({"GroupCount": ["1", "2"]}, "GroupCount has 2 values where one was expected"),
    ],
)
def test_dp_info_bad_properties_raise_row_error_naming_the_field(
    overrides: dict[str, str | list[str | None] | None], message: str
) -> None:
    with pytest.raises(RowError, match=message):
        dp_info.parse_item(dp_item(**overrides), "ABC")


def render_dps(rows: Iterable[DPInfoRow], target: str = "abc") -> Exposition:
    aggregate = DPInfoAggregate()
    aggregate.add(rows)
    return aggregate.render(target, "ABC")


def test_dp_info_renders_exactly() -> None:
    exposition = render_dps([
        DPInfoRow("ABC", "DP01", pull=True, pxe=False, multicast=True, internet_facing=False, groups=3),
        DPInfoRow("ABC", "DP02"),
    ])
    assert exposition.samples == {
        "sccm_distribution_point_info": (
            'sccm_distribution_point_info{target="abc",site="ABC",server="DP01",pull="true",pxe="false",'
            'multicast="true",internet_facing="false"} 1\n'
            'sccm_distribution_point_info{target="abc",site="ABC",server="DP02",pull="false",pxe="false",'
            'multicast="false",internet_facing="false"} 1\n'
        ),
        "sccm_distribution_point_groups": 'sccm_distribution_point_groups{target="abc",site="ABC",server="DP01"} 3\n',
    }
    assert exposition.rows == 2 and exposition.series == 3


def test_dp_info_is_accepted_by_the_parser_with_the_labels_of_design_md() -> None:
    got = parse(render_dps([DPInfoRow("ABC", "DP01", pxe=True, internet_facing=True, groups=0)]), dp_info.FAMILIES)
    dp = {"target": "abc", "site": "ABC", "server": "DP01"}
    assert got == {
        "sccm_distribution_point_info": {
            labels(**dp, pull="false", pxe="true", multicast="false", internet_facing="true"): 1.0
        },
        "sccm_distribution_point_groups": {labels(**dp): 0.0},
    }


def test_dp_info_a_dp_seen_twice_keeps_its_last_row_and_sites_keep_theirs_apart() -> None:
    aggregate = DPInfoAggregate()
    aggregate.add([DPInfoRow("ABC", "DP01", pull=False, groups=1), DPInfoRow("DEF", "DP01", groups=5)])
    aggregate.add([DPInfoRow("ABC", "DP01", pull=True, groups=None)])
    assert aggregate.rows == 2
    got = parse(aggregate.render("abc", "ABC"), dp_info.FAMILIES)
    assert {(dict(key)["site"], dict(key)["pull"]) for key in got["sccm_distribution_point_info"]} == {
        ("ABC", "true"), ("DEF", "false")
    }
    assert got["sccm_distribution_point_groups"] == {labels(target="abc", site="DEF", server="DP01"): 5.0}


def test_dp_info_label_values_are_escaped() -> None:
    exposition = render_dps([DPInfoRow(ODD, ODD, groups=2)], target='t"1')
    assert exposition.samples["sccm_distribution_point_groups"] == (
        f'sccm_distribution_point_groups{{target="t\\"1",site="{ODD_ESCAPED}",server="{ODD_ESCAPED}"}} 2\n'
    )
    got = parse(exposition, dp_info.FAMILIES)
    assert got["sccm_distribution_point_groups"] == {labels(target='t"1', site=ODD, server=ODD): 2.0}
    assert len(got["sccm_distribution_point_info"]) == 1


def test_dp_info_without_rows_renders_empty_families() -> None:
    exposition = render_dps([])
    assert exposition.samples == {family.name: "" for family in dp_info.FAMILIES}
    assert exposition.rows == exposition.series == 0
    assert parse(exposition, dp_info.FAMILIES) == {}
