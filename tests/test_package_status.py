"""The package_status collector (SMS_PackageStatus rows -> the core families of docs/metrics.md) and the
shared text-format helpers (exporter/families.py), checked with prometheus_client's parser."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from conftest import render, render_rows, target_status
from prometheus_client.parser import text_string_to_metric_families

from exporter.collectors.package_status.row import PackageStatusRow
from exporter.exposition import exporter_families
from exporter.families import (
    CHUNK_LINES,
    Exposition,
    Family,
    cached,
    complete,
    count_lines,
    escape_label_value,
    format_value,
    lines_piece,
)

Labels = tuple[tuple[str, str], ...]


def row(
    package: str = "ABC00001",
    server: str = "DP01.corp.example.com",
    type_: int = 2,
    status: int = 3,
    *,
    site: str = "ABC",
    personality: int = 0,
    update_time: float | None = 1714558953.5,
) -> PackageStatusRow:
    return PackageStatusRow(site, package, server, type_, status, personality, update_time, f"\\\\{server}\\")


def samples(rows: Sequence[PackageStatusRow], per_row: str = "all", own_site: str | None = None,
            target: str = "abc") -> dict[str, dict[Labels, float]]:
    """Render rows as /metrics would serve them and parse them back, family -> labels -> value."""
    exposition = render_rows(target, rows, per_row, own_site)  # type: ignore[arg-type]
    status = target_status(target, 1, True, 0.5, 1.0, None, None, {}, exposition, False)
    parsed: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(render([status])):
        for sample in family.samples:
            parsed.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return parsed


def labels(**kwargs: str) -> Labels:
    return tuple(sorted(kwargs.items()))


def test_each_row_is_one_series_with_value_one_and_its_update_time() -> None:
    got = samples([row(update_time=1714558953.488171)])
    key = labels(target="abc", site="ABC", package_id="ABC00001", server="DP01.corp.example.com",
                 type="copy", status="installed", personality="none")
    assert got["sccm_package_status"] == {key: 1.0}
    assert got["sccm_package_status_update_timestamp_seconds"] == {key: 1714558953.488171}


def test_nil_update_time_leaves_the_timestamp_series_out() -> None:
    got = samples([row(update_time=None)])
    assert len(got["sccm_package_status"]) == 1
    assert "sccm_package_status_update_timestamp_seconds" not in got


def test_status_counts_are_complete_per_site_and_type_with_zeros() -> None:
    got = samples([row(status=5), row(server="DP02", status=5), row(type_=1, server="CM01", status=3)])
    counts = got["sccm_package_status_rows"]
    assert len(counts) == 2 * 8  # master and copy, every known status
    assert counts[labels(target="abc", site="ABC", type="copy", status="failed")] == 2
    assert counts[labels(target="abc", site="ABC", type="copy", status="installed")] == 0
    assert counts[labels(target="abc", site="ABC", type="master", status="installed")] == 1
    assert sum(counts.values()) == 3


def test_own_site_has_zero_counts_even_without_rows() -> None:
    counts = samples([], own_site="XYZ")["sccm_package_status_rows"]
    assert len(counts) == 16 and set(counts.values()) == {0.0}


def test_server_counts_cover_copy_rows_only_every_status_per_server() -> None:
    got = samples([row(status=4), row(package="ABC00002", status=4), row(type_=1, server="CM01")])
    counts = got["sccm_server_package_status_rows"]
    assert {dict(k)["server"] for k in counts} == {"DP01.corp.example.com"}
    assert len(counts) == 8
    assert counts[labels(target="abc", site="ABC", server="DP01.corp.example.com", status="retry")] == 2


def test_package_servers_counts_distinct_servers_and_packages_on_no_dp_show_zeros() -> None:
    rows = [
        row(server="DP01", status=5),
        row(server="DP01", status=5, personality=1),  # same server, another personality: one server
        row(server="DP02", status=5),
        row(package="ABC00009", type_=1, server="CM01"),  # only a MASTER row: on no DP yet
    ]
    counts = samples(rows)["sccm_package_status_servers"]
    assert counts[labels(target="abc", site="ABC", package_id="ABC00001", status="failed")] == 2
    on_no_dp = {k: v for k, v in counts.items() if dict(k)["package_id"] == "ABC00009"}
    assert len(on_no_dp) == 8 and set(on_no_dp.values()) == {0.0}


def test_unknown_enum_values_are_exported_as_numbers_never_dropped() -> None:
    got = samples([row(status=9, type_=3, personality=7)])
    (key,) = got["sccm_package_status"]
    assert dict(key)["status"] == "9" and dict(key)["type"] == "3" and dict(key)["personality"] == "7"
    assert got["sccm_package_status_rows"][labels(target="abc", site="ABC", type="3", status="9")] == 1


def test_duplicate_rows_become_one_series() -> None:
    got = samples([row(update_time=1.0), row(update_time=2.0)])
    assert list(got["sccm_package_status_update_timestamp_seconds"].values()) == [2.0]
    assert sum(got["sccm_package_status_rows"].values()) == 1


@pytest.mark.parametrize(
    ("per_row", "expected_statuses"),
    [("all", {"installed", "failed"}), ("not_installed", {"failed"}), ("none", set())],
)
def test_per_row_limits_per_row_families_but_counts_stay_complete(per_row: str, expected_statuses: set[str]) -> None:
    got = samples([row(status=3), row(server="DP02", status=5)], per_row=per_row)
    assert {dict(k)["status"] for k in got.get("sccm_package_status", {})} == expected_statuses
    assert sum(got["sccm_package_status_rows"].values()) == 2


def test_label_values_are_escaped_whatever_a_field_holds() -> None:
    nasty = 'DP"01\\share\nnext'
    got = samples([row(server=nasty, package="P\u00e9\u20ac")], target='t"1')
    (key,) = got["sccm_package_status"]
    assert dict(key)["server"] == nasty
    assert dict(key)["package_id"] == "P\u00e9\u20ac"
    assert dict(key)["target"] == 't"1'


def test_escape_and_format_helpers() -> None:
    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    assert format_value(3.0) == "3"
    assert format_value(1714558953.488171) == "1714558953.488171"


def test_health_families_per_target_with_every_reason() -> None:
    status = target_status("abc", 3, False, 2.5, None, "timeout", "slow", {"timeout": 2}, None, False)
    parsed = {f.name: f for f in text_string_to_metric_families(render([status]))}
    assert [s.value for s in parsed["sccm_up"].samples] == [0.0]
    # prometheus_client names a counter family without its _total suffix
    assert parsed["sccm_poll_errors"].type == "counter"
    errors = {s.labels["reason"]: s.value for s in parsed["sccm_poll_errors"].samples}
    assert errors == {"timeout": 2, "connection": 0, "auth": 0, "wmi_fault": 0, "parse": 0, "other": 0}
    assert [s.value for s in parsed["sccm_last_poll_success_timestamp_seconds"].samples] == [0.0]
    assert [s.value for s in parsed["sccm_poll_duration_seconds"].samples] == [2.5]
    # The build info is the exporter's, not the target's: /metrics carries it, a probe body does not.
    assert "sccm_exporter_build_info" not in parsed
    own = {f.name: f for f in text_string_to_metric_families(exporter_families(True, 1.0))}
    (info,) = own["sccm_exporter_build_info"].samples
    assert set(info.labels) == {"version", "python_version"}


def test_several_targets_share_one_header_per_family() -> None:
    statuses = []
    for name in ("one", "two"):
        exposition = render_rows(name, [row()], "all")
        statuses.append(target_status(name, 1, True, 0.1, 1.0, None, None, {}, exposition, False))
    text = render(statuses)
    assert text.count("# TYPE sccm_package_status gauge") == 1
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {s.labels["target"] for s in families["sccm_package_status"].samples} == {"one", "two"}


def test_fast_path_matches_prometheus_client_rendering_of_the_same_rows() -> None:
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    rows = [row(), row(server="DP02", status=5, update_time=None), row(type_=1, server="CM01", status=9)]
    registry = CollectorRegistry()
    gauge = Gauge("sccm_package_status", "h", ["target", "site", "package_id", "server", "type", "status",
                                              "personality"], registry=registry)
    names = {2: "copy", 1: "master"}
    status_names = {3: "installed", 5: "failed", 9: "9"}
    for r in rows:
        gauge.labels("abc", r.site, r.package_id, r.server, names[r.type], status_names[r.status], "none").set(1)
    reference = {
        tuple(sorted(s.labels.items())): s.value
        for f in text_string_to_metric_families(generate_latest(registry).decode())
        for s in f.samples
    }
    assert samples(rows)["sccm_package_status"] == reference


# --- the shared text-format helpers of exporter/families.py ------------------------------------


def test_complete_lists_every_known_value_then_the_unknown_ones_that_occur() -> None:
    assert list(complete({3: 2, 9: 1, 0: 0}, range(8))) == [
        (0, 0), (1, 0), (2, 0), (3, 2), (4, 0), (5, 0), (6, 0), (7, 0), (9, 1)
    ]
    assert list(complete({}, (0, 1))) == [(0, 0), (1, 0)]


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (-3.0, "-3"), (2097152, "2097152"), (1714558953.0, "1714558953"), (1714558953.5, "1714558953.5"),
     (-0.5, "-0.5"), (0.1 + 0.2, "0.30000000000000004"), (2**70, "1.1805916207174113e+21")],
)
def test_format_value_writes_integers_plainly_and_floats_exactly(value: float, text: str) -> None:
    assert format_value(value) == text
    assert float(text) == float(value)


def test_family_header_escapes_its_help() -> None:
    assert Family("sccm_x", "gauge", "a\\b\nc").header() == "# HELP sccm_x a\\\\b\\nc\n# TYPE sccm_x gauge\n"


def test_lines_piece_keeps_every_line_across_chunks() -> None:
    many = lines_piece(f"sccm_x{{n=\"{n}\"}} 1\n" for n in range(2 * CHUNK_LINES + 5))
    assert len(many.chunks) == 3 and count_lines(many) == 2 * CHUNK_LINES + 5
    assert many.text.splitlines()[-1] == f'sccm_x{{n="{2 * CHUNK_LINES + 4}"}} 1'
    empty = lines_piece([])
    assert empty.size == 0 and empty.text == "" and count_lines(empty) == 0


def test_exposition_counts_its_series_over_every_family() -> None:
    families = {"a": lines_piece(["a 1\n", "a 2\n"]), "b": lines_piece([]), "c": lines_piece(["c 1\n"])}
    exposition = Exposition.of(families, rows=2)
    assert (exposition.rows, exposition.series) == (2, 3)
    assert exposition.samples == {"a": "a 1\na 2\n", "b": "", "c": "c 1\n"}


def test_escaping_is_memoised_per_render_and_gives_the_same_text() -> None:
    calls: list[str] = []

    def escape(value: str) -> str:
        calls.append(value)
        return escape_label_value(value)

    esc = cached(escape)
    assert [esc('a"b'), esc('a"b'), esc("c")] == ['a\\"b', 'a\\"b', "c"]
    assert calls == ['a"b', "c"]
