"""The demo source: a deterministic simulated site whose rows move plausibly over time."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
from conftest import collector_rows
from prometheus_client.parser import text_string_to_metric_families

from exporter.collectors import dp_content_state, dp_info, package_info
from exporter.collectors.dp_content_state import STATE_NAMES, DPContentAggregate, DPContentRow
from exporter.collectors.dp_info import DPInfoAggregate, DPInfoRow
from exporter.collectors.package_info import PACKAGE_TYPE_NAMES, PackageInfoAggregate, PackageInfoRow
from exporter.collectors.package_status.row import STATUS_NAMES, TYPE_COPY, TYPE_MASTER, PackageStatusRow
from exporter.config import TargetConfig
from exporter.families import Exposition, Family
from exporter.rows import host_from_nal
from exporter.sources.demo import DemoSite, DemoSource, default_seed

T0 = datetime(2024, 5, 1, tzinfo=UTC).timestamp()
DAY = 86_400
SENT, RECEIVED, INSTALLED, RETRY, FAILED, REMOVED, PENDING_REMOVE = 1, 2, 3, 4, 5, 6, 7


def target(name: str = "demo", **values: Any) -> TargetConfig:
    return TargetConfig(name=name, source="demo", interval=300, timeout=120, per_row="all", stale_after=900, **values)


def rows_at(t: float, **values: Any) -> list[PackageStatusRow]:
    return DemoSource(target(**values)).rows_at(t)


def by_pair(rows: list[PackageStatusRow]) -> dict[tuple[str, str], PackageStatusRow]:
    return {(r.package_id, r.server): r for r in rows}


def window(step: int = 600, length: int = DAY) -> range:
    return range(int(T0), int(T0) + length, step)


def test_shape_of_the_default_site() -> None:
    rows = rows_at(T0)
    assert len(rows) == 40 * (12 + 1)
    masters = [r for r in rows if r.type == TYPE_MASTER]
    assert [r.package_id for r in masters] == [f"DEM{n:05X}" for n in range(1, 41)]
    assert {r.server for r in masters} == {"CM01.demo.example.com"}
    assert {r.status for r in masters} == {INSTALLED}
    copies = [r for r in rows if r.type == TYPE_COPY]
    assert sorted({r.server for r in copies}) == [f"DP{n:02d}.demo.example.com" for n in range(1, 13)]
    assert {r.site for r in rows} == {"DEM"}
    assert {r.personality for r in rows} == {0}


def test_pkg_server_is_a_nal_path_that_reads_back_to_the_server() -> None:
    rows = rows_at(T0)
    assert rows[1].pkg_server == (
        '["Display=\\\\DP01.demo.example.com\\"]MSWNET:["SMS_SITE=DEM"]\\\\DP01.demo.example.com\\'
    )
    assert all(host_from_nal(r.pkg_server) == r.server for r in rows)


def test_row_keys_are_unique_at_every_time() -> None:
    for t in window(step=3600):
        rows = rows_at(t)
        assert len({r.key for r in rows}) == len(rows)


def test_configured_site_code_counts_and_wide_dp_numbers() -> None:
    source = DemoSource(target(site_code="XYZ", packages=3, servers=120))
    rows = source.rows_at(T0)
    assert len(rows) == 3 * 121
    assert source.site_code() == "XYZ"
    assert {r.package_id for r in rows} == {"XYZ00001", "XYZ00002", "XYZ00003"}
    assert "DP001.demo.example.com" in {r.server for r in rows}
    assert all('"SMS_SITE=XYZ"' in r.pkg_server for r in rows)


def test_no_distribution_points_leaves_the_master_rows() -> None:
    assert [r.type for r in rows_at(T0, packages=3, servers=0)] == [TYPE_MASTER] * 3


def test_deterministic_for_a_seed_and_different_for_another() -> None:
    assert rows_at(T0, seed=7) == rows_at(T0, seed=7)
    assert rows_at(T0, seed=7) != rows_at(T0, seed=8)


def test_default_seed_comes_from_the_target_name() -> None:
    assert default_seed("demo") == default_seed("demo")  # stable, not Python's salted hash()
    assert DemoSource(target("lab")).site.seed == default_seed("lab")
    assert DemoSource(target("lab")).rows_at(T0) == DemoSource(target("lab")).rows_at(T0)
    assert DemoSource(target("lab")).rows_at(T0) != DemoSource(target("prod")).rows_at(T0)


def test_statuses_move_and_update_time_follows_the_status() -> None:
    before = by_pair(rows_at(T0))
    after = by_pair(rows_at(T0 + 3600))
    moved = [pair for pair in before if before[pair].status != after[pair].status]
    assert moved, "nothing changed in an hour"
    for pair in moved:
        assert after[pair].update_time != before[pair].update_time
    for pair, row in after.items():
        # A row whose update time did not move did not change at all.
        if row.update_time == before[pair].update_time:
            assert row == before[pair]


def test_update_time_is_never_in_the_future() -> None:
    for t in window(step=1800):
        assert all(r.update_time is not None and r.update_time <= t for r in rows_at(t))


def test_every_status_appears_over_a_day() -> None:
    seen: Counter[int] = Counter()
    for t in window():
        seen.update(r.status for r in rows_at(t))
    assert set(seen) == set(STATUS_NAMES) - {0}, seen


def test_the_mix_looks_like_a_healthy_site() -> None:
    troubled = []
    for t in window():
        counts = Counter(r.status for r in rows_at(t) if r.type == TYPE_COPY)
        total = sum(counts.values())
        assert counts[INSTALLED] / total > 0.8, counts
        troubled.append((counts[RETRY] + counts[FAILED]) / total)
    # A few percent failing or retrying on average; some at almost every moment.
    assert 0.005 < sum(troubled) / len(troubled) < 0.08
    assert sum(1 for share in troubled if share > 0) / len(troubled) > 0.9


def test_a_retry_ends_installed_or_failed() -> None:
    source = DemoSource(target(packages=40, servers=12))
    outcomes: set[int] = set()
    previous = by_pair(source.rows_at(T0))
    for t in window(step=300, length=3 * DAY):
        current = by_pair(source.rows_at(t))
        outcomes |= {current[p].status for p, r in previous.items() if r.status == RETRY and current[p].status != RETRY}
        previous = current
    # Or `sent`, when a new version of the package starts over before the retry ends.
    assert {INSTALLED, FAILED} <= outcomes <= {INSTALLED, FAILED, SENT}


def test_memoised_polls_equal_the_pure_function_whatever_the_order() -> None:
    source = DemoSource(target(seed=3))
    site = DemoSite.build("DEM", 40, 12, 3)
    times = [T0, T0 + 300, T0 + 600, T0 + 7 * 3600, T0 + 60, T0 + 61, T0 + 2 * DAY, T0 + 2 * DAY + 0.5]
    for t in times:
        assert source.rows_at(t) == site.rows_at(t)


def test_a_poll_reuses_the_rows_that_did_not_change() -> None:
    source = DemoSource(target(packages=200, servers=50))
    first = source.rows_at(T0)
    second = source.rows_at(T0 + 300)
    reused = sum(1 for a, b in zip(first, second, strict=True) if a is b)
    assert reused / len(first) > 0.9


def test_rows_uses_the_clock() -> None:
    now = [T0]
    source = DemoSource(target(), clock=lambda: now[0])
    assert list(collector_rows(source, "package_status", time.monotonic() + 10)) == rows_at(T0)
    now[0] = T0 + 5 * 3600
    assert list(collector_rows(source, "package_status", time.monotonic() + 10)) == rows_at(T0 + 5 * 3600)
    source.close()


def test_wall_clock_by_default() -> None:
    rows = list(collector_rows(DemoSource(target()), "package_status", time.monotonic() + 10))
    assert all(r.update_time is not None and r.update_time <= time.time() for r in rows)


@pytest.mark.parametrize("seed", [0, 1, 2**40])
def test_large_seeds_and_zero_work(seed: int) -> None:
    assert len(rows_at(T0, seed=seed, packages=5, servers=3)) == 20


# --- the optional collectors' classes: the same site at the same moment ---------------------------

CONTENT_STATE_OF_STATUS = {SENT: 1, RECEIVED: 1, INSTALLED: 0, RETRY: 2, FAILED: 3, PENDING_REMOVE: 4, REMOVED: 4}


def classes_at(source: DemoSource, t: float) -> tuple[list[PackageInfoRow], list[DPContentRow], list[DPInfoRow]]:
    dps = list(collector_rows(source, "dp_info", 0))
    return source.site.package_info_at(t), list(source.dp_content_state_at(t)), dps


def masters_by_package(rows: list[PackageStatusRow]) -> dict[str, PackageStatusRow]:
    return {r.package_id: r for r in rows if r.type == TYPE_MASTER}


def test_the_new_classes_are_deterministic_for_a_seed_and_time() -> None:
    one, two = DemoSource(target(seed=7)), DemoSource(target(seed=7))
    two.rows_at(T0 - DAY)  # other snapshots to start from change nothing
    assert classes_at(one, T0) == classes_at(two, T0)
    assert classes_at(one, T0 + 3 * DAY) == classes_at(DemoSource(target(seed=7)), T0 + 3 * DAY)
    other = DemoSource(target(seed=8))
    assert one.site.package_info_at(T0) != other.site.package_info_at(T0)
    assert list(collector_rows(one, "dp_info", 0)) != list(collector_rows(other, "dp_info", 0))


def test_package_info_names_every_package_with_types_of_the_real_table() -> None:
    source = DemoSource(target())
    rows = source.rows_at(T0)
    info = source.site.package_info_at(T0)
    assert [r.package_id for r in info] == list(masters_by_package(rows))
    assert [r.name for r in info[:4]] == [
        "User State Migration Tool for Windows", "Configuration Manager Client Package",
        "Configuration Manager Client Piloting Package", "Boot image (x64)",
    ]
    assert all(r.name for r in info)
    types = Counter(r.package_type for r in info)
    assert set(types) <= set(PACKAGE_TYPE_NAMES), types
    assert len(types) >= 5 and types.most_common(1)[0][0] == 8, types  # applications lead the mix
    assert {r.version == "" for r in info} == {True, False}
    assert all(r.size_bytes is not None and r.size_bytes % 1024 == 0 for r in info)
    assert all(r.size_bytes == 0 for r in info if r.package_type == 4)  # task sequences: no content
    assert all(2**20 < (r.size_bytes or 0) < 16 * 2**30 for r in info if r.package_type in (257, 258, 259))


def test_a_large_site_has_every_usual_package_type_and_few_repeated_names() -> None:
    info = DemoSite.build("DEM", 2000, 3, 11).package_info_at(T0)
    assert {r.package_type for r in info} == set(PACKAGE_TYPE_NAMES) - {6}  # no legacy device settings
    names = Counter((r.name, r.version) for r in info)
    assert names.most_common(1)[0][1] == 1, names.most_common(3)  # a repeated name has another version
    assert "Google Chrome" in {r.name for r in info}
    assert ("Drivers - Dell Latitude 5440 - Windows 11 x64 (2)", "") in names
    # The same seed on a larger site starts with the same packages, whatever its DPs.
    small = DemoSite.build("DEM", 30, 12, 11).package_info_at(T0)
    described = [(r.name, r.version, r.package_type) for r in info[:30]]
    assert [(r.name, r.version, r.package_type) for r in small] == described


def test_source_version_and_date_follow_the_versions_of_the_status_rows() -> None:
    source = DemoSource(target())
    previous_rows = masters_by_package(source.rows_at(T0))
    previous = {r.package_id: r for r in source.site.package_info_at(T0)}
    updates = 0
    for t in window(step=300, length=2 * DAY):
        masters = masters_by_package(source.rows_at(t))
        info = {r.package_id: r for r in source.site.package_info_at(t)}
        for package_id, row in info.items():
            # SourceDate is when the version was created: the MASTER row's update time.
            assert row.source_date is not None and row.source_date == masters[package_id].update_time
            assert row.source_date <= t
            assert row.source_version is not None and row.source_version >= 1
            before = previous[package_id]
            if masters[package_id].update_time != previous_rows[package_id].update_time:
                updates += 1
                assert row.source_version == (before.source_version or 0) + 1
            else:
                assert row == before  # nothing about a package moves between two of its versions
        previous_rows, previous = masters, info
    assert updates > 40 * 2  # every package is updated every 2 to 16 hours


def test_size_changes_a_little_from_version_to_version() -> None:
    site = DemoSite.build("DEM", 40, 2, 5)
    sizes: dict[str, set[int]] = {}
    for t in window(step=3600, length=3 * DAY):
        for r in site.package_info_at(t):
            sizes.setdefault(r.package_id, set()).add(r.size_bytes or 0)
    for package_id, seen in sizes.items():
        if max(seen):
            assert len(seen) > 1 and max(seen) / min(seen) < 1.25 / 0.8 + 0.01, (package_id, seen)


def test_content_states_agree_with_the_copy_rows_at_the_same_time() -> None:
    source = DemoSource(target())
    seen: Counter[int] = Counter()
    copied_seen = 0
    for t in window(step=600):
        rows = source.rows_at(t)
        copies = {(r.package_id, r.server): r for r in rows if r.type == TYPE_COPY}
        masters = masters_by_package(rows)
        content = list(source.dp_content_state_at(t))
        by_pair_ = {(r.package_id, r.server): r for r in content}
        assert len(by_pair_) == len(content) and set(by_pair_) == set(copies)  # one row per COPY row
        for pair, row in by_pair_.items():
            copy = copies[pair]
            assert row.site == copy.site == "DEM"
            assert row.state == CONTENT_STATE_OF_STATUS[copy.status], (pair, copy, row)
            if copy.status == INSTALLED:
                assert row.last_copied == copy.update_time
                copied_seen += 1
            elif copy.status in (PENDING_REMOVE, REMOVED):
                # Installed in this version before the removal, or never.
                created = masters[pair[0]].update_time or 0.0
                assert row.last_copied is None or created <= row.last_copied <= t
            else:
                assert row.last_copied is None
        seen.update(r.state for r in content)
    assert set(seen) == {0, 1, 2, 3, 4} and set(seen) <= set(STATE_NAMES), seen
    assert copied_seen


def test_dp_info_describes_every_dp_with_a_realistic_mix() -> None:
    source = DemoSource(target())
    copy_servers = [r.server for r in source.rows_at(T0)[1:13]]
    dps = list(collector_rows(source, "dp_info", 0))
    assert [r.server for r in dps] == copy_servers == [f"DP{n:02d}.demo.example.com" for n in range(1, 13)]
    assert {r.site for r in dps} == {"DEM"}
    assert sum(r.pull for r in dps) == 4 and sum(r.pxe for r in dps) == 5
    assert any(r.multicast for r in dps) and any(r.internet_facing for r in dps)
    assert all(r.groups is not None and 0 <= r.groups <= 4 for r in dps)
    # The pull DPs are the branch offices: the slowest links.
    slowest = sorted(source.site.servers, key=lambda s: s.link, reverse=True)[:4]
    assert {r.server for r in dps if r.pull} == {s.host for s in slowest}


def test_dp_info_shares_on_a_large_site() -> None:
    dps = DemoSite.build("DEM", 1, 400, 3).distribution_points
    assert len(dps) == 400
    assert sum(r.pull for r in dps) == 133 and sum(r.pxe for r in dps) == 180
    assert 20 < sum(r.multicast for r in dps) < 40 and sum(r.internet_facing for r in dps) == 26
    for r in dps:
        assert not (r.pull and (r.multicast or r.internet_facing))  # pushed DPs only
        assert not (r.internet_facing and (r.pxe or r.multicast))
    groups = Counter(r.groups for r in dps)
    assert set(groups) <= {0, 1, 2, 3, 4} and 0 < groups[0] < 40 and groups[2] + groups[3] > 300


def test_servers_of_every_class_are_servers_of_the_status_rows() -> None:
    source = DemoSource(target(site_code="XYZ", packages=3, servers=120))
    copy_servers = {r.server for r in source.rows_at(T0) if r.type == TYPE_COPY}
    info, content, dps = classes_at(source, T0)
    assert {r.server for r in content} == {r.server for r in dps} == copy_servers
    assert "DP001.demo.example.com" in copy_servers
    assert {r.site for r in content} == {r.site for r in dps} == {"XYZ"}
    assert {r.package_id for r in info} == {"XYZ00001", "XYZ00002", "XYZ00003"}


def test_no_distribution_points_leaves_the_packages_only() -> None:
    source = DemoSource(target(packages=3, servers=0))
    info, content, dps = classes_at(source, T0)
    assert len(info) == 3 and content == [] and dps == []


def test_the_new_methods_use_the_clock() -> None:
    now = [T0]
    source = DemoSource(target(), clock=lambda: now[0])
    deadline = time.monotonic() + 10
    for t in (T0, T0 + 5 * 3600):
        now[0] = t
        site = DemoSite.build("DEM", 40, 12, default_seed("demo"))
        assert list(collector_rows(source, "package_info", deadline)) == site.package_info_at(t)
        assert list(collector_rows(source, "dp_content_state", deadline)) == list(site.dp_content_at(t))
        assert list(collector_rows(source, "dp_info", deadline)) == list(site.distribution_points)
        assert list(collector_rows(source, "package_status", deadline)) == site.rows_at(t)


def test_concurrent_calls_answer_as_sequential_ones() -> None:
    # The collectors of a poll call the four methods at once; `rows` moves the snapshots that
    # `dp_content_state` starts from. Each thread walks the times in its own order.
    times = [T0 + k * 1800 for k in range(16)]
    site = DemoSite.build("DEM", 150, 40, 5)
    expected = {t: (site.rows_at(t), site.package_info_at(t), list(site.dp_content_at(t))) for t in times}
    source = DemoSource(target(packages=150, servers=40, seed=5))
    orders = [times, times[::-1], times[1::2] + times[::2], times[::-1][1::2] + times[::-1][::2]]
    calls: list[tuple[int, Callable[[float], object]]] = [
        (0, source.rows_at), (1, source.site.package_info_at), (2, lambda t: list(source.dp_content_state_at(t))),
    ]
    barrier = threading.Barrier(len(calls) * len(orders))

    def run(which: int, call: Callable[[float], object], order: list[float]) -> list[bool]:
        barrier.wait()
        return [call(t) == expected[t][which] for t in order]

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as CPython allows
    try:
        with ThreadPoolExecutor(len(calls) * len(orders)) as pool:
            futures = [pool.submit(run, which, call, order) for which, call in calls for order in orders]
            results = [future.result() for future in futures]
    finally:
        sys.setswitchinterval(switch)
    assert all(all(result) for result in results)


def test_concurrent_polls_through_the_source_methods() -> None:
    now = [T0]
    source = DemoSource(target(packages=150, servers=40), clock=lambda: now[0])
    deadline = time.monotonic() + 60
    methods = [partial(collector_rows, source, name) for name in ("package_status", "package_info", "dp_content_state",
                                                                  "dp_info")]
    for t in (T0, T0 + 3600, T0 + 3 * DAY):
        now[0] = t
        sequential = [list(method(deadline)) for method in methods]
        with ThreadPoolExecutor(len(methods) * 2) as pool:
            parallel = [pool.submit(lambda m: list(m(deadline)), method) for method in methods * 2]
            assert [future.result() for future in parallel] == sequential * 2


def parse_families(text: str) -> dict[str, list[Any]]:
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def exposition_text(exposition: Exposition, families: tuple[Family, ...]) -> str:
    samples = exposition.samples
    return "".join(family.header() + samples[family.name] for family in families)


def test_the_new_classes_render_to_valid_exposition_text() -> None:
    source = DemoSource(target())
    info, content, dps = classes_at(source, T0 + 3600)

    aggregate = PackageInfoAggregate()
    aggregate.add(info)
    parsed = parse_families(exposition_text(aggregate.render("demo", "DEM"), package_info.FAMILIES))
    assert len(parsed["sccm_package_info"]) == 40
    assert {s.labels["package_type"] for s in parsed["sccm_package_info"]} <= set(PACKAGE_TYPE_NAMES.values())
    assert all(s.labels["target"] == "demo" and s.labels["site"] == "DEM" for s in parsed["sccm_package_info"])
    for family in ("sccm_package_source_version", "sccm_package_size_bytes", "sccm_package_source_timestamp_seconds"):
        assert len(parsed[family]) == 40, family

    states = DPContentAggregate("all")
    states.add(content)
    parsed = parse_families(exposition_text(states.render("demo", "DEM"), dp_content_state.FAMILIES))
    assert len(parsed["sccm_dp_content_state"]) == 40 * 12
    assert {s.labels["state"] for s in parsed["sccm_dp_content_state"]} <= set(STATE_NAMES.values())
    counts = parsed["sccm_dp_content_state_packages"]
    assert len(counts) == 12 * len(STATE_NAMES) and sum(s.value for s in counts) == 40 * 12
    assert 0 < len(parsed["sccm_dp_content_last_copied_timestamp_seconds"]) <= 40 * 12

    points = DPInfoAggregate()
    points.add(dps)
    parsed = parse_families(exposition_text(points.render("demo", "DEM"), dp_info.FAMILIES))
    assert len(parsed["sccm_distribution_point_info"]) == len(parsed["sccm_distribution_point_groups"]) == 12
    assert {s.labels["pull"] for s in parsed["sccm_distribution_point_info"]} == {"true", "false"}
