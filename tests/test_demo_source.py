"""The demo source: a deterministic simulated site whose rows move plausibly over time."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from exporter.config import TargetConfig
from exporter.rows import STATUS_NAMES, TYPE_COPY, TYPE_MASTER, PackageStatusRow, host_from_nal
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
    assert list(source.rows(time.monotonic() + 10)) == rows_at(T0)
    now[0] = T0 + 5 * 3600
    assert list(source.rows(time.monotonic() + 10)) == rows_at(T0 + 5 * 3600)
    source.close()


def test_wall_clock_by_default() -> None:
    rows = list(DemoSource(target()).rows(time.monotonic() + 10))
    assert all(r.update_time is not None and r.update_time <= time.time() for r in rows)


@pytest.mark.parametrize("seed", [0, 1, 2**40])
def test_large_seeds_and_zero_work(seed: int) -> None:
    assert len(rows_at(T0, seed=seed, packages=5, servers=3)) == 20
